"""OccWorld spatio-temporal world models: all tokens of the next frame predicted in parallel.

Two registered variants:

* `occworld_published` (`OccWorldModel`): OccWorld as published (wzzheng/OccWorld, commit 1ee7f77). The
  scene stream sees observed scene tokens only (condition 'none': no ego motion of any frame enters it),
  and a separate pose branch (`drivewm.dynamics.pose_branch`) predicts the ego's steps from the scene
  features and its own past steps under the driving command, trained with 0.1 x OccWorld's plan loss
  and rolled out autoregressively, its predicted steps fed back. Its figures are comparable with OccWorld's.
  `model.network`: 'unet' is OccWorld's own network (`occworld_unet.PlanUAutoRegTransformer`, official
  checkpoints load by name: `occworld_convert`), 'st' drivewm's spatio-temporal stages below.
* `occworld` (`SpatioTemporalWorldModel`): drivewm's action-conditioned variant, whose scene stream reads
  the recorded action (and with 'action_motion' the ego motion t -> t+1) of every frame it forecasts.

drivewm's stages (`st_net.SpatioTemporalNet`) forecast the scene-token grid of frame t+1 from frames <= t
with a multi-scale (U-Net) transformer: spatial attention within a frame (OccWorld: conv blocks), causal
temporal attention across frames, an ego token (a learned constant under condition 'none'), teacher forcing with causal temporal masks over the whole
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
from drivewm.dynamics.base import TokenWorldModel, WorldModelConfig
from drivewm.dynamics.warp_prior import WarpPrior
from drivewm.dynamics.occworld_unet import PlanUAutoRegTransformer
from drivewm.dynamics.pose_branch import (NUM_MODES, PoseDecoder, PoseEncoder, PoseStream, plan_reg_loss, pose_inputs,
                                          select_mode)
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
    network: str = "st"
    """'unet': OccWorld's own network (`occworld_unet.PlanUAutoRegTransformer`: conv U-Net blocks in space,
    `depth` causal attention layers in time before each encoder and after each decoder stage, the frozen
    codebook vectors as inputs, the pose stream at every scale; needs the tokenizer). 'st': drivewm's
    spatio-temporal stages (attention in space and time, learned token embeddings) with the pose stream on
    the finest scale (`pose_branch.PoseStream`)."""
    pose_layers: int = 2
    """Layers of the pose stream per scale (OccWorld: `pose_attn_layers` 2)."""
    plan_weight: float = 0.1
    """Weight of OccWorld's plan loss against the token cross-entropy (OccWorld: 0.1)."""


