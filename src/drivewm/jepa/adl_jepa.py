"""``adl_jepa``: AD-L-JEPA as published (Zhu et al., 2025, arXiv 2501.04969), on occupancy or LiDAR.

Line by line as ``AD_L_JEPA`` in HaoranZhuExplorer/AD-L-JEPA-Release pcdet/models/backbones_3d/ad_l_jepa.py
(commit 648f1db), with the sparse voxel encoder of ``drivewm.jepa.voxels`` (plain-PyTorch sparse convolutions
in place of spconv):

- masking on the BEV map of the encoder's output (stride 8): the occupied BEV cells of the whole batch are
  shuffled together and ``1 - mask_ratio`` of them kept as context; each empty cell is a context cell with
  probability ``1 - mask_ratio``, else a target cell;
- the context encoder runs on the voxels of the kept cells only, the target encoder (EMA, no gradient) on
  the voxels of the masked cells only (sparse: each pass costs its own voxels, not the grid);
- AFTER the context encoder: every cell that is not context (masked occupied and masked empty) takes the
  learnable mask token, context empty cells the learnable empty token; after the target encoder the masked
  empty cells take the same empty token as their target (the token receives gradient from both sides);
- context, predictions and targets are L2-normalised over channels; the predictor is three (3x3 conv,
  BatchNorm, ReLU) layers over the BEV map, at the encoder's width;
- loss = alpha * (0.75 mean(1 - cos) over masked occupied cells + 0.25 mean(1 - cos) over masked empty
  cells) + beta * (variance term), the variance term per sample: mean(relu(1/sqrt(D) - std)) of the
  context at the context occupied cells plus the same of the predictions at the masked occupied cells
  (the published D = 256 gives their 1/16), std = sqrt(var + 1e-4) over the cells of one sample;
- EMA momentum 0.996 -> 1.0 linear over training (the published ``EMA: [0.996, 1.0]``), ALPHA = BETA = 1
  and MASKED_RATIO 0.5 (tools/cfgs/kitti_models/ad_l_jepa_kitti.yaml).

Masks are drawn from ``step_generator(seed, step)``: the same on every rank and after a resume. drivewm's ViT
variant of the method (mask and empty tokens before a ViT) is ``jepa_bev`` with ``masking='bev'``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones.sparse_conv import SparseVoxels
from drivewm.jepa.bev import frames_of
from drivewm.jepa.masks import step_generator
from drivewm.jepa.objectives import StepCounter, diagnostics
from drivewm.jepa.regularizers import ema_momentum, ema_update
from drivewm.jepa.voxels import VoxelEncoder, VoxelEncoderConfig, lidar_frames
from drivewm.registry import register_model


@dataclass(kw_only=True)
class AdlJepaConfig:
    name: str = "adl_jepa"
    """Registered model name."""
    encoder: VoxelEncoderConfig = field(default_factory=VoxelEncoderConfig)
    """The voxel encoder (occ or lidar)."""
    mask_ratio: float = 0.5
    """Fraction of the occupied BEV cells masked, and the probability of an empty cell being a target (0.5)."""
    alpha: float = 1.0
    """Weight of the cosine prediction loss (ALPHA)."""
    beta: float = 1.0
    """Weight of the variance term (BETA; 1.0 in the published configs)."""
    occupied_weight: float = 0.75
    """Share of the masked occupied cells in the prediction loss."""
    empty_weight: float = 0.25
    """Share of the masked empty cells in the prediction loss."""
    ema_start: float = 0.996
    """EMA momentum at step 0."""
    ema_end: float = 1.0
    """EMA momentum at the last step (linear in between)."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs; 0 = never."""
    seed: int = 0
    """Seed of the mask generator (with the step)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"adl_jepa mask_ratio must be in (0, 1), got {self.mask_ratio}")


class BEVPredictor(nn.Module):
    """The published predictor: three (3x3 conv, BatchNorm2d, ReLU) over the BEV map, width unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.ReLU()) for _ in range(3)
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


@dataclass
class BEVMasks:
    """Bool maps [B, h, w] over the encoder's BEV cells."""

    context: Tensor
    """Occupied cells whose voxels the context encoder sees."""
    target: Tensor
    """Occupied cells whose voxels the target encoder sees (masked)."""
    context_empty: Tensor
    """Empty cells left visible (empty token in the context)."""
    target_empty: Tensor
    """Empty cells masked (empty token as the target)."""


def draw_bev_masks(occupied: Tensor, ratio: float, g: torch.Generator) -> BEVMasks:
    """AD-L-JEPA's masks from the occupied BEV cells [B, h, w]: one shuffle over the occupied cells of the whole
    batch (``int(n * (1 - ratio))`` kept), then an independent draw per empty cell."""
    flat = occupied.flatten()
    cells = flat.nonzero()[:, 0]  # the occupied cells in (b, row, col) order, as torch.unique sorts them
    keep = torch.argsort(torch.rand(cells.numel(), generator=g))[: int(cells.numel() * (1 - ratio))]
    context = torch.zeros_like(flat)
    context[cells[keep.to(cells.device)]] = True
    context = context.view_as(occupied)
    visible = torch.rand(occupied.shape, generator=g).to(occupied.device) < (1 - ratio)
    empty = ~occupied
    return BEVMasks(context=context, target=occupied & ~context, context_empty=visible & empty, target_empty=~visible & empty)


