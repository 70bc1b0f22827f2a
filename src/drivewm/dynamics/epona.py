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
makes the flow generate the change from a base to the next frame (target latents minus the base; the sample is
added back to the base). `residual_base` says what the base of each input frame is: 'last', the frame itself
(the untrained flow's zero change is copy-last); 'ego_warp', the frame decoded, warped into the next frame by
the known ego motion through the road-plane homography (`drivewm.baselines.camera.EgoWarpCamera`'s warp: the
last frame's road seen from the next pose) and encoded again, so the zero change is the ego-warp baseline;
'ego_warp_latent', the latent grid itself warped by the same homography at the latent resolution (no decode or
encode). The motion of frame t to t + 1 comes from the poses (`drivewm.conditions.relative_motion`, the
motion the 'action_motion' conditions carry), the calibration from the window's `camera_intrinsics` /
`camera_extrinsics`; training (the latent cache, chain-of-forward), `forecast` and rollouts build the base with
the one function `ego_warp_raw`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.baselines.camera import sample_bilinear, source_pixels
from drivewm.conditions import condition_dim, ego_conditions, relative_motion
from drivewm.data.camera import scale_intrinsics
from drivewm.dynamics.base import WorldModelConfig
from drivewm.dynamics.epona_net import FlowHead, SpatioTemporalTransformer, patchify, unpatchify
from drivewm.dynamics.rectified_flow import (
    euler_sample,
    interpolate,
    one_step_estimate,
    sampling_times,
    velocity_target,
)
from drivewm.dynamics.warp_prior import warp_camera_frames
from drivewm.errors import DrivewmError
from drivewm.forecaster import STATIC_KEYS
from drivewm.registry import register_model
from drivewm.tokenizers.camera import CAMERA_KEY, to_uint8
from drivewm.tokenizers.kl_autoencoder import KLAutoencoder

ACTION_DIM = 2
"""Applied action (acceleration, steering) per frame: the data contract's `action` [T, 2]."""
RESIDUAL_BASES = ("last", "ego_warp", "ego_warp_latent")
"""What a residual flow's generated change is added to (`EponaConfig.residual_base`)."""


class EgoWarp(NamedTuple):
    """What warps each frame of a window into the next: the ego motion of frame t to t + 1 (x, y, yaw of frame
    t + 1 in frame t's ego frame) [B, T, 3], and the camera calibration K [B, 3, 3] (pixels) / camera-to-ego
    E [B, 4, 4]."""

    motion: Tensor
    intrinsics: Tensor
    extrinsics: Tensor

    def frames(self, start: int, stop: Optional[int]) -> "EgoWarp":
        return EgoWarp(self.motion[:, start:stop], self.intrinsics, self.extrinsics)


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
    """drivewm's: the flow generates the change from a base (`residual_base`) to the next frame's latents (the
    next frame is the base plus a sample); off: the next frame's latents themselves (Epona)."""
    residual_base: str = "last"
    """drivewm's, with residual: the base of each input frame. 'last': the frame's own latents (zero change is
    copy-last); 'ego_warp': the frame decoded, warped into the next frame by the known ego motion through the
    road-plane homography and encoded (zero change is the ego-warp baseline; needs ego_pose and the camera
    calibration in data.keys); 'ego_warp_latent': the latent grid warped by the same homography."""

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
        if cfg.residual_base not in RESIDUAL_BASES:
            raise DrivewmError(f"model.residual_base={cfg.residual_base!r} unknown; valid: {', '.join(RESIDUAL_BASES)}")
        if cfg.residual_base != "last" and not cfg.residual:
            raise DrivewmError(f"model.residual_base={cfg.residual_base!r} is the base of a residual flow: set "
                               f"model.residual=true")
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
        missing = [k for k in STATIC_KEYS if k not in dataset.keys] if self.warps else []
        if missing:
            raise DrivewmError(f"model.residual_base={self.cfg.residual_base!r} warps each frame through the camera "
                               f"calibration: data.keys has no {missing[0]!r} (add {', '.join(STATIC_KEYS)})")
        self.to(device)
        base = self.ego_warp_raw if self.warps else None
        cached = LatentWindows(self.encode_raw, dataset, device=device, progress=progress, base=base)
        if self.cfg.normalize_latents and dataset.split == "train":
            mean, std = cached.channel_stats()
            self.latent_mean.copy_(mean)
            self.latent_std.copy_(std.clamp_min(1e-6))
        return cached

    # --- the residual's base ------------------------------------------------------------------------------
    @property
    def warps(self) -> bool:
        """Whether the residual's base is the input frame warped by the ego motion."""
        return self.cfg.residual_base != "last"

    @torch.no_grad()
    def ego_warp_raw(self, raw: Tensor, motion: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> Tensor:
        """Raw latents [N, C, h, w] of N frames, the ego motion of each to its next frame [N, 3] and the camera
        calibration [N, 3, 3] / [N, 4, 4] -> raw latents [N, C, h, w] of each frame warped into its next frame
        through the road-plane homography (`EgoWarpCamera`: the area it did not see filled from the border).
        'ego_warp': decoded to uint8 frames, warped, rounded and encoded; 'ego_warp_latent': the latent grid
        itself, with the intrinsics scaled to it."""
        pose = motion.double()[:, None]  # [N, 1, 3]: the next frame in this one's ego frame
        if self.cfg.residual_base == "ego_warp":
            images = to_uint8(self.tokenizer.decode(raw))[:, None]  # [N, 1, H, W, 3]
            calibration = dict(zip(STATIC_KEYS, (intrinsics, extrinsics)))
            return self.encode_raw(warp_camera_frames(images, pose, calibration)[:, 0])
        grid = tuple(raw.shape[-2:])
        image = tuple(self.tokenizer.cfg.image_size)
        scaled = torch.stack([torch.from_numpy(scale_intrinsics(k.cpu().numpy(), image, grid)) for k in intrinsics])
        pixels = source_pixels(scaled, extrinsics, pose, grid)  # [N, 1, h, w, 2]
        return sample_bilinear(raw.movedim(1, -1), pixels)[:, 0].movedim(-1, 1).to(raw.dtype)

    def residual_bases(self, z: Tensor, warp: Optional[EgoWarp]) -> Tensor:
        """Normalized latents [B, F, C, h, w] -> the base of each frame's successor [B, F, C, h, w]: the frame
        itself ('last'), else the frame warped by warp.motion [B, F, 3] (`ego_warp_raw`)."""
        if not self.warps:
            return z
        b, f = z.shape[:2]
        if warp is None or warp.motion.shape[:2] != (b, f):
            raise ValueError(f"residual_base={self.cfg.residual_base!r} needs the ego motion of each of the {f} frames")
        raw = self.ego_warp_raw(self.denormalize(z.flatten(0, 1)), warp.motion.flatten(0, 1),
                                warp.intrinsics.repeat_interleave(f, 0), warp.extrinsics.repeat_interleave(f, 0))
        return self.normalize(raw).reshape(z.shape)

    def ego_warp_inputs(self, batch: dict[str, Tensor], frames: int) -> Optional[EgoWarp]:
        """The ego motion of each frame and the calibration of a batch or context (None for residual_base='last');
        a missing key is one error naming it."""
        if not self.warps:
            return None
        what = f"model.residual_base={self.cfg.residual_base!r} warps each frame into the next"
        pose_key = next((k for k in ("ego_pose", "rel_pose") if k in batch), None)
        if pose_key is None:
            raise DrivewmError(f"{what} by the ego motion: the input has no 'ego_pose' [B, T, 3] (keys {sorted(batch)}; "
                               f"data.keys: add ego_pose)")
        for key in STATIC_KEYS:
            if key not in batch:
                raise DrivewmError(f"{what} through the road-plane homography: the input has no {key!r} (keys "
                                   f"{sorted(batch)}; data.keys: add {', '.join(STATIC_KEYS)})")
        pose, K, E = batch[pose_key], batch["camera_intrinsics"], batch["camera_extrinsics"]
        b = pose.shape[0]
        if pose.dim() != 3 or pose.shape[-1] != 3 or pose.shape[1] < frames:
            raise DrivewmError(f"{what}: {pose_key!r} must be [B, >= {frames}, 3], got {tuple(pose.shape)}")
        if tuple(K.shape) != (b, 3, 3) or tuple(E.shape) != (b, 4, 4):
            raise DrivewmError(f"{what}: 'camera_intrinsics' / 'camera_extrinsics' must be [{b}, 3, 3] / [{b}, 4, 4], "
                               f"got {tuple(K.shape)} / {tuple(E.shape)}")
        return EgoWarp(relative_motion(pose.float()), K, E)

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
    def flow_loss(self, inputs: Tensor, cond: Tensor, targets: Tensor,
                  base: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """One forward pass: input frames [B, F, C, h, w] with their conditions [B, F, A], the frame after each
        as target [B, F, C, h, w] -> (rectified-flow loss, one-step estimates of the targets [B, F, C, h, w]).
        With residual, the flow generates targets - base (`residual_bases` of the inputs; None: the inputs)."""
        p = self.cfg.patch
        feats = self.stt(patchify(inputs, p), cond)  # [B, F, N+1, D]
        if self.cfg.residual and base is None:
            base = inputs
        generated = targets - base if self.cfg.residual else targets
        x = patchify(generated, p).flatten(0, 1)  # [M, N, P]
        t = torch.rand(x.shape[0], 1, 1, device=x.device)
        noise = torch.randn_like(x)
        x_t = interpolate(x, noise, t)
        velocity = self.head(x_t, t.flatten(), feats.flatten(0, 1), cond.flatten(0, 1))
        loss = (velocity - velocity_target(x, noise)).pow(2).mean()
        estimate = unpatchify(one_step_estimate(x_t, velocity, t), p, self.latent_shape).reshape(targets.shape)
        return loss, estimate + base if self.cfg.residual else estimate

    def chain_of_forward(self, z: Tensor, cond: Tensor, passes: int, *, warp: Optional[EgoWarp] = None,
                         base: Optional[Tensor] = None) -> tuple[list[Tensor], list[Tensor]]:
        """Epona's chain of `passes` forward passes over latents z [B, T, C, h, w] and conditions [B, T, A]
        (T >= context_frames + passes) -> (the passes' losses, the input frames each pass read). With an
        ego-warped residual base, `warp` covers the T frames; `base` [B, >= context_frames, C, h, w], the first
        pass's bases when already made (the latent cache's), else they are warped here as the later passes' are."""
        cf = self.cfg.context_frames
        inputs, losses, seen = z[:, :cf], [], []
        for j in range(passes):
            targets = torch.cat([inputs, z[:, j + cf : j + cf + 1]], 1)[:, 1:]
            seen.append(inputs)
            bases = None
            if self.cfg.residual:
                bases = base[:, :cf] if j == 0 and base is not None else \
                    self.residual_bases(inputs, warp.frames(j, j + cf) if warp is not None else None)
            loss, estimate = self.flow_loss(inputs, cond[:, j : j + cf], targets, bases)
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
        warp = self.ego_warp_inputs(batch, frames)
        base = self.normalize(batch["base_latents"].float()) if self.warps and "base_latents" in batch else None
        chained = self.training and int(self.global_step) % self.cfg.multifw_perstep == 0
        passes = min(self.cfg.forward_iter if chained else 1, frames - cf)
        losses, _ = self.chain_of_forward(z, cond, passes, warp=warp, base=base)
        loss = torch.stack(losses).mean()
        return {"loss": loss, "loss_first_pass": losses[0].detach(), "passes": torch.tensor(float(passes))}

    # --- rollouts -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def next_latent(self, window: Tensor, cond: Tensor, *, generator: torch.Generator | None = None,
                    base: Optional[Tensor] = None) -> Tensor:
        """Latents of the context_frames frames before [B, F, C, h, w] and their conditions [B, F, A] -> a sample
        of the next frame's latents [B, C, h, w] (Euler steps of the flow head from Gaussian noise). With
        residual, the sample is a change added to `base` [B, C, h, w] (None: the last frame)."""
        feats = self.stt(patchify(window, self.cfg.patch), cond)[:, -1]  # [B, N+1, D]
        b = window.shape[0]
        noise = torch.randn((b, self.tokens, self.latent_shape[0] * self.cfg.patch**2), generator=generator,
                            device=window.device)
        times = sampling_times(self.cfg.sampling_steps, self.tokens, self.cfg.schedule_shift)
        x = euler_sample(lambda x_t, t: self.head(x_t, t, feats, cond[:, -1]), noise, times)
        sample = unpatchify(x, self.cfg.patch, self.latent_shape)
        if not self.cfg.residual:
            return sample
        return (window[:, -1] if base is None else base) + sample

    @torch.no_grad()
    def rollout(self, latents: Tensor, cond: Tensor, horizon: int, *, generator: torch.Generator | None = None,
                warp: Optional[EgoWarp] = None) -> Tensor:
        """Observed latents [B, Tc, C, h, w] (Tc >= context_frames) and conditions [B, >= Tc + horizon - 1, A]
        (entry i: frame i's transition) -> `horizon` predicted latents [B, horizon, C, h, w]. An ego-warped
        residual base reads `warp`, whose motion is indexed as `cond`."""
        cf, tc = self.cfg.context_frames, latents.shape[1]
        frames = latents[:, -cf:]
        offset = tc - cf
        for k in range(horizon):
            window_cond = cond[:, offset + k : offset + k + cf]
            last = offset + k + cf - 1  # the window's last frame, whose transition is predicted
            base = None
            if self.warps:
                if warp is None:
                    raise ValueError(f"residual_base={self.cfg.residual_base!r}: rollout needs warp (the ego motion)")
                base = self.residual_bases(frames[:, -1:], warp.frames(last, last + 1))[:, 0]
            new = self.next_latent(frames[:, -cf:], window_cond, generator=generator, base=base)
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
        warp = self.ego_warp_inputs(context, tc + horizon - 1)
        was_training = self.training
        self.eval()
        latents = self.normalize(self.encode_raw(images[:, -cf:]))
        future = self.rollout(latents, cond[:, tc - cf :], horizon, generator=generator,
                              warp=warp.frames(tc - cf, None) if warp is not None else None)
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
