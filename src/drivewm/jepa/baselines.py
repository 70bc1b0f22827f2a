"""Pretraining baselines: Occupancy-MAE as published, drivewm's light MAE and a contrastive objective.

- ``occupancy_mae`` (Occupancy-MAE, Min et al., 2023, arXiv 2206.09900), as ``Voxel_MAE`` in
  chaytonmin/Occupancy-MAE pcdet/models/backbones_3d/voxel_mae.py (commit aef8653): voxels are masked at
  random by range band (of the occupied voxels of the whole batch, ``1 - mask_ratio`` kept within
  ``ranges[0]``, ``1 - mask_ratio + 0.2`` beyond; the distance, as in the code, in voxel indices from the
  grid's corner), the sparse voxel encoder of ``adl_jepa`` runs on the kept ones only (sparse convolutions, as
  the published spconv encoder), and a dense 3-D decoder of
  transposed convolutions (128 -> 32 -> 8 -> 1, BatchNorm3d + ReLU between) reconstructs the binary
  occupancy of every voxel of the grid, scored by a BCE-with-logits over the whole grid.
- ``mae_bev`` (drivewm's light variant of Occupancy-MAE on the ViT patch encoder of ``jepa_bev``; MAE,
  He et al., 2022, arXiv 2111.06377): a random ``mask_ratio`` of the BEV patches is dropped, the encoder
  sees the visible ones, a light transformer decoder with mask tokens at every position reconstructs the
  3-D occupancy of each masked patch (p x p x Z voxels), binary occupied / free by default or the
  semantic class, with a cross-entropy on the masked patches only.
- ``contrastive_bev`` (InfoNCE, van den Oord et al., 2018, arXiv 1807.03748; SimCLR projection head,
  arXiv 2002.05709): two views of each scene, either two consecutive frames of the window or two
  random token subsets of one frame; mean-pooled embeddings -> MLP projection -> L2-normalised,
  symmetric InfoNCE with temperature ``tau`` against the other samples of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import TransformerBlock, make_norm
from drivewm.backbones.sparse_conv import SparseVoxels
from drivewm.jepa.bev import frames_of
from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, gather_tokens, init_weights, sincos_2d
from drivewm.jepa.masks import RandomCellMasking, step_generator
from drivewm.jepa.objectives import StepCounter, diagnostics
from drivewm.jepa.voxels import VoxelEncoder, VoxelEncoderConfig, lidar_frames
from drivewm.registry import register_model


@dataclass(kw_only=True)
class MaeBEVConfig:
    name: str = "mae_bev"
    """Registered model name."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The patch encoder (occupancy modality), as in jepa_bev."""
    decoder_width: int = 32
    """Decoder width."""
    decoder_depth: int = 2
    """Decoder transformer blocks."""
    decoder_heads: int = 4
    """Decoder attention heads."""
    mask_ratio: float = 0.75
    """Fraction of BEV patches masked (MAE 0.75; Occupancy-MAE 0.7-0.9 by range)."""
    target: str = "binary"
    """'binary' (occupied vs free, Occupancy-MAE) or 'semantic' (the class of every voxel)."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs; 0 = never."""
    seed: int = 0
    """Seed of the mask generator."""

    def __post_init__(self) -> None:
        if self.target not in ("binary", "semantic"):
            raise ValueError(f"mae target {self.target!r} not in ('binary', 'semantic')")


