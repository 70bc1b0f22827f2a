"""OccWorld-style spatio-temporal world model: all tokens of the next frame predicted in parallel.

OccWorld (Zheng et al. 2023, arXiv 2311.16038) forecasts the scene-token grid of frame t+1 from frames
<= t with a multi-scale (U-Net) transformer: spatial attention within a frame, causal temporal attention
across frames, the ego pose as its own token, teacher forcing with causal temporal masks over the whole
clip and one cross-entropy per token. DrivingWorld (Hu et al. 2024, arXiv 2412.19505) fights the drift
of autoregressive rollouts by randomly masking input tokens during training (50 %): `input_mask_ratio`
(`schedule.mask_input_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.dynamics.base import TokenWorldModel, WorldModelConfig
from drivewm.dynamics.sampling import SamplingConfig, sample_logits
from drivewm.dynamics.schedule import mask_input_tokens
from drivewm.dynamics.st_net import SpatioTemporalNet
from drivewm.registry import register_model


@dataclass(kw_only=True)
class SpatioTemporalWorldConfig(WorldModelConfig):
    name: str = "occworld"
    """Registered model name."""
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Width multiplier of each scale of the U-Net (OccWorld: 128, 256, 512 = 128 x (1, 2, 4))."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))
    """Token choice of rollouts; OccWorld takes the argmax (temperature 0)."""


class SpatioTemporalWorldModel(TokenWorldModel):
    def __init__(self, cfg: SpatioTemporalWorldConfig) -> None:
        super().__init__(cfg)
        self.sampling = cfg.sampling
        self.mask_id = cfg.vocab_size
        self.ego_emb = nn.Sequential(nn.Linear(self.action_dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.net = SpatioTemporalNet(
            vocab_size=cfg.vocab_size, token_shape=self.token_shape, dim=cfg.dim, dim_mult=cfg.dim_mult,
            depth=cfg.depth, heads=cfg.heads, backbone=cfg.backbone, max_frames=cfg.max_frames,
            dropout=cfg.dropout, prior=cfg.warp_prior, prior_ages=cfg.prior_max_age,
        )

    def next_frame_logits(self, tokens: Tensor, cond: Tensor, next_prior: Tensor | None = None) -> Tensor:
        """tokens [B, T, h, w], cond [B, T, A] (, next_prior [B, T, h, w]: the ego-warped hint of frame t+1
        at frame t) -> logits [B, T, h, w, V]; frame t's logits predict frame t+1."""
        return self.net(tokens, self.ego_emb(cond), prior=next_prior)

    def loss_tokens(self, tokens: Tensor, cond: Tensor, next_prior: Tensor | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
        if not 2 <= t <= self.cfg.max_frames:
            raise ValueError(f"window of {t} frames: need 2..model.max_frames={self.cfg.max_frames}")
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        logits = self.next_frame_logits(inputs, cond, next_prior)[:, :-1]  # [B, T-1, h, w, V]
        target = tokens[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1))
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float()
        return {"loss": loss, "token_acc": acc.mean(), "last_frame_acc": acc[:, -1].mean()}

    @torch.no_grad()
    def rollout(
        self,
        context: Tensor,
        actions: Tensor,
        horizon: int,
        *,
        sampling: SamplingConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """context [B, Tc, h, w], actions [B, >=Tc+horizon-1, A] -> future tokens [B, horizon, h, w]."""
        self.check_rollout_inputs(context, actions, horizon)
        sampling = sampling or self.sampling
        frames = context.long()
        prior = self.rollout_prior(None, frames, actions, context.shape[1])  # entry t: the hint of frame t+1
        for k in range(horizon):
            window = frames[:, -self.cfg.max_frames :]
            start = frames.shape[1] - window.shape[1]
            window_prior = prior[:, start:] if prior is not None else None
            logits = self.next_frame_logits(window, actions[:, start : frames.shape[1]].float(), window_prior)[:, -1]
            new = sample_logits(logits, sampling, generator)  # [B, h, w]
            frames = torch.cat([frames, new[:, None]], 1)
            if k < horizon - 1:
                prior = self.rollout_prior(prior, frames, actions, context.shape[1])
        return frames[:, context.shape[1] :]


@register_model("occworld", SpatioTemporalWorldConfig, kind="world")
def build_occworld(cfg: SpatioTemporalWorldConfig) -> SpatioTemporalWorldModel:
    return SpatioTemporalWorldModel(cfg)
