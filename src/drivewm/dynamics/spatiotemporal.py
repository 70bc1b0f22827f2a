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

from drivewm.dynamics.base import TokenWorldModel, WarpPrior, WorldModelConfig
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
        self.rollout_window = cfg.max_frames  # the last frame's logits predict the next frame
        self.mask_id = cfg.vocab_size
        self.ego_emb = nn.Sequential(nn.Linear(self.action_dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.net = SpatioTemporalNet(cfg)

    def next_frame_logits(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> Tensor:
        """tokens [B, T, h, w], cond [B, T, A] (, prior of the T frames: each frame's input carries the prior
        of the frame after it) -> logits [B, T, h, w, V]; frame t's logits predict frame t+1."""
        return self.net(tokens, self.ego_emb(cond), prior=prior.ids if prior is not None else None)

    def loss_tokens(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
        if not 2 <= t <= self.cfg.max_frames:
            raise ValueError(f"window of {t} frames: need 2..model.max_frames={self.cfg.max_frames}")
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        logits = self.next_frame_logits(inputs, cond, prior)[:, :-1]  # [B, T-1, h, w, V]
        target = tokens[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1))
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float()
        return {"loss": loss, "token_acc": acc.mean(), "last_frame_acc": acc[:, -1].mean()}

    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None) -> Tensor:
        """Every token of the next frame at once, from the last window frame's logits."""
        logits = self.next_frame_logits(window, cond[:, :-1], prior)[:, -1]  # [B, h, w, V]
        return sample_logits(logits, sampling, generator)


@register_model("occworld", SpatioTemporalWorldConfig, kind="world")
def build_occworld(cfg: SpatioTemporalWorldConfig) -> SpatioTemporalWorldModel:
    return SpatioTemporalWorldModel(cfg)
