"""``jepa_bev``: masked-latent prediction on BEV occupancy with selectable collapse control.

Two maskings, one code path:

- 'multiblock' (I-JEPA, Assran et al., 2023, arXiv 2301.08243): the context encoder sees only the
  context tokens; a narrow predictor fills 4 target blocks from them with mask tokens at the target
  positions; the targets are the layer-normed patch embeddings of the full view; smooth-L1 loss.
- 'tubes' (V-JEPA, Bardes et al., 2024, arXiv 2404.08471): the window's T frames form one clip of
  T / tubelet * N space-time tokens (``encoder.tubelet``, 2 in V-JEPA and V-JEPA 2); two mask groups per
  step (8 tubes at spatial scale 0.15, 2 at 0.7, each repeated over every tubelet), the prediction loss
  averaged over both; L1 in the paper (``pred_loss``). With ``encoder.pos_embed='rope3d'`` and a constant
  EMA of 0.99925 this is V-JEPA 2's encoder recipe (arXiv 2506.09985; preset ``jepa/jepa_bev_vjepa2.yaml``).
- 'bev' (drivewm's ViT variant of AD-L-JEPA, Zhu et al., 2025, arXiv 2501.04969; the method as
  published, with its sparse voxel encoder and conv predictor, is ``adl_jepa``): 50 % of the BEV cells
  are masked; the context encoder sees every cell, masked cells replaced by a learnable mask token and
  empty cells (no occupied voxel) by a learnable empty token BEFORE the ViT; the targets are the full
  view's; predictions and targets are L2-normalised and the loss is 0.75 (1 - cos) on masked occupied
  cells + 0.25 (1 - cos) on masked empty cells.

'multiblock' and 'bev' masks are drawn in the training loader (``collate_fn``: ``MaskCollator``, as
vjepa2) and reach ``loss`` as ``batch['mask_context']`` / ``batch['mask_targets']`` indices; a batch
without them (built outside a loader) gets the same draw from the model's step counter.

Collapse control (``CollapseConfig``): EMA teacher with stop-gradient (momentum 0.996 -> 1.0 linear,
updated in ``on_step_end``), VICReg (arXiv 2105.04906), AD-L-JEPA's variance term, SIGReg (arXiv
2511.08544) on the online encoder's patch tokens next to the I-JEPA prediction loss (drivewm's variant;
LeJEPA as published, on pooled views without a predictor, is ``lejepa``), or none (the collapse baseline).
With 'multiblock' / 'bev' a window [B, T, X, Y, Z] is read as B * T independent frames.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, gather_tokens, init_weights, patch_labels
from drivewm.jepa.masks import MaskCollator, Masks, MultiBlockMasking, RandomCellMasking, step_generator, vjepa_short_long
from drivewm.jepa.objectives import PRED_LOSSES, CollapseConfig, StepCounter, collapse_terms, diagnostics, prediction_loss
from drivewm.jepa.predictor import Predictor
from drivewm.jepa.regularizers import ema_momentum, ema_update
from drivewm.registry import register_model

MASKINGS = ("multiblock", "bev", "tubes")


@dataclass(kw_only=True)
class JepaBEVConfig:
    name: str = "jepa_bev"
    """Registered model name."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The patch encoder (occupancy modality)."""
    predictor_width: int = 32
    """Predictor width (narrower than the encoder, I-JEPA)."""
    predictor_depth: int = 2
    """Predictor transformer blocks."""
    predictor_heads: int = 4
    """Predictor attention heads."""
    masking: str = "multiblock"
    """'multiblock' (I-JEPA: 4 targets of 0.15-0.2, context 0.85-1.0), 'bev' (AD-L-JEPA: 50 % random cells) or
    'tubes' (V-JEPA: the window's frames as one clip, 8 tubes at 0.15 + 2 at 0.7 across all frames)."""
    mask_ratio: float = 0.5
    """Fraction of cells masked with masking='bev'."""
    min_keep: int = 10
    """Fewest context tokens with masking='multiblock' (I-JEPA's collator: 10)."""
    pred_loss: str = "smooth_l1"
    """'smooth_l1' (I-JEPA), 'l1' (V-JEPA) or 'cosine' (AD-L-JEPA: 1 - cos, occupied / empty weighted)."""
    norm_targets: bool = True
    """Layer-norm the target embeddings (I-JEPA, V-JEPA)."""
    occupied_weight: float = 0.75
    """AD-L-JEPA weight of masked occupied cells in the cosine loss."""
    empty_weight: float = 0.25
    """AD-L-JEPA weight of masked empty cells in the cosine loss."""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """Collapse control: EMA / VICReg / AD-L-JEPA variance / SIGReg, combinable."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs (match train.log_every); 0 = never."""
    seed: int = 0
    """Seed of the mask generator and the SIGReg slices (with the step: reproducible, same on every rank)."""

    def __post_init__(self) -> None:
        if self.masking not in MASKINGS:
            raise ValueError(f"masking {self.masking!r} not in {MASKINGS}")
        if self.pred_loss not in PRED_LOSSES:
            raise ValueError(f"pred_loss {self.pred_loss!r} not in {PRED_LOSSES}")


