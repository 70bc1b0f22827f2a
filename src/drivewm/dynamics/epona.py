"""Epona-style hybrid camera world model (Zhang et al., "Epona: Autoregressive Diffusion World Model for
Autonomous Driving", arXiv 2506.24113), after the official code Kevin-thu/Epona at commit
651a7c77f65bdfec1ef48b50a4c6be5e8fea7e25: autoregressive over frames, continuous within a frame.

- Latents: each frame is encoded by drivewm's frozen camera KL autoencoder (`camera_kl_autoencoder`, latents
  [C, h, w]; Epona: a DC-AE) and cut into p x p patches (``models/modules/tokenizer.py`` patchify).
- Temporal model: ``models/stt.py``'s spatio-temporal transformer, causal over frames, gives every frame's
  features (`epona_net.SpatioTemporalTransformer`); the features of frame i condition frame i + 1.
- Per-frame rectified flow: ``models/flux_dit.py``'s DiT (`epona_net.FlowHead`) regresses the velocity
  x - noise at x_t = t x + (1 - t) noise, t ~ U(0, 1), on every next frame of the window in parallel
  (``models/model.py`` step_train: targets = the window shifted by one); sampling integrates it with Euler
  steps over FLUX's shifted schedule (`rectified_flow`).
- Chain-of-forward training (``scripts/train_deepspeed.py``, config ``forward_iter=3``, ``multifw_perstep=10``):
  every `multifw_perstep`-th optimizer step runs `forward_iter` forward passes on one window; after pass j the
  one-step estimates x_t + v (1 - t) of the window's predicted frames (detached) become pass j + 1's input
  frames, the window moving one frame on. Pass j + 1's targets are, as in the official code, its inputs shifted
  by one (so the earlier targets are the model's own estimates) with the true frame j + context_frames + 1 last.
  Epona steps the optimizer after each pass; drivewm's engine takes one loss per batch, so the passes' losses
  are averaged into one step.
- Ego conditioning: drivewm's per-frame vectors (`drivewm.conditions`, the ego's known plan) stand in for
  Epona's pose and yaw tokens: one token per frame in the transformer and, for the predicted transition, the
  flow head's modulation vector (Epona's ``y = pose_emb``). Epona's trajectory DiT (planning) is not built.

drivewm's options: `normalize_latents` standardises each latent channel by statistics of the training
latents (what latent diffusion's scale_factor does), measured once when a run prepares its data; `residual`
makes the flow generate the change from the input frame to the next (target latents minus input latents; the
sample is added back to the last frame), so that the untrained flow's zero change is copy-last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.conditions import condition_dim, ego_conditions
from drivewm.dynamics.base import WorldModelConfig
from drivewm.dynamics.epona_net import FlowHead, SpatioTemporalTransformer, patchify, unpatchify
from drivewm.dynamics.rectified_flow import (
    euler_sample,
    interpolate,
    one_step_estimate,
    sampling_times,
    velocity_target,
)
from drivewm.errors import DrivewmError
from drivewm.registry import register_model
from drivewm.tokenizers.camera import CAMERA_KEY, to_uint8
from drivewm.tokenizers.kl_autoencoder import KLAutoencoder

ACTION_DIM = 2
"""Applied action (acceleration, steering) per frame: the data contract's `action` [T, 2]."""


@dataclass(kw_only=True)
class EponaConfig:
    name: str = "epona_world"
    """Registered model name."""
    tokenizer_run: str = ""
    """Run directory of a trained camera KL autoencoder that a new run copies in (config into `tokenizer`,
    weights into the model), frozen."""
    tokenizer: Optional[Dict[str, Any]] = None
    """The frozen KL autoencoder's registered config, filled from `tokenizer_run` when a run starts."""
    condition: str = "action_motion"
    """Ego conditioning per frame: 'action' (accel, steer) or 'action_motion' (+ known ego motion to the next frame)."""
    context_frames: int = 4
    """Frames the temporal transformer reads to predict the next one (Epona's condition_frames); a forecast
    needs at least this many observed frames and slides this window over its own predictions."""
    patch: int = 2
    """Side of the latent patches (tokens per frame = h w / patch^2)."""
    dim: int = 128
    """Width of the spatio-temporal transformer."""
    depth: int = 2
    """Blocks of the spatio-temporal transformer (each: causal time attention, then space attention)."""
    heads: int = 4
    """Attention heads of the spatio-temporal transformer."""
    head_dim: int = 128
    """Width of the flow head (Epona's n_embd_dit)."""
    head_depth: int = 2
    """Single-stream blocks of the flow head."""
    head_heads: int = 4
    """Attention heads of the flow head."""
    mlp_ratio: float = 4.0
    """MLP width of every block as a multiple of its width."""
    dropout: float = 0.0
    """Dropout inside the spatio-temporal transformer."""
    norm: str = "layer"
    """Pre-norm of the spatio-temporal transformer's blocks (Epona: LayerNorm)."""
    sampling_steps: int = 10
    """Euler steps per predicted frame (Epona's configs: 100)."""
    schedule_shift: bool = True
    """FLUX's resolution-dependent shift of the sampling times (Epona's get_schedule default)."""
    forward_iter: int = 3
    """Chain-of-forward passes per chained step (Epona: 3); 1 disables chain-of-forward."""
    multifw_perstep: int = 10
    """Every this many optimizer steps, one chained step (Epona: 10)."""
    normalize_latents: bool = True
    """drivewm's: standardise each latent channel by the training latents' mean and std (set when a run
    prepares its data); off: the autoencoder's raw latents."""
    residual: bool = False
    """drivewm's: the flow generates the change from each input frame's latents to the next frame's (the next
    frame is the input frame plus a sample), so a zero change is copy-last; off: the next frame's latents
    themselves (Epona)."""

    # A frozen tokenizer is nested and adopted exactly as the token world models do.
    frozen_sources = WorldModelConfig.frozen_sources
    adopt_frozen = WorldModelConfig.adopt_frozen


