"""OccWorld spatio-temporal world models: all tokens of the next frame predicted in parallel.

Two registered variants:

* `occworld_published` (`OccWorldModel`): OccWorld as published (wzzheng/OccWorld, commit 1ee7f77). The
  scene stream sees observed scene tokens only (condition 'none': no ego motion of any frame enters it),
  and a separate pose branch (`drivewm.dynamics.pose_branch`) predicts the ego's steps from the scene
  features and its own past steps under the driving command, trained with 0.1 x OccWorld's plan loss
  and rolled out autoregressively, its predicted steps fed back. Its figures are comparable with OccWorld's.
* `occworld` (`SpatioTemporalWorldModel`): drivewm's action-conditioned variant, whose scene stream reads
  the recorded action (and with 'action_motion' the ego motion t -> t+1) of every frame it forecasts.

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

from drivewm.conditions import relative_motion
from drivewm.dynamics.base import TokenWorldModel, WarpPrior, WorldModelConfig
from drivewm.dynamics.pose_branch import PoseStream, plan_reg_loss, pose_inputs, select_mode
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
        if self.action_dim:
            self.ego_emb = nn.Sequential(nn.Linear(self.action_dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        else:  # condition 'none': the ego token of every frame is one learned vector, carrying no motion
            self.ego_emb = ConstantEgo(cfg.dim)
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


class ConstantEgo(nn.Module):
    """Zero-width conditions [B, T, 0] -> one learned ego vector per frame [B, T, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(dim))

    def forward(self, cond: Tensor) -> Tensor:
        return self.token.expand(*cond.shape[:2], -1)


@register_model("occworld", SpatioTemporalWorldConfig, kind="world")
def build_occworld(cfg: SpatioTemporalWorldConfig) -> SpatioTemporalWorldModel:
    return SpatioTemporalWorldModel(cfg)


@dataclass(kw_only=True)
class OccWorldConfig(SpatioTemporalWorldConfig):
    name: str = "occworld_published"
    """Registered model name."""
    condition: str = "none"
    """The scene stream's ego conditioning: 'none' as published (the scene never reads the ego motion)."""
    pose_layers: int = 2
    """Layers of the pose stream (OccWorld: `pose_attn_layers` 2)."""
    plan_weight: float = 0.1
    """Weight of OccWorld's plan loss against the token cross-entropy (OccWorld: 0.1)."""