class OccWorldModel(TokenWorldModel):
    """OccWorld as published: a scene stream without ego conditions plus the pose branch. Batches carry
    `ego_pose` [B, T, 3] and `command` [B, T, 3] (`drivewm.data.windows`)."""

    def __init__(self, cfg: OccWorldConfig) -> None:
        if cfg.condition != "none":
            raise ValueError(f"occworld_published: model.condition must be 'none' (its scene stream never reads the "
                             f"ego motion), got {cfg.condition!r}; drivewm's action-conditioned variant is 'occworld'")
        if cfg.network not in ("st", "unet"):
            raise ValueError(f"occworld_published: model.network must be 'st' or 'unet', got {cfg.network!r}")
        super().__init__(cfg)
        self.rollout_window = cfg.max_frames
        self.mask_id = cfg.vocab_size
        if cfg.network == "st":
            self.ego_emb = ConstantEgo(cfg.dim)
            self.net = SpatioTemporalNet(cfg)
            self.pose = PoseStream(cfg.dim, cfg.heads, cfg.pose_layers, cfg.max_frames)
            return
        if self.tokenizer is None or self.modality != "occ":
            raise ValueError("occworld_published: network 'unet' reads the frozen codebook vectors of an occupancy "
                             "tokenizer (model.tokenizer_run)")
        if cfg.input_mask_ratio > 0:
            raise ValueError("occworld_published: network 'unet' has no [MASK] vector; set model.input_mask_ratio=0")
        code_dim = self.tokenizer.codes_to_latent(torch.zeros(1, *self.token_shape, dtype=torch.long)).shape[-1]
        self.transformer = PlanUAutoRegTransformer(
            num_frames=cfg.max_frames, img_shape=(code_dim, *self.token_shape), tpe_dim=code_dim,
            output_channel=cfg.vocab_size, channels=tuple(cfg.dim * m for m in cfg.dim_mult),
            temporal_attn_layers=cfg.depth, pose_attn_layers=cfg.pose_layers, num_heads=cfg.heads,
            pose_output_channel=cfg.dim)
        self.pose_encoder = PoseEncoder(2 + NUM_MODES, code_dim)
        self.pose_decoder = PoseDecoder(cfg.dim)

    @staticmethod
    def steps_and_command(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(steps [B, T, 2]: step t is (dx, dy) of frame t+1 in frame t's ego frame, the last 0; command [B, T, 3])."""
        for key in ("ego_pose", "command"):
            if key not in batch:
                raise KeyError(f"occworld_published reads batch[{key!r}] (its pose branch); the batch has {sorted(batch)}")
        return relative_motion(batch["ego_pose"].float())[..., :2], batch["command"].float()

    def outputs(self, tokens: Tensor, steps_in: Tensor, cmd_in: Tensor) -> tuple[Tensor, Tensor]:
        """tokens [B, T, h, w], the step into each frame [B, T, 2] and its command [B, T, 3] -> logits
        [B, T, h, w, V] and steps per mode [B, T, 3, 2]; frame t's outputs predict frame t+1 and step t -> t+1.
        The logits never depend on the steps or commands."""
        b, t = tokens.shape[:2]
        if self.cfg.network == "st":
            feats = self.net.features(tokens, self.ego_emb(tokens.new_zeros(b, t, 0, dtype=torch.float)))  # [B, T, N+1, D]
            logits = self.net.head(self.net.norm(feats[:, :, :-1])).reshape(b, t, *self.token_shape, -1)
            return logits, self.pose(steps_in, cmd_in, feats[:, :, :-1])
        with torch.no_grad():  # the frozen codebook's vectors
            codes = self.tokenizer.codes_to_latent(tokens.flatten(0, 1)).permute(0, 3, 1, 2)  # [B*T, D, h, w]
        pose_tokens = self.pose_encoder(torch.cat([steps_in, cmd_in], -1).float())
        logits, pose = self.transformer(codes.reshape(b, t, *codes.shape[1:]), pose_tokens)  # [B, T, V, h, w]
        return logits.permute(0, 1, 3, 4, 2), self.pose_decoder(pose)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        tokens = batch["tokens"].long() if "tokens" in batch else self.encode_batch(batch)
        self.check_tokens(tokens, "tokens")
        t = tokens.shape[1]
        if not 2 <= t <= self.cfg.max_frames + 1:
            raise ValueError(f"clip of {t} frames: need 2..model.max_frames + 1 = {self.cfg.max_frames + 1} "
                             f"(OccWorld: 15 + 1)")
        steps, command = self.steps_and_command(batch)
        steps, command = steps[:, : t - 1], command[:, : t - 1]  # the last frame's step lies past the clip
        inputs = tokens[:, :-1]  # as `TransVQVAE.forward_train_with_plan`: frames 0..T-2 predict 1..T-1
        if self.training and self.cfg.input_mask_ratio > 0:
            inputs = mask_input_tokens(inputs, self.cfg.input_mask_ratio, self.mask_id)
        logits, modes = self.outputs(inputs, *pose_inputs(steps, command))
        target = tokens[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1))
        plan = plan_reg_loss(modes, steps, command)
        with torch.no_grad():
            acc = (logits.argmax(-1) == target).float()
        return {"loss": ce + self.cfg.plan_weight * plan, "ce_loss": ce.detach(), "plan_loss": plan.detach(),
                "token_acc": acc.mean(), "last_frame_acc": acc[:, -1].mean()}

    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None) -> Tensor:
        """The scene alone (`TokenWorldModel.rollout`): the logits never read the pose inputs, so zeros stand in."""
        b, t = window.shape[:2]
        logits, _ = self.outputs(window, window.new_zeros(b, t, 2, dtype=torch.float),
                                 window.new_zeros(b, t, NUM_MODES, dtype=torch.float))
        return sample_logits(logits[:, -1], sampling, generator)

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
            logits, modes = self.outputs(frames[:, start:], step_in[:, start:t], cmd_in[:, start:t])
            frames = torch.cat([frames, sample_logits(logits[:, -1], sampling, generator)[:, None]], 1)
            step = select_mode(modes[:, -1], command[:, t - 1].float())  # [B, 2]: frame t-1 -> t
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