def frames_of(occ: Tensor) -> Tensor:
    """[B, T, X, Y, Z] or [B, X, Y, Z] -> [B * T, X, Y, Z]."""
    if occ.dim() == 5:
        return occ.flatten(0, 1)
    if occ.dim() == 4:
        return occ
    raise ValueError(f"batch['occ'] must be [B, T, X, Y, Z] or [B, X, Y, Z], got shape {tuple(occ.shape)}")


def frame_rows(batch: dict[str, Tensor]) -> int:
    """Mask rows a batch needs: one per frame of batch['occ'] (a window is read as B * T frames)."""
    return frames_of(batch["occ"]).shape[0]


class JepaBEV(nn.Module):
    """I-JEPA / AD-L-JEPA / LeJEPA-style pretraining of a BEV occupancy encoder."""

    def __init__(self, cfg: JepaBEVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc = cfg.encoder
        self.encoder = PatchEncoder(enc)
        self.predictor = Predictor(enc.dim, enc.token_grid, cfg.predictor_width, cfg.predictor_depth, cfg.predictor_heads)
        init_weights(self)
        if cfg.masking == "bev":
            self.mask_token = nn.Parameter(torch.zeros(enc.dim))
            self.empty_token = nn.Parameter(torch.zeros(enc.dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)
            nn.init.trunc_normal_(self.empty_token, std=0.02)
        self.target_encoder = None
        if cfg.collapse.target == "ema":
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.counter = StepCounter()
        self.masker = {"multiblock": MultiBlockMasking(min_keep=cfg.min_keep), "bev": RandomCellMasking(ratio=cfg.mask_ratio),
                       "tubes": None}[cfg.masking]

    # ---- the protocol ----------------------------------------------------------------------------
    def encode(self, occ: Tensor) -> Tensor:
        """Frozen-feature view: uint8 [B, X, Y, Z] -> [B, N, D] (the EMA target encoder when there is one)."""
        enc = self.target_encoder if self.target_encoder is not None else self.encoder
        return enc(frames_of(occ))

    def masks(self, batch_size: int, step: int, frames: int = 1) -> list[Masks]:
        """The step's mask groups (one; two for V-JEPA tubes), from the (seed, step) generator."""
        g = step_generator(self.cfg.seed, step)
        if self.cfg.masking == "tubes":
            return vjepa_short_long(batch_size, self.cfg.encoder.token_grid, frames, g)
        return [self.masker(batch_size, self.cfg.encoder.token_grid, g)]

    def collate_fn(self, batches_done: int) -> MaskCollator | None:
        """The training loader's collator: it draws each batch's masks ('multiblock', 'bev') in the data loader
        and adds their indices as ``mask_context`` [B * T, Nc] / ``mask_targets`` [B * T, K, Nt], as vjepa2 does;
        batch n uses the (seed, n) generator. Tubes draw both of their groups in ``loss``."""
        if self.cfg.masking == "tubes":
            return None
        return MaskCollator(self.masker, self.cfg.encoder.token_grid, self.cfg.seed, start_step=batches_done, rows=frame_rows)

    def _step_masks(self, batch: dict[str, Tensor], b: int, step: int, frames: int) -> list[Masks]:
        """The masks the collator put in the batch, else the step's own draw (a batch built outside a loader)."""
        if "mask_context" in batch:
            return [Masks(context=batch["mask_context"], targets=batch["mask_targets"])]
        return self.masks(b, step, frames)

    def _context(self, occ: Tensor, m: Masks) -> Tensor:
        """Online context embeddings at m.context: [B, Nc, D]."""
        if self.cfg.masking == "multiblock":
            return self.encoder(occ, keep=m.context)
        if self.cfg.masking == "tubes":
            return self.encoder.run(gather_tokens(self.encoder.video_tokens(occ), m.context), m.context)
        tokens = self.encoder.tokens(occ)  # [B, N, D]
        b, n, d = tokens.shape
        masked = torch.zeros(b, n, dtype=torch.bool, device=occ.device).scatter_(1, m.targets.flatten(1), True)
        empty = ~patch_labels(occ, self.cfg.encoder.patch, self._free_id)
        tokens = torch.where(empty[..., None], self.empty_token.expand(b, n, d), tokens)
        tokens = torch.where(masked[..., None], self.mask_token.expand(b, n, d), tokens)
        return gather_tokens(self.encoder.run(tokens), m.context)

    @property
    def _free_id(self) -> int:
        return self.cfg.encoder.num_classes - 1

    def _targets(self, occ: Tensor) -> Tensor:
        """Target embeddings of the full view [B, N, D] (EMA or online, stop-grad per config)."""
        c = self.cfg.collapse
        enc = self.target_encoder or self.encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.target_encoder is None and not c.stop_grad):
            return enc.run(enc.video_tokens(occ)) if self.cfg.masking == "tubes" else enc(occ)

    def _clip(self, occ: Tensor) -> Tensor:
        """The model's input view of batch['occ']: a clip [B, T, ...] for tubes, else frames [B * T, ...]."""
        if self.cfg.masking != "tubes":
            return frames_of(occ)
        k = self.cfg.encoder.tubelet
        if occ.dim() != 5 or occ.shape[1] < 2 or occ.shape[1] % k:
            raise ValueError(f"masking='tubes' needs windows [B, T >= 2, X, Y, Z] with T a multiple of encoder.tubelet={k}, "
                             f"got occ {tuple(occ.shape)}")
        return occ

    def _weights(self, occ: Tensor, targets: Tensor) -> Tensor | None:
        """AD-L-JEPA token weights [B, K, Nt]: 0.75 / 0.25 split between masked occupied and empty cells."""
        if self.cfg.pred_loss != "cosine" or self.cfg.masking == "tubes":
            return None
        b, k, nt = targets.shape
        labels = patch_labels(occ, self.cfg.encoder.patch, self._free_id)[..., None].float()
        occupied = gather_tokens(labels, targets.flatten(1)).view(b, k, nt)
        weights = self.cfg.occupied_weight * occupied + self.cfg.empty_weight * (1.0 - occupied)
        # Normalise each group to its own mean so the weights split the loss 0.75 / 0.25 as in AD-L-JEPA.
        n_occ, n_emp = occupied.sum().clamp_min(1.0), (1.0 - occupied).sum().clamp_min(1.0)
        return weights * torch.where(occupied > 0, occupied.numel() / n_occ, occupied.numel() / n_emp)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ = self._clip(batch["occ"])
        tubes = self.cfg.masking == "tubes"
        b, frames = occ.shape[0], (occ.shape[1] // self.cfg.encoder.tubelet if tubes else 1)  # frames: of tokens
        step = self.counter.value
        h = self._targets(occ)  # [B, (T *) N, D]
        online = h
        tgt_all = F.layer_norm(h, h.shape[-1:]) if self.cfg.norm_targets else h
        losses, ctxs, preds = [], [], []
        for m in self._step_masks(batch, b, step, frames):
            m = Masks(context=m.context.to(occ.device), targets=m.targets.to(occ.device))
            ctx = self._context(occ, m)  # [B, Nc, D]
            pred = self.predictor(ctx, m.context, m.targets, frames)  # [B, K, Nt, D]
            k, nt = m.targets.shape[1:]
            tgt = gather_tokens(tgt_all, m.targets.flatten(1)).view(b, k, nt, -1)
            losses.append(prediction_loss(pred, tgt, self.cfg.pred_loss, self._weights(occ, m.targets)))
            ctxs.append(ctx.reshape(-1, ctx.shape[-1]))
            preds.append(pred.reshape(-1, pred.shape[-1]))
        pl = torch.stack(losses).mean()
        if self.cfg.collapse.sigreg_lambda > 0 and not h.requires_grad:
            # SIGReg acts on the online encoder's full view, with gradient
            online = self.encoder.run(self.encoder.video_tokens(occ)) if tubes else self.encoder(occ)
        out = collapse_terms(self.cfg.collapse, pl, torch.cat(ctxs), torch.cat(preds), online, step, self.cfg.seed)
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(h))  # over all patch tokens [B * N, D]
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        """Advance the mask / slice seed; EMA-update the target encoder (momentum start -> end linear)."""
        self.counter.set(step + 1)
        if self.target_encoder is not None:
            c = self.cfg.collapse
            ema_update(self.target_encoder, self.encoder, ema_momentum(step, total_steps, c.ema_start, c.ema_end))


@register_model("jepa_bev", JepaBEVConfig, kind="jepa")
def build_jepa_bev(cfg: JepaBEVConfig) -> JepaBEV:
    return JepaBEV(cfg)
