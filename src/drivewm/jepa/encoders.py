"""Patch encoders of the JEPA family: BEV occupancy, LiDAR pillars and camera, each a stem + one ViT.

Every encoder turns its input into a [B, D, h, w] feature map (the stem), adds fixed 2-D sin-cos
positions (I-JEPA, arXiv 2301.08243) and runs bidirectional ``drivewm.backbones.TransformerBlock``s
over the kept tokens -> [B, N, D] patch embeddings, N = h * w (or the kept count).

- occupancy: a class embedding per voxel with the height folded into channels (OccWorld,
  arXiv 2311.16038), then a patchifying conv (the ViT patch embedding);
- LiDAR: PointPillars-style (Lang et al., 2019, arXiv 1812.05784) point features (x, y, z, intensity,
  offsets to the pillar centre) -> linear + LayerNorm + ReLU -> max-scattered to the BEV grid, then the
  same patchifying conv and ViT;
- camera: the plain ViT patch embedding (Dosovitskiy et al., 2021, arXiv 2010.11929).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones import TransformerBlock, make_norm

MODALITIES = ("occ", "lidar", "camera")


@dataclass(kw_only=True)
class EncoderConfig:
    modality: str = "occ"
    """Input: 'occ' (uint8 class grid [B, X, Y, Z]), 'lidar' (points [B, P, 4] + valid [B, P]) or 'camera' (uint8 [B, H, W, 3])."""
    grid_shape: list[int] = field(default_factory=lambda: [32, 32, 4])
    """Occupancy / BEV grid X, Y, Z (occ, lidar) or image H, W, 3 (camera)."""
    grid_lower: list[float] = field(default_factory=lambda: [-25.6, -25.6, -1.0])
    """Minimum corner (m) of the BEV grid (lidar pillars)."""
    voxel_size: float = 1.6
    """Voxel / pillar size (m) (lidar pillars)."""
    num_classes: int = 18
    """Occupancy class ids (Occ3D table, free = 17)."""
    class_dim: int = 8
    """Class-embedding width per voxel; folded with the height into Z * class_dim channels."""
    pillar_dim: int = 32
    """Point-feature width of the LiDAR pillar net."""
    patch: int = 4
    """Patch size in BEV cells / pixels; the token grid is (X / patch) x (Y / patch)."""
    dim: int = 64
    """Embedding width D."""
    depth: int = 4
    """ViT blocks."""
    heads: int = 4
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of D."""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"encoder modality {self.modality!r} not in {MODALITIES}")
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 1:
            raise ValueError(f"encoder grid_shape must be three positive ints, got {self.grid_shape}")
        if self.grid_shape[0] % self.patch or self.grid_shape[1] % self.patch:
            raise ValueError(f"encoder grid_shape {self.grid_shape[:2]} must be divisible by patch {self.patch}")
        if self.dim % self.heads or self.dim % 4:
            raise ValueError(f"encoder dim {self.dim} must divide by heads {self.heads} and by 4 (2-D sin-cos)")

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.grid_shape[0] // self.patch, self.grid_shape[1] // self.patch


def sincos_2d(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos position embedding [h * w, dim] (MAE / I-JEPA): half the channels per axis."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding dim must be divisible by 4, got {dim}")
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out = []
    for pos in (ys.flatten(), xs.flatten()):
        ang = pos[:, None] * omega[None]  # [N, q]
        out += [torch.sin(ang), torch.cos(ang)]
    return torch.cat(out, dim=1).float()


def sincos_1d(n: int, dim: int) -> Tensor:
    """Fixed 1-D sin-cos embedding [n, dim] (Transformer positions), e.g. the frame index of a tube token."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(half, 1))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * omega[None]
    out = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).float()
    return torch.nn.functional.pad(out, (0, dim - out.shape[1]))


def spacetime_pos(spatial: Tensor, frames: int) -> Tensor:
    """[N, D] spatial positions -> [T * N, D] (frame-major) with the frame's 1-D sin-cos added (V-JEPA tubes)."""
    n, d = spatial.shape
    return spatial.repeat(frames, 1) + sincos_1d(frames, d).to(spatial).repeat_interleave(n, dim=0)


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """x [B, N, D], idx [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class OccStem(nn.Module):
    """uint8 occupancy [B, X, Y, Z] -> [B, D, X/p, Y/p]: class embedding, height into channels, patch conv."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim)
        self.proj = nn.Conv2d(cfg.grid_shape[2] * cfg.class_dim, cfg.dim, cfg.patch, stride=cfg.patch)

    def forward(self, occ: Tensor) -> Tensor:
        if occ.dim() != 4:
            raise ValueError(f"occupancy encoder expects [B, X, Y, Z] class ids, got shape {tuple(occ.shape)}")
        if int(occ.max()) >= self.num_classes:
            raise ValueError(f"occupancy class id {int(occ.max())} >= num_classes {self.num_classes}")
        e = self.embed(occ.long())  # [B, X, Y, Z, C]
        b, x, y, z, c = e.shape
        e = e.permute(0, 3, 4, 1, 2).reshape(b, z * c, x, y)  # height folded into channels
        return self.proj(e)