class EponaWorldModel(nn.Module):
    """A `drivewm.forecaster.Forecaster` of camera frames: `forecast(context, horizon)` -> uint8 [B, H, H_img, W_img, 3]."""

    modality = "camera"
    sees_future = False

    def __init__(self, cfg: EponaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.name = cfg.name
        self.tokenizer = frozen_kl_autoencoder(cfg)
        self.latent_shape = tuple(int(s) for s in self.tokenizer.latent_shape)  # (C, h, w)
        c, h, w = self.latent_shape
        if cfg.patch < 1 or h % cfg.patch or w % cfg.patch:
            raise DrivewmError(f"model.patch={cfg.patch} must divide the latent grid {h} x {w}")
        for key in ("context_frames", "sampling_steps", "forward_iter", "multifw_perstep"):
            if getattr(cfg, key) < 1:
                raise DrivewmError(f"model.{key} must be >= 1, got {getattr(cfg, key)}")
        self.action_dim = condition_dim(cfg.condition)
        self.tokens = (h // cfg.patch) * (w // cfg.patch)
        patch_dim = c * cfg.patch**2
        self.stt = SpatioTemporalTransformer(
            patch_dim=patch_dim, tokens=self.tokens, cond_dim=self.action_dim, dim=cfg.dim, depth=cfg.depth,
            heads=cfg.heads, max_frames=cfg.context_frames, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, norm=cfg.norm)
        self.head = FlowHead(patch_dim=patch_dim, tokens=self.tokens, cond_width=cfg.dim, cond_dim=self.action_dim,
                             dim=cfg.head_dim, depth=cfg.head_depth, heads=cfg.head_heads, mlp_ratio=cfg.mlp_ratio)
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        # Optimizer steps taken: chain-of-forward runs on every multifw_perstep-th (saved, so a resumed run keeps it).
        self.register_buffer("global_step", torch.tensor(0, dtype=torch.long))

    # --- the frozen autoencoder ---------------------------------------------------------------------
    def train(self, mode: bool = True) -> "EponaWorldModel":
        super().train(mode)
        self.tokenizer.eval()  # frozen: never in training behaviour
        return self

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.global_step.fill_(step + 1)

    @torch.no_grad()
    def encode_raw(self, images: Tensor) -> Tensor:
        """uint8 frames [..., H, W, 3] -> the autoencoder's latents [..., C, h, w] (posterior means)."""
        return self.tokenizer.encode(images)

    def normalize(self, raw: Tensor) -> Tensor:
        return (raw - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, z: Tensor) -> Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Normalized latents [B, T, C, h, w] -> uint8 frames [B, T, H, W, 3]."""
        return to_uint8(self.tokenizer.decode(self.denormalize(z)))

    def prepare_dataset(self, dataset, device: torch.device | str = "cpu", progress: bool = True):
        """The training data as the loss reads it, made once per run: every frame encoded once
        (`latent_cache.LatentWindows`); with normalize_latents, the training split's channel statistics set."""
        from drivewm.data.windows import WindowDataset
        from drivewm.dynamics.latent_cache import LatentWindows

        if not isinstance(dataset, WindowDataset) or CAMERA_KEY not in dataset.keys:
            return dataset
        self.to(device)
        cached = LatentWindows(self.encode_raw, dataset, device=device, progress=progress)
        if self.cfg.normalize_latents and dataset.split == "train":
            mean, std = cached.channel_stats()
            self.latent_mean.copy_(mean)
            self.latent_std.copy_(std.clamp_min(1e-6))
        return cached

    # --- inputs ------------------------------------------------------------------------------------------
    def batch_latents(self, batch: dict[str, Tensor]) -> Tensor:
        """Normalized latents [B, T, C, h, w] of a window batch: its cached `latents`, else its encoded `camera`."""
        if "latents" in batch:
            raw = batch["latents"].float()
            if raw.dim() != 5 or tuple(raw.shape[2:]) != self.latent_shape:
                raise DrivewmError(f"batch['latents'] must be [B, T, {', '.join(map(str, self.latent_shape))}], "
                                   f"got {tuple(raw.shape)}")
            return self.normalize(raw)
        if CAMERA_KEY not in batch:
            raise DrivewmError(f"the Epona world model reads batch[{CAMERA_KEY!r}] [B, T, H, W, 3]; the batch has keys "
                               f"{sorted(batch)} (data.keys: add camera)")
        return self.normalize(self.encode_raw(self.check_camera(batch[CAMERA_KEY], f"batch[{CAMERA_KEY!r}]")))

    def check_camera(self, images: Tensor, what: str) -> Tensor:
        if images.dim() != 5:
            raise DrivewmError(f"{what} must be uint8 frames [B, T, H, W, 3], got {tuple(images.shape)}")
        try:
            return self.tokenizer.check_images(images)
        except DrivewmError as e:
            raise DrivewmError(f"{what}: {e} (the model's KL autoencoder, model.tokenizer)") from None

    def conditions(self, batch: dict[str, Tensor], frames: int) -> Tensor:
        """Ego conditions [B, frames', A] of a batch or context (drivewm.conditions), at least `frames` of them."""
        action = batch.get("action")
        if action is None:
            raise DrivewmError(f"the Epona world model (condition={self.cfg.condition!r}) reads 'action' [B, T, "
                               f"{ACTION_DIM}]; the input has keys {sorted(batch)} (data.keys: add action, ego_pose)")
        if action.dim() != 3 or action.shape[-1] != ACTION_DIM:
            raise DrivewmError(f"'action' must be [B, T, {ACTION_DIM}] (acceleration, steering), got {tuple(action.shape)}")
        try:
            cond = ego_conditions(batch, self.cfg.condition)
        except KeyError as e:
            raise DrivewmError(str(e.args[0])) from None
        if cond.shape[1] < frames:
            raise DrivewmError(f"'action'/'ego_pose' cover {cond.shape[1]} frames; {frames} are needed")
        bad = ~torch.isfinite(cond)
        if bad.any():
            raise DrivewmError(f"ego conditions: {int(bad.sum())} non-finite values (NaN/inf in 'action' or 'ego_pose')")
        return cond

    # --- training -----------------------------------------------------------------------------------------
    def flow_loss(self, inputs: Tensor, cond: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """One forward pass: input frames [B, F, C, h, w] with their conditions [B, F, A], the frame after each
        as target [B, F, C, h, w] -> (rectified-flow loss, one-step estimates of the targets [B, F, C, h, w])."""
        p = self.cfg.patch
        feats = self.stt(patchify(inputs, p), cond)  # [B, F, N+1, D]
        generated = targets - inputs if self.cfg.residual else targets
        x = patchify(generated, p).flatten(0, 1)  # [M, N, P]
        t = torch.rand(x.shape[0], 1, 1, device=x.device)
        noise = torch.randn_like(x)
        x_t = interpolate(x, noise, t)
        velocity = self.head(x_t, t.flatten(), feats.flatten(0, 1), cond.flatten(0, 1))
        loss = (velocity - velocity_target(x, noise)).pow(2).mean()
        estimate = unpatchify(one_step_estimate(x_t, velocity, t), p, self.latent_shape).reshape(targets.shape)
        return loss, estimate + inputs if self.cfg.residual else estimate

    def chain_of_forward(self, z: Tensor, cond: Tensor, passes: int) -> tuple[list[Tensor], list[Tensor]]:
        """Epona's chain of `passes` forward passes over latents z [B, T, C, h, w] and conditions [B, T, A]
        (T >= context_frames + passes) -> (the passes' losses, the input frames each pass read)."""
        cf = self.cfg.context_frames
        inputs, losses, seen = z[:, :cf], [], []
        for j in range(passes):
            targets = torch.cat([inputs, z[:, j + cf : j + cf + 1]], 1)[:, 1:]
            seen.append(inputs)
            loss, estimate = self.flow_loss(inputs, cond[:, j : j + cf], targets)
            losses.append(loss)
            inputs = estimate.detach()
        return losses, seen

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rectified-flow loss on a window batch ('camera' uint8 [B, T, H, W, 3] or cached 'latents', 'action',
        'ego_pose'); a chained step (every multifw_perstep-th) averages forward_iter passes."""
        z = self.batch_latents(batch)
        cf, frames = self.cfg.context_frames, z.shape[1]
        if frames < cf + 1:
            raise DrivewmError(f"windows of {frames} frames: the Epona world model needs context_frames + 1 = {cf + 1} "
                               f"(data.past + data.future >= {cf + 1})")
        cond = self.conditions(batch, frames)
        chained = self.training and int(self.global_step) % self.cfg.multifw_perstep == 0
        passes = min(self.cfg.forward_iter if chained else 1, frames - cf)
        losses, _ = self.chain_of_forward(z, cond, passes)
        loss = torch.stack(losses).mean()
        return {"loss": loss, "loss_first_pass": losses[0].detach(), "passes": torch.tensor(float(passes))}

    # --- rollouts -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def next_latent(self, window: Tensor, cond: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Latents of the context_frames frames before [B, F, C, h, w] and their conditions [B, F, A] -> a sample
        of the next frame's latents [B, C, h, w] (Euler steps of the flow head from Gaussian noise)."""
        feats = self.stt(patchify(window, self.cfg.patch), cond)[:, -1]  # [B, N+1, D]
        b = window.shape[0]
        noise = torch.randn((b, self.tokens, self.latent_shape[0] * self.cfg.patch**2), generator=generator,
                            device=window.device)
        times = sampling_times(self.cfg.sampling_steps, self.tokens, self.cfg.schedule_shift)
        x = euler_sample(lambda x_t, t: self.head(x_t, t, feats, cond[:, -1]), noise, times)
        sample = unpatchify(x, self.cfg.patch, self.latent_shape)
        return window[:, -1] + sample if self.cfg.residual else sample

    @torch.no_grad()
    def rollout(self, latents: Tensor, cond: Tensor, horizon: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Observed latents [B, Tc, C, h, w] (Tc >= context_frames) and conditions [B, >= Tc + horizon - 1, A]
        (entry i: frame i's transition) -> `horizon` predicted latents [B, horizon, C, h, w]."""
        cf, tc = self.cfg.context_frames, latents.shape[1]
        frames = latents[:, -cf:]
        offset = tc - cf
        for k in range(horizon):
            window_cond = cond[:, offset + k : offset + k + cf]
            new = self.next_latent(frames[:, -cf:], window_cond, generator=generator)
            frames = torch.cat([frames, new[:, None]], 1)
        return frames[:, cf:]

    @torch.no_grad()
    def forecast(self, context: dict[str, Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> Tensor:
        """The `horizon` camera frames after the context's last: uint8 [B, horizon, H, W, 3]."""
        if horizon < 1:
            raise DrivewmError(f"horizon must be >= 1, got {horizon}")
        if CAMERA_KEY not in context:
            raise DrivewmError(f"the context has no {CAMERA_KEY!r} frames (keys {sorted(context)}); add it to data.keys")
        images = self.check_camera(context[CAMERA_KEY], f"context[{CAMERA_KEY!r}]")
        tc, cf = images.shape[1], self.cfg.context_frames
        if tc < cf:
            raise DrivewmError(f"context[{CAMERA_KEY!r}] holds {tc} frames; the Epona world model reads "
                               f"context_frames={cf} (evaluate with past >= {cf})")
        cond = self.conditions(context, tc + horizon - 1)
        was_training = self.training
        self.eval()
        latents = self.normalize(self.encode_raw(images[:, -cf:]))
        future = self.rollout(latents, cond[:, tc - cf :], horizon, generator=generator)
        self.train(was_training)
        return self.decode(future)


def frozen_kl_autoencoder(cfg: EponaConfig) -> KLAutoencoder:
    """Build the KL autoencoder nested in cfg.tokenizer, refuse any other tokenizer, and freeze it."""
    from drivewm.hub import build_from_config

    if cfg.tokenizer is None:
        raise DrivewmError("model.tokenizer is unset: the Epona world model needs a camera KL autoencoder "
                           "(model.tokenizer_run=RUN of `drivewm train tokenizer --config tokenizer/camera_kl_tiny.yaml`)")
    source = cfg.tokenizer_run or cfg.tokenizer.get("name", "?")
    if cfg.tokenizer.get("name") != "camera_kl_autoencoder":
        raise DrivewmError(f"model.tokenizer: {source} is a {cfg.tokenizer.get('name')!r} model; the Epona world model "
                           f"works in the continuous latents of a 'camera_kl_autoencoder'")
    # Its weights come from that run (or this run's checkpoint): building it draws nothing from the global RNG.
    with torch.random.fork_rng(devices=[]):
        tokenizer = build_from_config(cfg.tokenizer, "model.tokenizer")
    tokenizer.requires_grad_(False)
    return tokenizer.eval()


@register_model("epona_world", EponaConfig, kind="world")
def build_epona(cfg: EponaConfig) -> EponaWorldModel:
    return EponaWorldModel(cfg)
