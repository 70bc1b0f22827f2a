"""Shared pieces of the pretraining objectives: prediction losses, collapse-control config and terms,
the step counter that seeds masks and SIGReg slices, and the cheap collapse diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.metrics import rankme
from drivewm.jepa.regularizers import adl_variance, sigreg, vicreg_covariance, vicreg_variance

PRED_LOSSES = ("smooth_l1", "l1", "cosine")


@dataclass(kw_only=True)
class CollapseConfig:
    """Collapse control; the terms combine (e.g. EMA + AD-L-JEPA variance as in AD-L-JEPA)."""

    target: str = "ema"
    """Target encoder: 'ema' (momentum copy, I-JEPA) or 'shared' (the online encoder itself)."""
    stop_grad: bool = True
    """Stop the gradient through the targets (always on for 'ema'; LeJEPA / VICReg use 'shared' without)."""
    ema_start: float = 0.996
    """EMA momentum at step 0 (I-JEPA 0.996)."""
    ema_end: float = 1.0
    """EMA momentum at the last step (linear schedule)."""
    vicreg_sim: float = 0.0
    """VICReg: weight of the prediction (invariance) term; 0 = VICReg off (paper: 25)."""
    vicreg_std: float = 25.0
    """VICReg: weight of the variance hinge (paper: 25)."""
    vicreg_cov: float = 1.0
    """VICReg: weight of the covariance term (paper: 1)."""
    vicreg_gamma: float = 1.0
    """VICReg: target standard deviation of every dimension."""
    adl_variance: float = 0.0
    """Weight of AD-L-JEPA's variance regulariser on normalised context and predicted embeddings (0 = off)."""
    sigreg_lambda: float = 0.0
    """SIGReg on the patch tokens: loss = (1 - lambda) * prediction + lambda * SIGReg (0 = off; LeJEPA's 0.02-0.05)."""
    sigreg_slices: int = 256
    """SIGReg: random unit projections per step."""

    def __post_init__(self) -> None:
        if self.target not in ("ema", "shared"):
            raise ValueError(f"collapse.target {self.target!r} not in ('ema', 'shared')")
        if not 0.0 <= self.sigreg_lambda < 1.0:
            raise ValueError(f"collapse.sigreg_lambda must be in [0, 1), got {self.sigreg_lambda}")
        if not 0.0 <= self.ema_start <= self.ema_end <= 1.0:
            raise ValueError(f"collapse EMA momenta must satisfy 0 <= start <= end <= 1, got {self.ema_start}, {self.ema_end}")


def prediction_loss(pred: Tensor, target: Tensor, kind: str, weights: Tensor | None = None) -> Tensor:
    """Mean loss between predicted and target embeddings [..., D]; ``weights`` [...] weigh the tokens."""
    if kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    elif kind == "l1":
        per = (pred - target).abs().mean(-1)
    elif kind == "cosine":
        per = 1.0 - F.cosine_similarity(pred, target, dim=-1)
    else:
        raise ValueError(f"prediction loss {kind!r} not in {PRED_LOSSES}")
    if weights is None:
        return per.mean()
    return (per * weights).sum() / weights.sum().clamp_min(1e-8)


def collapse_terms(
    cfg: CollapseConfig, pred_loss: Tensor, context: Tensor, predicted: Tensor, online: Tensor, step: int, seed: int
) -> dict[str, Tensor]:
    """Total loss and its parts from the prediction loss and the embeddings [..., D] the terms act on.

    ``context`` / ``predicted``: the online context and predicted embeddings (VICReg, AD-L-JEPA);
    ``online``: the online encoder's embeddings of the full view (SIGReg, as LeJEPA regularises every view).
    """
    out: dict[str, Tensor] = {"pred_loss": pred_loss.detach()}
    total = pred_loss
    if cfg.vicreg_sim > 0:
        # VICReg.forward in facebookresearch/vicreg main_vicreg.py (4e12602fd495af83efd1631fbe82523e6db092e0):
        # the variance hinge is averaged over the two branches, the covariance term summed.
        std = 0.5 * (vicreg_variance(context, cfg.vicreg_gamma) + vicreg_variance(predicted, cfg.vicreg_gamma))
        cov = vicreg_covariance(context) + vicreg_covariance(predicted)
        total = cfg.vicreg_sim * pred_loss + cfg.vicreg_std * std + cfg.vicreg_cov * cov
        out.update(vicreg_std=std.detach(), vicreg_cov=cov.detach())
    if cfg.adl_variance > 0:
        var = adl_variance(context) + adl_variance(predicted)
        total = total + cfg.adl_variance * var
        out["adl_variance"] = var.detach()
    if cfg.sigreg_lambda > 0:
        sr = sigreg(online, step=step, num_slices=cfg.sigreg_slices, seed=seed)
        total = (1.0 - cfg.sigreg_lambda) * total + cfg.sigreg_lambda * sr
        out["sigreg"] = sr.detach()
    out["loss"] = total
    return out


@torch.no_grad()
def diagnostics(z: Tensor) -> dict[str, Tensor]:
    """Cheap collapse diagnostics of embeddings [..., D]: RankMe (arXiv 2210.02885, ``drivewm.metrics``) and the
    mean per-dimension std of L2-normalised rows (~1/sqrt(D) when spread, 0 when collapsed)."""
    z = z.detach().reshape(-1, z.shape[-1]).float()
    zn = F.normalize(z, dim=-1)
    return {"rankme": torch.tensor(rankme(z)), "dim_std": zn.std(dim=0).mean()}


class StepCounter(nn.Module):
    """A persistent step buffer: seeds masks and SIGReg slices, saved with the weights so a resume continues."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def value(self) -> int:
        return int(self.step)

    def set(self, step: int) -> None:
        self.step.fill_(step)
