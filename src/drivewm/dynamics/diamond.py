"""DIAMOND (Alonso et al. 2024, arXiv 2405.12399): an action-conditioned EDM denoiser of the next frame.

Official code: eloialonso/diamond, commit 5bcd1599755b4f2fae8e5e079e02f0728e174965 (branch main),
``src/models/diffusion/denoiser.py`` (``Denoiser.forward``: the loss), ``inner_model.py`` (``InnerModel``: the
noise + action embedding and the U-Net), ``diffusion_sampler.py`` (the sampler), ``src/envs/world_model_env.py``
(autoregressive rollouts); the pieces live in `drivewm.dynamics.edm`. As there:

* the last `conditioning_frames` (4) frames, scaled by 1 / sigma_data, are stacked on channels with the
  noisy next frame (scaled by c_in) at the U-Net's input;
* the actions of those frames (action t moves frame t to t + 1) are embedded to cond_channels / n each,
  flattened, added to the Fourier features of c_noise and projected by a 2-layer MLP; every ResBlock reads
  that vector through AdaGroupNorm. drivewm's actions are continuous: the embedding is the csgo branch's
  multi-hot form (``act @ embedding.weight``), a linear map without bias;
* training draws sigma log-normal (loc -0.4, scale 1.2, clipped to [2e-3, 20]) with offset noise 0.3 and
  regresses F on (x_next - c_skip x_noisy) / c_out, for each frame of the window after the first n, each
  fed the 8-bit denoised frames before it (``wrap_model_output``) as the official loop does;
* sampling: Karras' schedule (sigma_min 2e-3, sigma_max 5, rho 7), 3 Euler steps, no churn, from x ~ N(0, I);
  `EDMNextFrame.sampling_denoiser` computes the network's parts that do not depend on x once per frame
  (outputs equal to the plain path's up to float rounding, tests/dynamics/test_diamond_sampling.py).

drivewm's variant, not the paper's: with ``model.warp_prior`` (off by default; the meaning of the occupancy token
models' option of that name) the frame being denoised also gets the previous frame ego-warped into it: the
last conditioning frame moved by the known ego motion of that transition through the road-plane homography
(`drivewm.baselines.camera.source_pixels`, bilinear), stacked on the channels after the conditioning frames and
scaled as they are. Training and rollouts make it the same way, from the frame the model conditions on (in
training the 8-bit denoised frame of the step before, in rollouts its own last generated frame).

`DiamondCamera` runs it on camera frames (uint8 [B, T, H, W, 3] <-> [-1, 1]); `DiamondBEV` on occupancy, whose
classes become fixed embeddings with height folded into channels on the BEV plane, decoded to the nearest
embedding. Both are `drivewm.forecaster.Forecaster`s with `loss(batch)` for the training engine.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.baselines.camera import sample_bilinear, source_pixels
from drivewm.conditions import relative_motion
from drivewm.data.spec import resolve_grid
from drivewm.dynamics.edm import (FourierFeatures, GroupNorm, SamplerConfig, UNet, _conv3x3, apply_noise,
                                  compute_conditioners, edm_sample, quantize, sample_training_sigma)
from drivewm.dynamics.rew_end import RewardEndConfig, RewardEndModel
from drivewm.errors import DrivewmError
from drivewm.forecaster import STATIC_KEYS
from drivewm.registry import register_model
from drivewm.tokenizers.camera import CAMERA_KEY, check_images, to_pixels, to_uint8


@dataclass(kw_only=True)
class SigmaDistributionConfig:
    """Training noise levels: exp(N(loc, scale^2)) clipped (``config/trainer.yaml``'s sigma_distribution)."""

    loc: float = -0.4
    scale: float = 1.2
    sigma_min: float = 2e-3
    sigma_max: float = 20.0


@dataclass(kw_only=True)
class DiamondConfig:
    name: str = "diamond"
    image_size: list[int] = field(default_factory=lambda: [64, 128])
    """[H, W] of the camera frames."""
    action_dim: int = 2
    """Width of batch['action'] (the simulator's: acceleration, steering)."""
    conditioning_frames: int = 4
    """Past frames stacked on channels (``num_steps_conditioning``)."""
    cond_channels: int = 256
    """Width of the noise + action conditioning vector; a multiple of 2 and of conditioning_frames."""
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    """ResBlocks per U-Net level (down; up has one more)."""
    channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    attn_depths: list[bool] = field(default_factory=list)
    """Self-attention per level, empty for none (the middle blocks always attend, as the official U-Net)."""
    sigma_data: float = 0.5
    sigma_offset_noise: float = 0.3
    sigma_distribution: SigmaDistributionConfig = field(default_factory=SigmaDistributionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    reward_end: RewardEndConfig = field(default_factory=RewardEndConfig)
    warp_prior: bool = False
    """drivewm's variant: give the denoiser of every frame the previous frame ego-warped into it (moved by the
    known ego motion through the road-plane homography) as one more conditioning frame. Camera frames only;
    needs the windows' camera_intrinsics / camera_extrinsics (data.keys) and poses (rel_pose)."""


# frame [B, C, H, W], index t of it in the clip -> that frame warped into frame t + 1, [B, C, H, W].
FrameWarp = Callable[[torch.Tensor, int], torch.Tensor]


def warp_frame(frame: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """frame [B, C, H, W] read (bilinear, border fill) at the source pixels [B, H', W', 2] of the frame after
    it (`source_pixels`): [B, C, H', W'] in frame's dtype."""
    return sample_bilinear(frame.movedim(1, -1), pixels[:, None])[:, 0].movedim(-1, 1).to(frame.dtype).contiguous()


class EDMNextFrame(nn.Module):
    """The official ``InnerModel`` wrapped by ``Denoiser``'s preconditioning: D(x; sigma | obs, act)."""

    def __init__(self, cfg: DiamondConfig, img_channels: int) -> None:
        super().__init__()
        n = cfg.conditioning_frames
        if n < 1 or cfg.cond_channels % n or cfg.cond_channels % 2:
            raise ValueError(f"model.cond_channels={cfg.cond_channels} must be even and divisible by "
                             f"model.conditioning_frames={n} (>= 1)")
        if cfg.action_dim < 1:
            raise ValueError(f"model.action_dim must be >= 1, got {cfg.action_dim}")
        cfg.sampler.check()
        self.cfg = cfg
        self.noise_emb = FourierFeatures(cfg.cond_channels)
        self.act_emb = nn.Linear(cfg.action_dim, cfg.cond_channels // n, bias=False)
        self.cond_proj = nn.Sequential(nn.Linear(cfg.cond_channels, cfg.cond_channels), nn.SiLU(),
                                       nn.Linear(cfg.cond_channels, cfg.cond_channels))
        self.conv_in = _conv3x3((n + 1 + int(cfg.warp_prior)) * img_channels, cfg.channels[0])
        self.unet = UNet(cfg.cond_channels, cfg.depths, cfg.channels, cfg.attn_depths or [False] * len(cfg.depths))
        self.norm_out = GroupNorm(cfg.channels[0])
        self.conv_out = _conv3x3(cfg.channels[0], img_channels)
        nn.init.zeros_(self.conv_out.weight)

    def conditioning(self, obs: torch.Tensor, warp: FrameWarp | None, t: int) -> torch.Tensor:
        """The frames a next frame is denoised from: obs [B, n, C, H, W], whose last is frame t of the clip,
        and with warp_prior that frame warped into frame t + 1 by `warp`: [B, n (+ 1), C, H, W]."""
        if not self.cfg.warp_prior:
            return obs
        if warp is None:
            raise ValueError("model.warp_prior: the denoiser needs the warp of each conditioning frame into the next")
        return torch.cat((obs, warp(obs[:, -1], t)[:, None]), 1)

    def inner(self, noisy: torch.Tensor, c_noise: torch.Tensor, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """F: noisy [B, C, H, W] (already times c_in), c_noise [B], obs [B, n*C, H, W] (times 1/sigma_data; with
        warp_prior (n+1)*C, the prior last), act [B, n, A] -> [B, C, H, W]."""
        cond = self.cond_proj(self.noise_emb(c_noise) + self.act_emb(act.float()).flatten(1))  # [B, cond]
        return self._trunk(self.conv_in(torch.cat((obs, noisy), dim=1)), cond)

    def _trunk(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """F after its input conv: the U-Net and the output layers."""
        x = self.unet(x, cond)
        return self.conv_out(F.silu(self.norm_out(x)))

    def model_output(self, noisy: torch.Tensor, sigma: torch.Tensor, obs: torch.Tensor, act: torch.Tensor):
        """(F's output, the conditioners) for noisy [B, C, H, W] at sigma [B] given obs [B, n, C, H, W] (with
        warp_prior n + 1 frames, `conditioning`)."""
        cs = compute_conditioners(sigma, self.cfg.sigma_data, self.cfg.sigma_offset_noise)
        return self.inner(noisy * cs.c_in, cs.c_noise, obs.flatten(1, 2) / self.cfg.sigma_data, act), cs

    def sampling_denoiser(self, obs: torch.Tensor, act: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """c_skip x + c_out F(c_in x), `denoise` before its 8-bit grid, for one frame's conditioning, obs
        [B, n (+ 1), C, H, W] (`conditioning`) and act [B, n, A], as a function of (x, sigma), with what does not
        depend on x computed once for all the sampler's steps: conv_in is linear, so conv_in(cat(obs, x)) =
        conv(obs, W_obs) + b + conv(x, W_x), and the actions' embedding. The U-Net runs channels-last: oneDNN's convolutions on the
        16-channel full-resolution maps run about 4x faster in that layout on a CPU."""
        sd = self.cfg.sigma_data
        obs = (obs.flatten(1, 2) / sd).contiguous(memory_format=torch.channels_last)
        k = obs.shape[1]
        obs_in = F.conv2d(obs, self.conv_in.weight[:, :k], self.conv_in.bias, padding=1)
        w_x = self.conv_in.weight[:, k:]
        act_cond = self.act_emb(act.float()).flatten(1)

        def denoise(noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            cs = compute_conditioners(sigma, sd, self.cfg.sigma_offset_noise)
            cond = self.cond_proj(self.noise_emb(cs.c_noise) + act_cond)
            x = F.conv2d((noisy * cs.c_in).contiguous(memory_format=torch.channels_last), w_x, padding=1)
            return cs.c_skip * noisy + cs.c_out * self._trunk(x.add_(obs_in), cond)

        return denoise

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor, sigma: torch.Tensor, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """D(x; sigma) = c_skip x + c_out F(c_in x), on the 8-bit grid (``Denoiser.denoise``)."""
        out, cs = self.model_output(noisy, sigma, obs, act)
        return quantize(cs.c_skip * noisy + cs.c_out * out)

    def loss(self, frames: torch.Tensor, act: torch.Tensor, warp: FrameWarp | None = None) -> torch.Tensor:
        """``Denoiser.forward`` over a window: frames [B, T, C, H, W] in [-1, 1], act [B, T, A]; `warp` moves
        window frame t into frame t + 1 (warp_prior)."""
        n = self.cfg.conditioning_frames
        frames = frames.clone()
        dist = self.cfg.sigma_distribution
        loss = frames.new_zeros(())
        for i in range(frames.shape[1] - n):
            obs, target_frame = self.conditioning(frames[:, i:n + i], warp, n + i - 1), frames[:, n + i]
            sigma = sample_training_sigma(frames.shape[0], loc=dist.loc, scale=dist.scale, sigma_min=dist.sigma_min,
                                          sigma_max=dist.sigma_max, device=frames.device)
            noisy = apply_noise(target_frame, sigma, self.cfg.sigma_offset_noise)
            out, cs = self.model_output(noisy, sigma, obs, act[:, i:n + i])
            loss = loss + F.mse_loss(out, (target_frame - cs.c_skip * noisy) / cs.c_out)
            # Later targets are conditioned on this frame as the model denoised it, as in the official loop.
            frames[:, n + i] = quantize((cs.c_skip * noisy + cs.c_out * out).detach())
        return loss / (frames.shape[1] - n)

    @torch.no_grad()
    def rollout(self, past: torch.Tensor, act: torch.Tensor, horizon: int,
                generator: torch.Generator | None = None, warp: FrameWarp | None = None) -> torch.Tensor:
        """Autoregressive frames [B, horizon, C, H, W] after past [B, >= n, C, H, W]; act [B, >= P + horizon - 1, A]
        holds the actions of every frame from the first past one (action t moves frame t to t + 1); `warp`
        moves frame t (past, then generated) into frame t + 1 (warp_prior)."""
        n, p = self.cfg.conditioning_frames, past.shape[1]
        frames, out = list(past.unbind(1)), []
        for k in range(horizon):
            obs = self.conditioning(torch.stack(frames[-n:], 1), warp, p + k - 1)
            x = torch.randn(obs[:, 0].shape, generator=generator, device=past.device)
            denoise = self.sampling_denoiser(obs, act[:, p + k - n:p + k])
            x = edm_sample(lambda x_, s: quantize(denoise(x_, s)), x, self.cfg.sampler, generator)
            frames.append(x)
            out.append(x)
        return torch.stack(out, 1)


class DiamondWorldModel(nn.Module, metaclass=abc.ABCMeta):
    """What the camera and BEV models share: the window's frames as continuous images (`encode`), the EDM
    next-frame model, the optional reward / end heads, and a forecast decoded by `decode`."""

    sees_future = False
    key: str

    def __init__(self, cfg, img_channels: int, image_hw: tuple[int, int]) -> None:
        super().__init__()
        self.cfg, self.name = cfg, cfg.name
        self.image_hw = image_hw
        self.edm = EDMNextFrame(cfg, img_channels)
        self.reward_end = (RewardEndModel(cfg.reward_end, img_channels=img_channels, image_hw=image_hw,
                                          action_dim=cfg.action_dim) if cfg.reward_end.enabled else None)

    @abc.abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The batch's frames [B, T, ...] -> continuous images [B, T, C, H, W]."""

    @abc.abstractmethod
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous images [B, T, C, H, W] -> frames in the batch's layout."""

    def _frames(self, batch: dict[str, torch.Tensor], what: str) -> torch.Tensor:
        if self.key not in batch:
            raise DrivewmError(f"{self.name} reads {what}[{self.key!r}] (data.keys: [{self.key}, action]); "
                               f"got keys {sorted(batch)}")
        return self.encode(batch[self.key])

    def _actions(self, batch: dict[str, torch.Tensor], frames: int, what: str) -> torch.Tensor:
        if "action" not in batch:
            raise DrivewmError(f"{self.name} is action-conditioned: {what} needs 'action' (data.keys: "
                               f"[{self.key}, action]); got keys {sorted(batch)}")
        act = batch["action"]
        if act.dim() != 3 or act.shape[-1] != self.cfg.action_dim or act.shape[1] < frames:
            raise DrivewmError(f"{what}['action'] must be [B, >= {frames}, {self.cfg.action_dim}] (model.action_dim "
                               f"= {self.cfg.action_dim}), got {tuple(act.shape)}")
        return act

    def frame_warp(self, batch: dict[str, torch.Tensor], frames: int, what: str) -> FrameWarp | None:
        """With warp_prior, the `FrameWarp` of a clip of `frames` frames from the batch's (or context's)
        calibration (camera_intrinsics [B, 3, 3], camera_extrinsics [B, 4, 4]) and poses (rel_pose, or
        ego_pose, [B, >= frames, 3]): frame t moved into frame t + 1 by the pose of t + 1 in t's ego frame;
        None without warp_prior. A missing key is one error naming it."""
        if not self.cfg.warp_prior:
            return None
        for key in STATIC_KEYS:
            if key not in batch:
                raise DrivewmError(f"{self.name}: model.warp_prior warps through the camera calibration: {what} needs "
                                   f"{key!r} (data.keys: [{self.key}, action, {', '.join(STATIC_KEYS)}]); got keys "
                                   f"{sorted(batch)}")
        key = "rel_pose" if "rel_pose" in batch else "ego_pose"
        if key not in batch:
            raise DrivewmError(f"{self.name}: model.warp_prior warps by the known ego motion: {what} needs 'rel_pose' "
                               f"[B, T, 3] (a store with ego_pose); got keys {sorted(batch)}")
        pose = batch[key]
        if pose.dim() != 3 or pose.shape[-1] != 3 or pose.shape[1] < frames:
            raise DrivewmError(f"{self.name}: model.warp_prior needs {what}[{key!r}] [B, >= {frames}, 3], the pose of "
                               f"every frame up to the last one it predicts; got {tuple(pose.shape)}")
        pose = pose[:, :frames].double()
        step = relative_motion(pose)[:, :-1]  # [B, frames - 1, 3]: t + 1 in t's ego frame
        intrinsics, extrinsics = batch["camera_intrinsics"], batch["camera_extrinsics"]

        def warp(frame: torch.Tensor, t: int) -> torch.Tensor:
            return warp_frame(frame, source_pixels(intrinsics, extrinsics, step[:, t:t + 1], self.image_hw)[:, 0])

        return warp

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self._frames(batch, "batch")
        n = self.cfg.conditioning_frames
        if x.shape[1] < n + 1:
            raise DrivewmError(f"{self.name}: model.conditioning_frames={n} needs training windows of >= {n + 1} "
                               f"frames (data.past + data.future), got {x.shape[1]}")
        act = self._actions(batch, x.shape[1], "batch")
        denoising = self.edm.loss(x, act, self.frame_warp(batch, x.shape[1], "batch"))
        out = {"loss": denoising, "loss_denoising": denoising.detach()}
        if self.reward_end is not None:
            rew_cfg = self.cfg.reward_end
            reward, end = batch.get(rew_cfg.reward_key), batch.get(rew_cfg.end_key)
            if reward is None and end is None:
                raise DrivewmError(f"model.reward_end.enabled needs batch[{rew_cfg.reward_key!r}] or "
                                   f"batch[{rew_cfg.end_key!r}] (add one to data.keys); got keys {sorted(batch)}")
            heads = self.reward_end.loss(x, act, reward, end)
            out["loss"] = out["loss"] + sum(heads.values())
            out.update({k: v.detach() for k, v in heads.items()})
        return out

    @torch.no_grad()
    def rollout(self, context: dict[str, torch.Tensor], horizon: int, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Continuous frames [B, horizon, C, H, W] after the context's (see `forecast`)."""
        if horizon < 1:
            raise DrivewmError(f"horizon must be >= 1, got {horizon}")
        x = self._frames(context, "context")
        n, p = self.cfg.conditioning_frames, x.shape[1]
        if p < n:
            raise DrivewmError(f"{self.name} conditions on the last {n} frames (model.conditioning_frames); the "
                               f"context has {p} (data.past >= {n})")
        act = self._actions(context, p + horizon - 1, "context")
        return self.edm.rollout(x, act, horizon, generator, self.frame_warp(context, p + horizon, "context"))

    @torch.no_grad()
    def forecast(self, context: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The `horizon` frames after the context's last one, each sampled from the last
        `conditioning_frames` frames (observed, then generated) and their actions (context['action'] covers
        the past and future frames); noise from `generator`."""
        return self.decode(self.rollout(context, horizon, generator=generator))

    @torch.no_grad()
    def predict_reward_end(self, past: torch.Tensor, act: torch.Tensor, future: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward class logits [B, H, 3] (-1, 0, +1) and end logits [B, H, 2] of the transitions into each of
        `future`'s frames: past [B, P, C, H, W] and future [B, H, C, H, W] continuous frames (`rollout`), act
        the actions of every frame [B, >= P + H - 1, A]."""
        if self.reward_end is None:
            raise DrivewmError(f"{self.name} has no reward / end heads (model.reward_end.enabled: false)")
        frames = torch.cat((past, future), 1)
        p, h = past.shape[1], future.shape[1]
        rew, end, _ = self.reward_end(frames[:, :-1], act[:, :p + h - 1], frames[:, 1:])
        return rew[:, p - 1:], end[:, p - 1:]


class DiamondCamera(DiamondWorldModel):
    """DIAMOND on camera frames: uint8 [B, T, H, W, 3] <-> pixels [B, T, 3, H, W] in [-1, 1]."""

    modality = "camera"
    key = CAMERA_KEY

    def __init__(self, cfg: DiamondConfig) -> None:
        if len(cfg.image_size) != 2 or min(cfg.image_size) < 1:
            raise ValueError(f"model.image_size must be [H, W], got {cfg.image_size}")
        super().__init__(cfg, 3, (cfg.image_size[0], cfg.image_size[1]))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        check_images(frames, self.image_hw, f"{self.name}: camera")
        if frames.dim() != 5:
            raise DrivewmError(f"{self.name}: camera must be [B, T, H, W, 3], got {tuple(frames.shape)}")
        return to_pixels(frames)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return to_uint8(x)


@dataclass(kw_only=True)
class DiamondBEVConfig(DiamondConfig):
    name: str = "diamond_bev"
    grid: Any = "tiny"
    """The occupancy grid: a preset name, a grid written out or from_store (drivewm.data.spec.resolve_grid)."""
    embedding: str = "binary"
    """Fixed class embedding, entries +-1 (the [-1, 1] range sigma_data is set for): 'onehot' (2 onehot - 1,
    one channel per class) or 'binary' (the class id's bits, ceil(log2(classes)) channels)."""
    image_size: list[int] = field(default_factory=list)
    """Unused: the BEV plane is the grid's X x Y."""


class DiamondBEV(DiamondWorldModel):
    """DIAMOND on occupancy: class ids [B, T, X, Y, Z] -> embeddings [B, T, E * Z, X, Y] (height folded into
    channels on the BEV plane); a forecast takes each voxel's nearest class embedding."""

    modality = "occ"
    key = "occ"

    def __init__(self, cfg: DiamondBEVConfig) -> None:
        grid = resolve_grid(cfg.grid)
        classes = grid.num_classes
        if cfg.embedding == "onehot":
            table = 2.0 * torch.eye(classes) - 1.0
        elif cfg.embedding == "binary":
            bits = max(1, (classes - 1).bit_length())
            table = 2.0 * ((torch.arange(classes)[:, None] >> torch.arange(bits)) & 1).float() - 1.0
        else:
            raise ValueError(f"model.embedding must be 'onehot' or 'binary', got {cfg.embedding!r}")
        if cfg.warp_prior:
            raise ValueError("model.warp_prior warps camera frames through the road-plane homography; "
                             f"{cfg.name} forecasts occupancy")
        x, y, z = grid.shape
        super().__init__(cfg, table.shape[1] * z, (x, y))
        self.grid, self.height = grid, z
        self.register_buffer("table", table, persistent=False)  # [classes, E]

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 5 or tuple(frames.shape[2:]) != tuple(self.grid.shape):
            raise DrivewmError(f"{self.name}: occ must be [B, T, {', '.join(map(str, self.grid.shape))}] (model.grid), "
                               f"got {tuple(frames.shape)}")
        if frames.dtype.is_floating_point:
            raise DrivewmError(f"{self.name}: occ must hold integer class ids, got dtype {frames.dtype}")
        emb = self.table[frames.long()]  # [B, T, X, Y, Z, E]
        return emb.permute(0, 1, 5, 4, 2, 3).flatten(2, 3)  # [B, T, E*Z, X, Y]

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        e = self.table.shape[1]
        v = x.unflatten(2, (e, self.height)).permute(0, 1, 4, 5, 3, 2)  # [B, T, X, Y, Z, E]
        dist = (v[..., None, :] - self.table).pow(2).sum(-1)  # [B, T, X, Y, Z, classes]
        return dist.argmin(-1)


@register_model("diamond", DiamondConfig, kind="world")
def build_diamond(cfg: DiamondConfig) -> DiamondCamera:
    return DiamondCamera(cfg)


@register_model("diamond_bev", DiamondBEVConfig, kind="world")
def build_diamond_bev(cfg: DiamondBEVConfig) -> DiamondBEV:
    return DiamondBEV(cfg)