class OccWorldModel(SpatioTemporalWorldModel):
    """OccWorld as published: the scene stream of `SpatioTemporalWorldModel` without ego conditions, plus the
    pose branch. Batches carry `ego_pose` [B, T, 3] and `command` [B, T, 3] (`drivewm.data.windows`)."""

    def __init__(self, cfg: OccWorldConfig) -> None:
        if cfg.condition != "none":
            raise ValueError(f"occworld_published: model.condition must be 'none' (its scene stream never reads the "
                             f"ego motion), got {cfg.condition!r}; drivewm's action-conditioned variant is 'occworld'")
        super().__init__(cfg)
        self.pose = PoseStream(cfg.dim, cfg.heads, cfg.pose_layers, cfg.max_frames)

    @staticmethod
    def steps_and_command(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(steps [B, T, 2]: step t is (dx, dy) of frame t+1 in frame t's ego frame, the last 0; command [B, T, 3])."""
        for key in ("ego_pose", "command"):
            if key not in batch:
                raise KeyError(f"occworld_published reads batch[{key!r}] (its pose branch); the batch has {sorted(batch)}")
        return relative_motion(batch["ego_pose"].float())[..., :2], batch["command"].float()

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        tokens = batch["tokens"].long() if "tokens" in batch else self.encode_batch(batch)
        self.check_tokens(tokens, "tokens")
        b, t = tokens.shape[:2]
        if not 2 <= t <= self.cfg.max_frames:
            raise ValueError(f"window of {t} frames: need 2..model.max_frames={self.cfg.max_frames}")
        steps, command = self.steps_and_command(batch)
        steps, command = steps[:, :t], command[:, :t]
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        feats = self.net.features(inputs, self.ego_emb(tokens.new_zeros(b, t, 0, dtype=torch.float)))  # [B, T, N+1, D]
        logits = self.net.head(self.net.norm(feats[:, :-1, :-1]))  # [B, T-1, N, V]: frame t predicts t+1
        target = tokens[:, 1:].flatten(2)
        ce = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1))
        modes = self.pose(*pose_inputs(steps, command), feats[:, :, :-1])  # [B, T, 3, 2]: step t -> t+1
        plan = plan_reg_loss(modes[:, :-1], steps[:, :-1], command[:, :-1])  # the last step lies past the clip
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float()
        return {"loss": ce + self.cfg.plan_weight * plan, "ce_loss": ce.detach(), "plan_loss": plan.detach(),
                "token_acc": acc.mean(), "last_frame_acc": acc[:, -1].mean()}

    @torch.no_grad()
    def rollout_with_poses(self, context: Tensor, steps: Tensor, command: Tensor, horizon: int, *,
                           sampling: SamplingConfig | None = None, generator: torch.Generator | None = None
                           ) -> tuple[Tensor, Tensor]:
        """context tokens [B, Tc, h, w], the observed steps [B, >= Tc-1, 2] (step t: t -> t+1), commands
        [B, >= Tc+horizon-1, 3] -> future tokens [B, H, h, w] and predicted steps [B, H, 2] (step k: frame
        Tc-1+k -> Tc+k), as `TransVQVAE.forward_autoreg_with_pose`: each new frame's pose token is the step
        just predicted, in its command's mode, with that command."""
        self.check_tokens(context, "context")
        tc = context.shape[1]
        if horizon < 1 or steps.shape[1] < tc - 1 or command.shape[1] < tc + horizon - 1:
            raise ValueError(f"rollout of {tc} context frames and horizon {horizon} needs >= {tc - 1} observed steps "
                             f"and {tc + horizon - 1} commands, got {steps.shape[1]} and {command.shape[1]}")
        sampling = sampling or self.sampling
        frames = context.long()
        observed = torch.cat([steps[:, : tc - 1].float(), steps.new_zeros(steps.shape[0], 1, 2)], 1)  # step Tc-1: unread
        step_in, cmd_in = pose_inputs(observed, command[:, :tc].float())
        predicted = []
        for _ in range(horizon):
            t = frames.shape[1]
            start = max(0, t - self.rollout_window)
            window = frames[:, start:]
            feats = self.net.features(window, self.ego_emb(window.new_zeros(*window.shape[:2], 0, dtype=torch.float)))
            logits = self.net.head(self.net.norm(feats[:, -1, :-1])).reshape(*window.shape[:1], *self.token_shape, -1)
            frames = torch.cat([frames, sample_logits(logits, sampling, generator)[:, None]], 1)
            modes = self.pose(step_in[:, start:t], cmd_in[:, start:t], feats[:, :, :-1])[:, -1]  # [B, 3, 2]
            step = select_mode(modes, command[:, t - 1].float())  # [B, 2]: frame t-1 -> t
            predicted.append(step)
            step_in = torch.cat([step_in, step[:, None]], 1)
            cmd_in = torch.cat([cmd_in, command[:, t - 1 : t].float()], 1)
        return frames[:, tc:], torch.stack(predicted, 1)

    @torch.no_grad()
    def forecast_plan(self, context: dict[str, Tensor], horizon: int, *,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Occupancy [B, H, X, Y, Z] and the ego's waypoints [B, H, 2] of the `horizon` frames after the
        context's last, the waypoints as OccWorld scores them: the cumulative sum of the predicted steps."""
        past = self.context_frames(context)
        steps, command = self.steps_and_command(context)
        tokens, pred = self.rollout_with_poses(self.encode_batch(context, past), steps[:, : past - 1], command,
                                               horizon, generator=generator)
        return self.decode(tokens), pred.cumsum(1)

    @torch.no_grad()
    def forecast(self, context: dict[str, Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> Tensor:
        if self.modality != "occ":
            raise ValueError("occworld_published forecasts occupancy (its tokenizer must be an occupancy tokenizer)")
        return self.forecast_plan(context, horizon, generator=generator)[0]


@register_model("occworld_published", OccWorldConfig, kind="world")
def build_occworld_published(cfg: OccWorldConfig) -> OccWorldModel:
    return OccWorldModel(cfg)
