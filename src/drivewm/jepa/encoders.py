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

Video (V-JEPA, arXiv 2404.08471; V-JEPA 2, arXiv 2506.09985): ``tubelet`` consecutive frames form one
space-time token, the patchifying conv reading their stacked features (a Conv3d of kernel
(tubelet, p, p)); a single frame is repeated over the tubelet, as vjepa2 feeds images
(``forward_target`` in app/vjepa_droid/train.py). Positions: ``pos_embed='sincos'`` adds the fixed
sin-cos table (frame-major 1-D over tubelets for clips); ``'rope3d'`` adds none and rotates queries and
keys in every block by (tubelet, row, col), each axis on an equal even share of the head, read from the
kept token ids (``RoPEAttention`` in facebookresearch/vjepa2 src/models/utils/modules.py at
c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb; the same frequencies, in the half-split layout of
``drivewm.backbones.rotary``, which equals theirs up to a fixed permutation of the head dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones import TransformerBlock, make_norm
from drivewm.backbones.rotary import RotaryEmbedding

MODALITIES = ("occ", "lidar", "camera")
POS_EMBEDS = ("sincos", "rope3d")


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
    tubelet: int = 1
    """Frames per space-time token of a clip (V-JEPA / V-JEPA 2: 2); a single frame is repeated over it."""
    pos_embed: str = "sincos"
    """'sincos' (fixed sin-cos added to the tokens: I-JEPA, V-JEPA) or 'rope3d' (V-JEPA 2: 3D RoPE over
    (tubelet, row, col) in every block, no additive position)."""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"encoder modality {self.modality!r} not in {MODALITIES}")
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 1:
            raise ValueError(f"encoder grid_shape must be three positive ints, got {self.grid_shape}")
        if self.grid_shape[0] % self.patch or self.grid_shape[1] % self.patch:
            raise ValueError(f"encoder grid_shape {self.grid_shape[:2]} must be divisible by patch {self.patch}")
        if self.dim % self.heads or self.dim % 4:
            raise ValueError(f"encoder dim {self.dim} must divide by heads {self.heads} and by 4 (2-D sin-cos)")
        if self.tubelet < 1:
            raise ValueError(f"encoder tubelet must be >= 1, got {self.tubelet}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"encoder pos_embed {self.pos_embed!r} not in {POS_EMBEDS}")
        if self.pos_embed == "rope3d" and (self.dim // self.heads) < 6:
            raise ValueError(f"encoder pos_embed='rope3d' needs a head size >= 6 (3 axes x 2), got {self.dim // self.heads}")

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
    """uint8 occupancy [B, X, Y, Z]: class embedding, height into channels; ``proj`` the patch conv."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.num_classes = cfg.num_classes
        self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim)
        self.proj = nn.Conv2d(cfg.tubelet * cfg.grid_shape[2] * cfg.class_dim, cfg.dim, cfg.patch, stride=cfg.patch)

    def features(self, occ: Tensor) -> Tensor:
        """[B, X, Y, Z] -> per-cell features [B, Z * C, X, Y] (the patch conv's input for one frame)."""
        if occ.dim() != 4:
            raise ValueError(f"occupancy encoder expects [B, X, Y, Z] class ids, got shape {tuple(occ.shape)}")
        if int(occ.max()) >= self.num_classes:
            raise ValueError(f"occupancy class id {int(occ.max())} >= num_classes {self.num_classes}")
        e = self.embed(occ.long())  # [B, X, Y, Z, C]
        b, x, y, z, c = e.shape
        return e.permute(0, 3, 4, 1, 2).reshape(b, z * c, x, y)  # height folded into channels


class PillarStem(nn.Module):
    """LiDAR points [B, P, 4] (+ valid [B, P]) -> pillar features max-scattered to BEV; ``proj`` the patch conv."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.X, self.Y = cfg.grid_shape[0], cfg.grid_shape[1]
        self.lower = cfg.grid_lower
        self.voxel = cfg.voxel_size
        self.pointnet = nn.Sequential(nn.Linear(6, cfg.pillar_dim), nn.LayerNorm(cfg.pillar_dim), nn.ReLU())
        self.proj = nn.Conv2d(cfg.tubelet * cfg.pillar_dim, cfg.dim, cfg.patch, stride=cfg.patch)

    def features(self, points: Tensor, valid: Tensor | None = None) -> Tensor:
        """Points [B, P, 4] -> pillar features [B, C, X, Y]."""
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
        return bev.transpose(1, 2).reshape(b, -1, self.X, self.Y)


class CameraStem(nn.Module):
    """uint8 image [B, H, W, 3] -> pixels in [-1, 1]; ``proj`` the patch conv."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.tubelet * 3, cfg.dim, cfg.patch, stride=cfg.patch)

    def features(self, img: Tensor) -> Tensor:
        """[B, H, W, 3] -> [B, 3, H, W] in [-1, 1]."""
        if img.dim() != 4 or img.shape[-1] != 3:
            raise ValueError(f"camera encoder expects [B, H, W, 3] images, got shape {tuple(img.shape)}")
        return img.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class PatchEncoder(nn.Module):
    """Stem + positions + ViT: ``forward(x, keep=None) -> [B, N or K, D]``.

    ``keep`` [B, K] runs the ViT on those tokens only (I-JEPA context). ``tokens`` / ``video_tokens``
    and ``run`` split the pass for callers that edit the tokens in between (AD-L-JEPA's mask and empty
    tokens, V-JEPA's tube context); ``run`` takes the kept token ids, which 'rope3d' reads positions from.
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
        self.rope = RotaryEmbedding(cfg.dim // cfg.heads, max_len=max(h, w, 64), axes=3) if cfg.pos_embed == "rope3d" else None

    @property
    def num_tokens(self) -> int:
        h, w = self.cfg.token_grid
        return h * w

    def _patchify(self, f: Tensor) -> Tensor:
        """Stacked features of a tubelet [B, tubelet * C, X, Y] -> tokens [B, N, D] (no positions)."""
        return self.stem.proj(f).flatten(2).transpose(1, 2)

    def tokens(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """Patch tokens of single frames before the ViT, 'sincos' positions included: [B, N, D]."""
        f = self.stem.features(x, valid) if self.cfg.modality == "lidar" else self.stem.features(x)  # [B, C, X, Y]
        if self.cfg.tubelet > 1:
            f = f.repeat(1, self.cfg.tubelet, 1, 1)  # the frame fills its tubelet
        t = self._patchify(f)
        return t + self.pos if self.cfg.pos_embed == "sincos" else t

    def video_tokens(self, x: Tensor) -> Tensor:
        """Clips [B, T, ...] -> tokens [B, T / tubelet * N, D] (tubelet-major), with 'sincos' space-time positions."""
        b, t = x.shape[:2]
        k = self.cfg.tubelet
        if t % k:
            raise ValueError(f"a clip of {t} frames does not split into tubelets of {k} (encoder.tubelet)")
        f = self.stem.features(x.flatten(0, 1))  # [B * T, C, X, Y]
        f = f.reshape(b * (t // k), k * f.shape[1], *f.shape[2:])  # the frames of a tubelet stacked on channels
        tok = self._patchify(f).reshape(b, (t // k) * self.num_tokens, -1)
        return tok + spacetime_pos(self.pos, t // k) if self.cfg.pos_embed == "sincos" else tok

    def _rope(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Token ids [K] or [B, K] over (tubelet, row, col) frame-major -> the blocks' rotation tables."""
        n, w = self.num_tokens, self.cfg.token_grid[1]
        pos = torch.stack([ids // n, (ids % n) // w, ids % w], dim=-1)  # [(B,) K, 3]
        return self.rope(pos)

    def run(self, t: Tensor, ids: Tensor | None = None) -> Tensor:
        """The ViT over tokens [B, K, D] (bidirectional) -> [B, K, D]; ``ids`` [B, K]: which tokens these are
        (None: all, in order), for 'rope3d'."""
        rope = None
        if self.rope is not None:
            rope = self._rope(ids if ids is not None else torch.arange(t.shape[1], device=t.device))
        for blk in self.blocks:
            t = blk(t, rope=rope)
        return self.norm(t)

    def forward(self, x: Tensor, keep: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        t = self.tokens(x, valid)
        if keep is not None:
            if keep.shape[1] < 1:
                raise ValueError("encoder keep indices are empty: the mask left no context tokens")
            t = gather_tokens(t, keep)  # [B, K, D]
        return self.run(t, keep)


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