class PillarStem(nn.Module):
    """LiDAR points [B, P, 4] (+ valid [B, P]) -> pillar features max-scattered to BEV -> [B, D, X/p, Y/p]."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.X, self.Y = cfg.grid_shape[0], cfg.grid_shape[1]
        self.lower = cfg.grid_lower
        self.voxel = cfg.voxel_size
        self.pointnet = nn.Sequential(nn.Linear(6, cfg.pillar_dim), nn.LayerNorm(cfg.pillar_dim), nn.ReLU())
        self.proj = nn.Conv2d(cfg.pillar_dim, cfg.dim, cfg.patch, stride=cfg.patch)

    def forward(self, points: Tensor, valid: Tensor | None = None) -> Tensor:
        if points.dim() != 3 or points.shape[-1] != 4:
            raise ValueError(f"lidar encoder expects points [B, P, 4] (x, y, z, intensity), got {tuple(points.shape)}")
        b, p, _ = points.shape
        ix = torch.floor((points[..., 0] - self.lower[0]) / self.voxel).long()
        iy = torch.floor((points[..., 1] - self.lower[1]) / self.voxel).long()
        inside = (ix >= 0) & (ix < self.X) & (iy >= 0) & (iy < self.Y)
        if valid is not None:
            inside &= valid
        cx = self.lower[0] + (ix.float() + 0.5) * self.voxel
        cy = self.lower[1] + (iy.float() + 0.5) * self.voxel
        feats = torch.cat([points, (points[..., 0] - cx)[..., None], (points[..., 1] - cy)[..., None]], dim=-1)
        f = self.pointnet(feats)  # [B, P, C]
        # Max over the points of each pillar; outside / padded points go to a dump cell that is dropped.
        cell = torch.where(inside, ix * self.Y + iy, torch.full_like(ix, self.X * self.Y))
        cell = cell + torch.arange(b, device=points.device)[:, None] * (self.X * self.Y + 1)
        bev = torch.zeros(b * (self.X * self.Y + 1), f.shape[-1], device=f.device, dtype=f.dtype)
        idx = cell.reshape(b * p, 1).expand(-1, f.shape[-1])
        # ReLU features are >= 0, so the zero init is the max of an empty pillar.
        bev = bev.scatter_reduce(0, idx, f.reshape(b * p, -1), "amax", include_self=True)
        bev = bev.view(b, self.X * self.Y + 1, -1)[:, :-1]  # [B, X*Y, C]
        bev = bev.transpose(1, 2).reshape(b, -1, self.X, self.Y)
        return self.proj(bev)


class CameraStem(nn.Module):
    """uint8 image [B, H, W, 3] -> [B, D, H/p, W/p]."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch)

    def forward(self, img: Tensor) -> Tensor:
        if img.dim() != 4 or img.shape[-1] != 3:
            raise ValueError(f"camera encoder expects [B, H, W, 3] images, got shape {tuple(img.shape)}")
        x = img.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.proj(x)


class PatchEncoder(nn.Module):
    """Stem + 2-D positions + ViT: ``forward(x, keep=None) -> [B, N or K, D]``.

    ``keep`` [B, K] runs the ViT on those tokens only (I-JEPA context); ``replace`` = (mask [B, N]
    bool, token [D]) swaps masked tokens for a learned token before the ViT (AD-L-JEPA context).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = {"occ": OccStem, "lidar": PillarStem, "camera": CameraStem}[cfg.modality](cfg)
        h, w = cfg.token_grid
        self.register_buffer("pos", sincos_2d(h, w, cfg.dim), persistent=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, mlp_ratio=cfg.mlp_ratio, norm="layer") for _ in range(cfg.depth)
        )
        self.norm = make_norm("layer", cfg.dim)

    @property
    def num_tokens(self) -> int:
        h, w = self.cfg.token_grid
        return h * w

    def tokens(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Patch tokens before the ViT, positions included: [B, N, D]."""
        f = self.stem(x, valid) if self.cfg.modality == "lidar" else self.stem(x)  # [B, D, h, w]
        return f.flatten(2).transpose(1, 2) + self.pos

    def run(self, t: Tensor) -> Tensor:
        """The ViT over tokens [B, K, D] (bidirectional) -> [B, K, D]."""
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def video_tokens(self, x: Tensor) -> Tensor:
        """Frames [B, T, ...] -> tokens [B, T * N, D] with space-time positions (V-JEPA)."""
        b, t = x.shape[:2]
        tok = self.tokens(x.flatten(0, 1)) - self.pos  # [B*T, N, D], re-positioned below
        return tok.reshape(b, t * self.num_tokens, -1) + spacetime_pos(self.pos, t)

    def forward(self, x: Tensor, keep: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        t = self.tokens(x, valid)
        if keep is not None:
            if keep.shape[1] < 1:
                raise ValueError("encoder keep indices are empty: the mask left no context tokens")
            t = gather_tokens(t, keep)  # [B, K, D]
        return self.run(t)


def patch_labels(occ: Tensor, patch: int, free_id: int) -> Tensor:
    """Bool [B, N]: does each BEV patch hold any non-free voxel (AD-L-JEPA's occupied vs empty cells)."""
    b, x, y, _ = occ.shape
    occupied = (occ != free_id).any(dim=-1).float()  # [B, X, Y]
    pooled = nn.functional.max_pool2d(occupied[:, None], patch)  # [B, 1, X/p, Y/p]
    return pooled.flatten(1) > 0


def init_weights(module: nn.Module) -> None:
    """Truncated-normal(0.02) linear / conv weights, zero biases (ViT / I-JEPA initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = [
    "EncoderConfig",
    "PatchEncoder",
    "gather_tokens",
    "init_weights",
    "patch_labels",
    "sincos_1d",
    "sincos_2d",
    "spacetime_pos",
]
