"""``lejepa``: LeJEPA as published (Balestriero & LeCun, 2025, arXiv 2511.08544) on BEV occupancy.

Each frame gives ``global_views`` + ``local_views`` views; every view is encoded and mean-pooled to one
embedding per view and sample [B, D], and a projector (MLP with BatchNorm) maps it to [B, P]. The loss
is the paper's Algorithm 1 (``LeJEPA``), also the loop of ``MINIMAL.md`` in rbalestr-lab/lejepa
(eddffdd857a19726342ef6526e01021fb3c32cae):

    centers = proj[:global_views].mean(0)                  # [B, P], the mean of the global views
    invariance = (centers - proj).square().mean()          # over all views [V, B, P]
    sigreg = mean over views v of SIGReg(proj[v])          # SIGReg on [B, P]
    loss = (1 - lamb) * invariance + lamb * sigreg

No predictor network, no teacher, no stop-gradient, one hyperparameter (``lamb``). SIGReg is
``drivewm.jepa.regularizers.sigreg`` (the official Epps-Pulley statistic, slices seeded by the step so
every view and every rank uses the same directions within a step, as the paper's ``global_step`` seed).

Views: the paper's multi-crop (2 global views at scale 0.3-1.0, 6 local views at 0.05-0.3 of the
image, README "GOTO hyperparameters") taken on the BEV token grid: a view is a rectangle of patches
of that area fraction (aspect log-uniform in [3/4, 4/3], RandomResizedCrop's default), one size per
view and step (the batch shares a token count) and one position per sample. The encoder sees only the
view's tokens, at their true BEV positions (a BEV map has no resize; the colour augmentations of
images have no counterpart for a class grid). drivewm's earlier "I-JEPA + SIGReg on patch tokens"
recipe stays ``jepa_bev`` with ``collapse.sigreg_lambda`` (preset ``jepa/jepa_bev_sigreg.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.jepa.bev import frames_of
from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, init_weights
from drivewm.jepa.masks import step_generator
from drivewm.jepa.objectives import StepCounter, diagnostics
from drivewm.jepa.regularizers import sigreg
from drivewm.registry import register_model


@dataclass(kw_only=True)
class LeJEPAConfig:
    name: str = "lejepa"
    """Registered model name."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The patch encoder (occupancy modality), as in jepa_bev."""
    global_views: int = 2
    """Global views per frame (LeJEPA README: 2)."""
    local_views: int = 6
    """Local views per frame (LeJEPA README: 6)."""
    global_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    """Area fraction range of a global view (README: RandomResizedCrop scale 0.3-1.0)."""
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.3])
    """Area fraction range of a local view (README: 0.05-0.3)."""
    proj_hidden: int = 256
    """Hidden width of the projector MLP (Linear-BN-ReLU twice, then Linear, as MINIMAL.md's torchvision MLP)."""
    proj_dim: int = 16
    """Projector output width P, the space SIGReg and the invariance act on (MINIMAL.md: 16)."""
    lamb: float = 0.02
    """The one trade-off: loss = (1 - lamb) * invariance + lamb * SIGReg (MINIMAL.md: 0.02)."""
    num_slices: int = 256
    """SIGReg random directions per step (paper and MINIMAL.md: 256)."""
    diag_every: int = 10
    """Steps between RankMe / per-dimension-std logs of the pooled embeddings; 0 = never."""
    seed: int = 0
    """Seed of the view sampler and the SIGReg slices (with the step: reproducible, same on every rank)."""

    def __post_init__(self) -> None:
        if self.global_views < 1 or self.local_views < 0:
            raise ValueError(f"lejepa needs >= 1 global view and >= 0 local views, got {self.global_views}, {self.local_views}")
        if self.global_views + self.local_views < 2:
            raise ValueError("lejepa needs at least 2 views in all (the invariance term compares views)")
        for key, (lo, hi) in (("global_scale", self.global_scale), ("local_scale", self.local_scale)):
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"lejepa {key} must satisfy 0 < lo <= hi <= 1, got {[lo, hi]}")
        if not 0.0 <= self.lamb <= 1.0:
            raise ValueError(f"lejepa lamb must be in [0, 1], got {self.lamb}")