class AdlJepa(nn.Module):
    def __init__(self, cfg: AdlJepaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VoxelEncoder(cfg.encoder)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        d = cfg.encoder.dim
        self.predictor = BEVPredictor(d)
        self.mask_token = nn.Parameter(torch.randn(1, d, 1, 1))
        self.empty_token = nn.Parameter(torch.randn(1, d, 1, 1))
        self.counter = StepCounter()

    # ---- inputs ------------------------------------------------------------------------------------
    def _voxels(self, batch: dict[str, Tensor], encoder: VoxelEncoder | None = None) -> SparseVoxels:
        """The active voxels of the batch's frames, with `encoder`'s input features (the online one's by
        default; the target branch reads its own EMA copy of the class embedding)."""
        encoder = encoder or self.encoder
        if self.cfg.encoder.modality == "lidar":
            return encoder.voxelize(*lidar_frames(batch))
        return encoder.voxelize(frames_of(batch["occ"]))

    def encode(self, x: Tensor) -> Tensor:
        """Frozen features of the target encoder over the whole input: [B, N, D], N the BEV cells row-major.
        ``x``: occupancy [B, X, Y, Z] (occ), or a batch dict with ``lidar`` / ``lidar_count`` (lidar)."""
        vox = self._voxels(x, self.target_encoder) if isinstance(x, dict) else self.target_encoder.voxelize(frames_of(x))
        return self.target_encoder(vox).flatten(2).transpose(1, 2)

    def _cells(self, vox: SparseVoxels) -> tuple[Tensor, Tensor, Tensor]:
        """The BEV cell (b, row, col) of the output map holding each voxel row."""
        p = self.cfg.encoder.patch
        c = vox.coords
        return c[:, 0], c[:, 2] // p, c[:, 3] // p

    def bev_occupied(self, vox: SparseVoxels) -> Tensor:
        """Occupied BEV cells of the output map [B, h, w]."""
        h, w = self.cfg.encoder.token_grid
        out = torch.zeros(vox.batch_size, h, w, dtype=torch.bool, device=vox.coords.device)
        out[self._cells(vox)] = True
        return out

    def masks(self, vox: SparseVoxels, step: int) -> BEVMasks:
        return draw_bev_masks(self.bev_occupied(vox), self.cfg.mask_ratio, step_generator(self.cfg.seed, step))

    # ---- the forward pass ----------------------------------------------------------------------------
    def views(self, vox: SparseVoxels, target_vox: SparseVoxels, m: BEVMasks) -> tuple[Tensor, Tensor, Tensor]:
        """Context, prediction and target maps [B, D, h, w], each L2-normalised over channels. `vox` and
        `target_vox` are the same voxels with the online and the target encoder's input features."""
        in_context = m.context[self._cells(vox)]  # [N]: the voxel rows the context encoder sees
        ctx = self.encoder(vox.select(in_context))
        ctx = torch.where((m.context | m.context_empty)[:, None], ctx, self.mask_token)
        ctx = torch.where(m.context_empty[:, None], self.empty_token, ctx)
        ctx = F.normalize(ctx, dim=1)
        pred = F.normalize(self.predictor(ctx), dim=1)
        with torch.no_grad():
            tgt = self.target_encoder(target_vox.select(~in_context))
        tgt = F.normalize(torch.where(m.target_empty[:, None], self.empty_token, tgt), dim=1)
        return ctx, pred, tgt

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        step = self.counter.value
        vox = self._voxels(batch)
        with torch.no_grad():
            target_vox = self._voxels(batch, self.target_encoder)
        m = self.masks(vox, step)
        ctx, pred, tgt = self.views(vox, target_vox, m)
        cos = 1.0 - (pred * tgt).sum(1)  # [B, h, w]; both unit vectors
        jepa = cfg.occupied_weight * _mean(cos[m.target]) + cfg.empty_weight * _mean(cos[m.target_empty])
        d = ctx.shape[1]
        floor = 1.0 / math.sqrt(d)
        reg_ctx = _variance_term(ctx, m.context, floor)
        reg_pred = _variance_term(pred, m.target, floor)
        reg = reg_ctx + reg_pred
        loss = cfg.alpha * jepa + cfg.beta * reg
        out = {"loss": loss, "loss_jepa": jepa.detach(), "loss_reg": reg.detach(),
               "reg_context": reg_ctx.detach(), "reg_prediction": reg_pred.detach()}
        if cfg.diag_every and (step + 1) % cfg.diag_every == 0:
            out.update(diagnostics(ctx.permute(0, 2, 3, 1)[m.context]))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        """Advance the mask seed; EMA-update the target encoder (momentum ema_start -> ema_end linear)."""
        self.counter.set(step + 1)
        ema_update(self.target_encoder, self.encoder, ema_momentum(step, total_steps, self.cfg.ema_start, self.cfg.ema_end))


def _mean(x: Tensor) -> Tensor:
    """Mean of a selection; 0 for an empty one (a batch without masked empty cells, say)."""
    return x.mean() if x.numel() else x.sum()


def _variance_term(z: Tensor, cells: Tensor, floor: float) -> Tensor:
    """Per sample: mean over channels of relu(floor - sqrt(var + 1e-4)) over the sample's selected cells, averaged
    over the samples with at least two cells (one cell has no variance)."""
    rows = z.permute(0, 2, 3, 1)  # [B, h, w, D]
    terms = [F.relu(floor - torch.sqrt(rows[b][cells[b]].var(dim=0) + 1e-4)).mean()
             for b in range(z.shape[0]) if int(cells[b].sum()) >= 2]
    return torch.stack(terms).mean() if terms else z.sum() * 0.0


@register_model("adl_jepa", AdlJepaConfig, kind="jepa")
def build_adl_jepa(cfg: AdlJepaConfig) -> AdlJepa:
    return AdlJepa(cfg)


__all__ = ["AdlJepa", "AdlJepaConfig", "BEVMasks", "BEVPredictor", "draw_bev_masks"]