class MaeBEV(nn.Module):
    def __init__(self, cfg: MaeBEVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.encoder
        self.encoder = PatchEncoder(e)
        self.classes = 2 if cfg.target == "binary" else e.num_classes
        self.voxels = e.patch * e.patch * e.grid_shape[2]
        w = cfg.decoder_width
        self.embed = nn.Linear(e.dim, w)
        self.mask_token = nn.Parameter(torch.zeros(w))
        self.register_buffer("pos", sincos_2d(*e.token_grid, w), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(w, cfg.decoder_heads, norm="layer") for _ in range(cfg.decoder_depth))
        self.norm = make_norm("layer", w)
        self.head = nn.Linear(w, self.voxels * self.classes)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.masker = RandomCellMasking(ratio=cfg.mask_ratio)
        self.counter = StepCounter()

    def encode(self, occ: Tensor) -> Tensor:
        return self.encoder(frames_of(occ))

    def _patch_targets(self, occ: Tensor) -> Tensor:
        """[B, X, Y, Z] -> voxel labels per patch [B, N, p * p * Z]."""
        p = self.cfg.encoder.patch
        b, x, y, z = occ.shape
        lab = (occ != self.cfg.encoder.num_classes - 1).long() if self.cfg.target == "binary" else occ.long()
        lab = lab.view(b, x // p, p, y // p, p, z).permute(0, 1, 3, 2, 4, 5)  # [B, h, w, p, p, Z]
        return lab.reshape(b, (x // p) * (y // p), -1)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ = frames_of(batch["occ"])
        b = occ.shape[0]
        step = self.counter.value
        m = self.masker(b, self.cfg.encoder.token_grid, step_generator(self.cfg.seed, step))
        vis, msk = m.context.to(occ.device), m.targets[:, 0].to(occ.device)
        lat = self.encoder(occ, keep=vis)  # [B, Nv, D]
        n = self.encoder.num_tokens
        x = self.mask_token.expand(b, n, -1).clone()  # [B, N, W]
        x.scatter_(1, vis[..., None].expand(-1, -1, x.shape[-1]), self.embed(lat))
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.norm(gather_tokens(x, msk)))  # [B, Nm, V * C]
        tgt = gather_tokens(self._patch_targets(occ), msk)  # [B, Nm, V]
        ce = F.cross_entropy(logits.reshape(-1, self.classes), tgt.reshape(-1))
        out = {"loss": ce, "recon_ce": ce.detach()}
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(lat))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        self.counter.set(step + 1)


@dataclass(kw_only=True)
class ContrastiveBEVConfig:
    name: str = "contrastive_bev"
    """Registered model name."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The patch encoder (occupancy modality), as in jepa_bev."""
    views: str = "consecutive"
    """'consecutive' (frames t and t + 1 of the window) or 'subsets' (two random token subsets of one frame)."""
    keep_ratio: float = 0.5
    """Fraction of tokens each view keeps with views='subsets'."""
    proj_dim: int = 64
    """Output width of the projection MLP."""
    tau: float = 0.1
    """InfoNCE temperature."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs; 0 = never."""
    seed: int = 0
    """Seed of the view sampler."""

    def __post_init__(self) -> None:
        if self.views not in ("consecutive", "subsets"):
            raise ValueError(f"contrastive views {self.views!r} not in ('consecutive', 'subsets')")
        if self.tau <= 0:
            raise ValueError(f"contrastive tau must be > 0, got {self.tau}")


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE of paired rows a, b [B, P] (L2-normalised inside); the positives are the diagonal."""
    if a.shape[0] < 2:
        raise ValueError(f"InfoNCE needs at least 2 samples for negatives, got a batch of {a.shape[0]}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau  # [B, B]
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class ContrastiveBEV(nn.Module):
    def __init__(self, cfg: ContrastiveBEVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder.dim
        self.encoder = PatchEncoder(cfg.encoder)
        self.proj = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, cfg.proj_dim))
        init_weights(self)
        self.counter = StepCounter()

    def encode(self, occ: Tensor) -> Tensor:
        return self.encoder(frames_of(occ))

    def _subset(self, b: int, g: torch.Generator, device) -> Tensor:
        n = self.encoder.num_tokens
        k = max(1, int(round(n * self.cfg.keep_ratio)))
        return torch.stack([torch.randperm(n, generator=g)[:k].sort().values for _ in range(b)]).to(device)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ = batch["occ"]
        step = self.counter.value
        if self.cfg.views == "consecutive":
            if occ.dim() != 5 or occ.shape[1] < 2:
                raise ValueError(f"views='consecutive' needs windows of >= 2 frames, got occ {tuple(occ.shape)}")
            t = int(torch.randint(0, occ.shape[1] - 1, (1,), generator=step_generator(self.cfg.seed, step)))
            h1, h2 = self.encoder(occ[:, t]), self.encoder(occ[:, t + 1])
        else:
            occ = frames_of(occ)
            g = step_generator(self.cfg.seed, step)
            h1 = self.encoder(occ, keep=self._subset(occ.shape[0], g, occ.device))
            h2 = self.encoder(occ, keep=self._subset(occ.shape[0], g, occ.device))
        loss = info_nce(self.proj(h1.mean(1)), self.proj(h2.mean(1)), self.cfg.tau)
        out = {"loss": loss, "info_nce": loss.detach()}
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(h1))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        self.counter.set(step + 1)


@register_model("mae_bev", MaeBEVConfig, kind="jepa")
def build_mae_bev(cfg: MaeBEVConfig) -> MaeBEV:
    return MaeBEV(cfg)


@register_model("contrastive_bev", ContrastiveBEVConfig, kind="jepa")
def build_contrastive_bev(cfg: ContrastiveBEVConfig) -> ContrastiveBEV:
    return ContrastiveBEV(cfg)


@dataclass(kw_only=True)
class OccupancyMaeConfig:
    name: str = "occupancy_mae"
    """Registered model name."""
    encoder: VoxelEncoderConfig = field(default_factory=VoxelEncoderConfig)
    """The voxel encoder (occ or lidar), as adl_jepa's."""
    decoder_channels: list[int] = field(default_factory=lambda: [32, 8])
    """Widths between the transposed convolutions (published: 128 -> 32 -> 8 -> 1)."""
    mask_ratio: float = 0.5
    """Fraction of the near voxels masked (MASKED_RATIO 0.5); farther bands keep 0.2 more."""
    ranges: list[float] = field(default_factory=lambda: [30.0, 50.0])
    """Range bands in voxel indices (30, 50 as the code)."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs; 0 = never."""
    seed: int = 0
    """Seed of the mask generator (with the step)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"occupancy_mae mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if len(self.decoder_channels) != len(self.encoder.channels) - 2:
            raise ValueError(f"occupancy_mae decoder_channels needs {len(self.encoder.channels) - 2} widths (one per "
                             f"upsampling stage but the last), got {self.decoder_channels}")
        decoder_z_strides(self.encoder)


def decoder_z_strides(enc: VoxelEncoderConfig) -> tuple[int, ...]:
    """Height strides of the decoder's transposed convolutions for the encoder ``enc``."""
    return z_strides(enc.out_height, enc.grid_shape[2], len(enc.channels) - 1)


def z_strides(start: int, height: int, layers: int) -> tuple[int, ...]:
    """Strides (each in 1..8) of ``layers`` transposed convolutions (kernel 3, padding 1, output padding 1, or 0 at
    stride 1) that bring a height ``start`` to ``height``; the first that fits (2 -> 41 on KITTI: 2, 4, 3 as
    voxel_mae.py's deconv1-3)."""
    # Upsampling at every layer first, as the published decoder; a stride of 1 only where no such set fits.
    for strides in itertools.chain(itertools.product(range(2, 9), repeat=layers), itertools.product(range(1, 9), repeat=layers)):
        z = start
        for s in strides:
            z = z if s == 1 else (z - 1) * s + 2
        if z == height:
            return strides
    raise ValueError(f"occupancy_mae: no transposed-conv height strides reach the grid height {height} from {start}")


def range_band_keep(coords: Tensor, ratio: float, ranges: list[float], g: torch.Generator) -> Tensor:
    """Occupancy-MAE's voxel masking: bool [N], the kept rows among the occupied voxels ``coords`` [N, 4]
    (b, z, x, y). The voxels of the batch are shuffled per range band (distance sqrt(x_idx^2 + y_idx^2)); the
    first int(keep * n) of each band stay, keep = 1 - ratio within ranges[0] and 1 - ratio + 0.2 beyond."""
    dist = (coords[:, 2].double() ** 2 + coords[:, 3].double() ** 2).sqrt()
    near, far = ranges
    bands = [dist <= near, (dist > near) & (dist <= far), dist > far]
    keeps = [1 - ratio, 1 - ratio + 0.2, 1 - ratio + 0.2]
    out = torch.zeros(coords.shape[0], dtype=torch.bool, device=coords.device)
    for band, keep in zip(bands, keeps):
        ids = band.nonzero()[:, 0]
        ids = ids[torch.randperm(ids.numel(), generator=g).to(ids.device)]
        out[ids[: int(keep * ids.numel())]] = True
    return out


class OccupancyMae(nn.Module):
    def __init__(self, cfg: OccupancyMaeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VoxelEncoder(cfg.encoder)
        widths = [cfg.encoder.out_channels, *cfg.decoder_channels, 1]
        layers = []
        for i, s in enumerate(decoder_z_strides(cfg.encoder)):
            up = nn.ConvTranspose3d(widths[i], widths[i + 1], 3, padding=1, output_padding=(1 if s > 1 else 0, 1, 1),
                                    stride=(s, 2, 2), bias=False)
            last = i == len(widths) - 2
            layers.append(up if last else nn.Sequential(up, nn.BatchNorm3d(widths[i + 1]), nn.ReLU()))
        self.decoder = nn.Sequential(*layers)
        self.counter = StepCounter()

    def _voxels(self, batch: dict[str, Tensor]) -> SparseVoxels:
        if self.cfg.encoder.modality == "lidar":
            return self.encoder.voxelize(*lidar_frames(batch))
        return self.encoder.voxelize(frames_of(batch["occ"]))

    def encode(self, x: Tensor) -> Tensor:
        """BEV features of the whole input: [B, N, D]; ``x`` occupancy [B, X, Y, Z] or a LiDAR batch dict."""
        vox = self._voxels(x) if isinstance(x, dict) else self.encoder.voxelize(frames_of(x))
        return self.encoder(vox).flatten(2).transpose(1, 2)

    def reconstruct(self, vox: SparseVoxels, kept: Tensor) -> Tensor:
        """Occupancy logits [B, 1, Z, X, Y] of every voxel from the kept voxel rows (bool [N])."""
        bev = self.encoder(vox.select(kept))  # [B, C * Z', h, w]
        c = self.cfg.encoder.out_channels
        b, _, h, w = bev.shape
        return self.decoder(bev.view(b, c, -1, h, w))

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        step = self.counter.value
        vox = self._voxels(batch)
        kept = range_band_keep(vox.coords, self.cfg.mask_ratio, self.cfg.ranges, step_generator(self.cfg.seed, step))
        logits = self.reconstruct(vox, kept)
        bce = F.binary_cross_entropy_with_logits(logits, vox.active()[:, None].float())
        out = {"loss": bce, "recon_bce": bce.detach()}
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(self.encoder(vox.select(kept)).flatten(2).transpose(1, 2)))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        self.counter.set(step + 1)


@register_model("occupancy_mae", OccupancyMaeConfig, kind="jepa")
def build_occupancy_mae(cfg: OccupancyMaeConfig) -> OccupancyMae:
    return OccupancyMae(cfg)