def crop_views(batch: int, grid: tuple[int, int], scales: list[tuple[float, float]], g: torch.Generator) -> list[Tensor]:
    """One rectangle of tokens per view (area fraction in that view's scale range) -> indices [B, h * w] per view."""
    gh, gw = grid
    log_r = (math.log(3 / 4), math.log(4 / 3))
    out = []
    for lo, hi in scales:
        area = gh * gw * (lo + (hi - lo) * float(torch.rand((), generator=g)))
        r = math.exp(log_r[0] + (log_r[1] - log_r[0]) * float(torch.rand((), generator=g)))
        h = min(gh, max(1, round(math.sqrt(area / r))))
        w = min(gw, max(1, round(math.sqrt(area * r))))
        top = torch.randint(0, gh - h + 1, (batch,), generator=g)
        left = torch.randint(0, gw - w + 1, (batch,), generator=g)
        rows = top[:, None, None] + torch.arange(h)[None, :, None]  # [B, h, 1]
        cols = left[:, None, None] + torch.arange(w)[None, None, :]  # [B, 1, w]
        out.append((rows * gw + cols).reshape(batch, h * w))
    return out


def lejepa_loss(proj: Tensor, global_views: int, lamb: float, step: int, seed: int, num_slices: int
                ) -> dict[str, Tensor]:
    """Projected views [V, B, P], the first ``global_views`` global -> loss, invariance and SIGReg (Algorithm 1)."""
    if proj.dim() != 3 or not 1 <= global_views <= proj.shape[0]:
        raise ValueError(f"lejepa_loss needs projections [V, B, P] with 1 <= global_views <= V, got {tuple(proj.shape)}")
    centers = proj[:global_views].mean(0)  # [B, P]
    inv = (centers - proj).square().mean()
    sr = torch.stack([sigreg(p, step=step, num_slices=num_slices, seed=seed) for p in proj]).mean()
    return {"loss": (1.0 - lamb) * inv + lamb * sr, "invariance": inv.detach(), "sigreg": sr.detach()}


class LeJEPA(nn.Module):
    def __init__(self, cfg: LeJEPAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h = cfg.encoder.dim, cfg.proj_hidden
        self.encoder = PatchEncoder(cfg.encoder)
        self.projector = nn.Sequential(
            nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(),
            nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(),
            nn.Linear(h, cfg.proj_dim),
        )
        init_weights(self)
        self.counter = StepCounter()

    def encode(self, occ: Tensor) -> Tensor:
        """Frozen-feature view: uint8 [B, X, Y, Z] -> patch embeddings [B, N, D]."""
        return self.encoder(frames_of(occ))

    def views(self, batch: int, step: int) -> list[Tensor]:
        """The step's view token indices, global views first: [B, K_v] per view, from the (seed, step) generator."""
        c = self.cfg
        scales = [tuple(c.global_scale)] * c.global_views + [tuple(c.local_scale)] * c.local_views
        return crop_views(batch, self.cfg.encoder.token_grid, scales, step_generator(c.seed, step))

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ = frames_of(batch["occ"])
        b, step = occ.shape[0], self.counter.value
        emb = [self.encoder(occ, keep=idx.to(occ.device)).mean(1) for idx in self.views(b, step)]  # V x [B, D]
        emb = torch.cat(emb)  # [V * B, D]: the projector's BatchNorm sees every view, as MINIMAL.md
        proj = self.projector(emb).view(-1, b, self.cfg.proj_dim)  # [V, B, P]
        out = lejepa_loss(proj, self.cfg.global_views, self.cfg.lamb, step, self.cfg.seed, self.cfg.num_slices)
        if self.cfg.diag_every and (step + 1) % self.cfg.diag_every == 0:
            out.update(diagnostics(emb))
        return out

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        """Advance the view / slice seed."""
        self.counter.set(step + 1)


@register_model("lejepa", LeJEPAConfig, kind="jepa")
def build_lejepa(cfg: LeJEPAConfig) -> LeJEPA:
    return LeJEPA(cfg)
