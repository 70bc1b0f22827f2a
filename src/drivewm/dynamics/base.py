"""What the three token world models share: config fields, the frozen tokenizer, the ego-warped prior,
input checks, loss(batch) and the rollout loop (each model supplies only `next_frame`).

A world model predicts the scene tokens of future frames from past tokens and per-frame ego
conditions (see `drivewm.conditions`). It holds a trained tokenizer, frozen: the tokenizer's config is nested
in the world model's (`model.tokenizer`) and its weights are part of the world model's, so a run is
self-contained; when a new run starts from a tokenizer run (`model.tokenizer_run`), the train layer nests
that run's config and copies its weights in (`drivewm.train.checkpoint.build_model_from_sources`). It is frozen
(`requires_grad=False`, always in eval mode), and tokenizes the frames of its modality inside `loss`
under `no_grad`; a batch that already carries `tokens` [B, T, h, w] skips that step (tests, pre-tokenized data).
The modality follows from the tokenizer's type: an occupancy tokenizer reads `batch['occ']`
[B, T, X, Y, Z]; Copilot4D's LiDAR tokenizer (`lidar_vqvae`, arXiv 2311.01017) reads `batch['lidar']`
[B, T, P, 4] with `batch['lidar_count']` [B, T], so the same three world models also run on LiDAR tokens;
a camera VQ tokenizer (the VQ-GAN, or DrivingWorld's temporal-aware VQ) reads `batch['camera']` uint8
[B, T, H, W, 3], so they run on camera tokens too (GAIA-1 / DrivingGPT, MaskGIT on video). A window is
encoded as one clip: the temporal VQ is causal in time, so a frame's tokens depend on it and the frames
before it in the window only, the same in training and in a forecast's context.

The ego-warped prior (`model.warp_prior`, `make_prior`) moves each decoded frame into the next by the known ego
motion: occupancy as a static world (`geometry.warp_occupancy`), camera frames through the road-plane homography
of the homography-warped copy (`baselines.camera.source_pixels`, `sample_bilinear`), which needs the episode's
camera calibration: training windows, a forecast's context and `rollout(calibration=...)` carry it
(`forecaster.STATIC_KEYS`), and the token cache reads it per episode as the windows serve it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones import BackboneConfig
from drivewm.errors import DrivewmError
from drivewm.forecaster import STATIC_KEYS
from drivewm.geometry import WARP_OUTSIDE, warp_occupancy
from drivewm.conditions import condition_dim, ego_conditions, motion_from_conditions
from drivewm.dynamics.sampling import SamplingConfig
from drivewm.dynamics.warp_prior import WarpPrior, check_camera_prior, warp_camera_frames
from drivewm.tokenizers.camera import CameraAutoencoder, to_uint8
from drivewm.tokenizers.lidar import LidarTokenizer
from drivewm.tokenizers.vqgan import VQGAN
from drivewm.tokenizers.vqvae2 import VQVAE2


@dataclass(kw_only=True)
class WorldModelConfig:
    name: str = ""
    """Registered model name."""
    tokenizer_run: str = ""
    """Run directory of a trained tokenizer that a new run copies in (its config into `tokenizer`, its weights
    into the model), frozen. Recorded with the run, never read to load it."""
    tokenizer: Optional[Dict[str, Any]] = None
    """The frozen tokenizer's registered config ({"name": ..., fields}), filled from `tokenizer_run` when a
    run starts (None and no tokenizer_run: batches carry 'tokens')."""
    vocab_size: Optional[int] = None
    """Scene codebook size. Unset: the tokenizer's, filled when a run starts from `tokenizer_run`; set only for
    a model without a tokenizer (batches carry 'tokens'); a value other than the tokenizer's is refused."""
    token_shape: Optional[list[int]] = None
    """Token grid (h, w) of one frame. Unset: the tokenizer's (as vocab_size)."""
    condition: str = "action_motion"
    """Ego conditioning per frame: 'action' (accel, steer) or 'action_motion' (+ known ego motion to the next frame)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """Temporal sequence mixer: `kind` 'attention' or 'ssm' (drivewm.backbones) and the mixer's own options
    (norm, mlp_ratio, rope_base; the SSM's d_state, d_conv, expand, dt_rank, chunk). Its width, depth, heads,
    dropout and length come from the model's dim, depth, heads, dropout and max_frames."""
    dim: int = 128
    """Model width."""
    depth: int = 4
    """Layers (GPT) or blocks per scale (spatio-temporal, MaskGIT)."""
    heads: int = 4
    """Attention heads."""
    dropout: float = 0.0
    """Dropout inside the blocks."""
    max_frames: int = 11
    """Longest window (frames) the model attends over; longer rollouts slide this window."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Token sampling of rollouts (temperature, top_k)."""
    warp_prior: bool = False
    """Give every predicted frame, token by token, the previous frame ego-warped into it (decoded, moved by
    the known ego motion, encoded again): the ego-warped copy as a per-location prior. Needs
    condition='action_motion' and an occupancy tokenizer or the per-frame camera VQ-GAN (camera frames move
    through the road-plane homography, so windows and contexts carry the camera calibration:
    camera_intrinsics and camera_extrinsics in data.keys)."""
    prior_outside: str = "free"
    """With warp_prior: what the prior shows where the predicted frame sees past the warped frame's grid:
    'free' (the ego-warped copy's rule) or 'border' (the nearest edge column, so the road and roadside
    run on into the area entering the view; `warp_occupancy`). Camera priors fill from the border as the
    homography-warped copy does, so a camera tokenizer takes 'border' only."""
    input_mask_ratio: float = 0.0
    """DrivingWorld's (arXiv 2412.19505) random input-token masking against rollout drift: in training, per
    clip, a fraction U(0, r) of the input tokens is replaced by [MASK] (0 disables it; DrivingWorld: 0.5).
    MaskGIT masks only the context frames (its target frame has its own schedule)."""

    @staticmethod
    def upgrade(data: dict) -> list[str]:
        """Bring the model section of a config written by an older drivewm up to date, in place; returns the
        keys changed (none: already current). `backbone` was the mixer's kind alone; `min_context`,
        `prior_max_age` and `sampling.top_p` are gone, and go only with the one value they ever took effect
        with (a ValueError names any other)."""
        changed = []
        if isinstance(data.get("backbone"), str):
            data["backbone"] = {"kind": data["backbone"]}
            changed.append("backbone")
        for keys, value in REMOVED_OPTIONS.items():
            *parents, key = keys.split(".")
            section = data
            for parent in parents:
                section = section.get(parent) if isinstance(section, dict) else None
            if not isinstance(section, dict) or key not in section:
                continue
            if section[key] != value:
                raise ValueError(f"model.{keys}={section[key]}: this option is gone (only {keys}={value} remains); "
                                 f"the run cannot be converted")
            del section[key]
            changed.append(keys)
        return changed

    def frozen_sources(self, missing_only: bool = False) -> dict[str, str]:
        """{model attribute: run directory} of the frozen parts copied from finished runs; with `missing_only`,
        those whose config is not nested yet (a run written before runs were self-contained)."""
        if not self.tokenizer_run or (missing_only and self.tokenizer is not None):
            return {}
        return {"tokenizer": self.tokenizer_run}

    def adopt_frozen(self, attribute: str, run_kind: str, run_model: nn.Module) -> nn.Module:
        """Nest the config of the tokenizer `run_model` (a finished run of kind `run_kind`); returns the module
        whose weights become the world model's `tokenizer`."""
        from drivewm.hub import config_to_dict

        if attribute != "tokenizer":
            raise ValueError(f"a world model has no frozen part {attribute!r}")
        if run_kind != "tokenizer":
            raise ValueError(f"model.tokenizer_run: {self.tokenizer_run} holds a {run_kind} model "
                             f"({run_model.cfg.name}), not a tokenizer")
        self.tokenizer = config_to_dict(run_model.cfg)
        return run_model


class TokenWorldModel(nn.Module):
    """Base class: subclasses implement `loss_tokens(tokens, cond, prior)` and `next_frame(...)`, and set
    `rollout_window`, the most past frames `next_frame` reads (the rest of `max_frames` holds the new frame).

    A `drivewm.forecaster.Forecaster`: `forecast(context, horizon)` encodes the context frames, rolls out and
    returns occupancy (occupancy tokenizer), a field to render along the true future rays (LiDAR) or uint8
    camera frames (camera VQ tokenizer)."""

    rollout_window: int
    sees_future = False

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None or cfg.token_shape is None:
            raise DrivewmError("model.vocab_size and model.token_shape are unset: a run starting from model.tokenizer_run "
                               "reads them from the tokenizer (build_model_from_sources); without a tokenizer, set them")
        if len(cfg.token_shape) != 2:
            raise ValueError(f"token_shape must be (h, w), got {cfg.token_shape}")
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.token_shape = (int(cfg.token_shape[0]), int(cfg.token_shape[1]))
        self.tokens_per_frame = self.token_shape[0] * self.token_shape[1]
        self.action_dim = condition_dim(cfg.condition)
        self.name = cfg.name
        if cfg.tokenizer is None and cfg.tokenizer_run:
            raise DrivewmError(f"model.tokenizer_run={cfg.tokenizer_run} is not nested in model.tokenizer: build a new "
                             f"run's model with drivewm.train.checkpoint.build_model_from_sources")
        self.tokenizer: nn.Module | None = frozen_tokenizer(cfg) if cfg.tokenizer is not None else None
        # 'lidar', 'camera' or 'occ': which window key the tokenizer reads (no tokenizer: batches carry tokens).
        self.modality = tokenizer_modality(self.tokenizer, cfg)
        self.sampling = cfg.sampling
        if cfg.prior_outside not in WARP_OUTSIDE:
            raise ValueError(f"model.prior_outside must be 'free' or 'border', got {cfg.prior_outside!r}")
        if not 0.0 <= cfg.input_mask_ratio < 1.0:
            raise ValueError(f"model.input_mask_ratio must be in [0, 1), got {cfg.input_mask_ratio}")
        for key in BACKBONE_FROM_MODEL:
            if getattr(cfg.backbone, key) != getattr(BackboneConfig, key):
                raise DrivewmError(f"model.backbone.{key}: set by the world model "
                                   f"(model.{BACKBONE_FROM_MODEL[key]}); remove it from model.backbone")
        if cfg.warp_prior:
            if cfg.condition != "action_motion":
                raise ValueError("model.warp_prior needs condition='action_motion' (the known ego motion to warp by)")
            if self.tokenizer is not None and self.modality not in ("occ", "camera"):
                raise ValueError("model.warp_prior needs an occupancy or camera tokenizer (it decodes and warps "
                                 "the frames)")
            if self.modality == "camera":
                check_camera_prior(self.tokenizer, cfg.tokenizer_run or cfg.tokenizer["name"], cfg.prior_outside)

    # --- the frozen tokenizer -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TokenWorldModel":
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()  # frozen: its norms/dropout never switch to training behaviour
        return self

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
        """Frames of the tokenizer's modality -> tokens [B, T, h, w].

        occ [B, T, X, Y, Z] class ids, (LiDAR tokenizer) points [B, T, P, 4] with count [B, T] real rows, or
        (camera tokenizer) uint8 frames [B, T, H, W, 3], encoded as one clip (causal in time for the temporal VQ).
        """
        if self.tokenizer is None:
            raise ValueError("this world model has no tokenizer (model.tokenizer_run is empty); pass tokens")
        b, t = frames.shape[:2]
        if self.modality == "camera":
            if frames.dim() != 5:
                raise DrivewmError(f"camera: expected uint8 frames [B, T, H, W, 3], got {tuple(frames.shape)}")
            return self.tokenizer.encode(frames).long()  # [B, T, h, w]; checks the image size and dtype
        if self.modality == "lidar":
            if frames.dim() != 4:
                raise ValueError(f"lidar: expected points [B, T, P, 4], got {tuple(frames.shape)}")
            flat_count = count.flatten(0, 1) if count is not None else None
            codes = self.tokenizer.encode(frames.flatten(0, 1), flat_count)  # [B*T, h, w]
        else:
            codes = self.tokenizer.encode(frames.flatten(0, 1))  # [B*T, h, w]
        return codes.reshape(b, t, *codes.shape[1:]).long()

    @torch.no_grad()
    def encode_batch(self, batch: dict[str, torch.Tensor], stop: int | None = None) -> torch.Tensor:
        """Tokens [B, T', h, w] of a window batch's first `stop` frames (all when None), from the modality's key."""
        key = self.modality
        for need in (key, "lidar_count") if key == "lidar" else (key,):
            if need not in batch:
                raise KeyError(
                    f"this world model's tokenizer ({self.tokenizer_name}) reads batch[{need!r}], but the batch "
                    f"has keys {sorted(batch)}; add {key!r} to data.keys"
                )
        count = batch["lidar_count"][:, :stop] if key == "lidar" else None  # padding rows are not returns
        return self.encode(batch[key][:, :stop], count)

    @property
    def tokenizer_name(self) -> str:
        """The frozen tokenizer's run directory, or its registered name."""
        return self.cfg.tokenizer_run or (self.cfg.tokenizer or {}).get("name", "none")

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, h, w] -> occupancy class ids [B, T, X, Y, Z] (argmax of the decoder's logits), or
        (camera tokenizer) uint8 frames [B, T, H, W, 3], the clip decoded at once (the temporal VQ's decoder
        is causal in time too)."""
        if self.tokenizer is None:
            raise ValueError("this world model has no tokenizer (model.tokenizer_run is empty)")
        if self.modality == "lidar":
            raise ValueError("decode gives occupancy; a LiDAR world model's tokens are rendered along rays "
                             "(drivewm.dynamics.lidar_forecast.render_sweeps)")
        self.check_tokens(tokens, "tokens")
        if self.modality == "camera":
            return to_uint8(self.tokenizer.decode(tokens))  # [B, T, 3, H, W] in [-1, 1] -> [B, T, H, W, 3]
        b, t = tokens.shape[:2]
        logits = self.tokenizer.decode(tokens.flatten(0, 1))  # [B*T, C, X, Y, Z]
        occ = logits.argmax(1)
        return occ.reshape(b, t, *occ.shape[1:])

    # --- the Forecaster interface ------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, context: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor | dict:
        """`horizon` frames after the context's last one: occupancy [B, H, X, Y, Z], for a LiDAR tokenizer
        {"render": fn(points [B, H, P, C], count [B, H], origin [B, H, 3] or None, inside)}
        (`lidar_forecast.forecast_lidar`), for a camera tokenizer uint8 frames [B, H, H_img, W_img, 3]
        (`camera_forecast.forecast_camera`)."""
        if self.modality == "camera":
            from drivewm.dynamics.camera_forecast import forecast_camera

            return forecast_camera(self, context, horizon, generator=generator)
        if self.modality == "lidar":
            from drivewm.dynamics.lidar_forecast import forecast_lidar

            return forecast_lidar(self, context, horizon, generator=generator)
        from drivewm.dynamics.forecast import forecast_occupancy

        return forecast_occupancy(self, context, self.context_frames(context), horizon, generator=generator)

    def context_frames(self, context: dict[str, torch.Tensor]) -> int:
        """How many observed frames a forecaster's context holds (of the tokenizer's modality)."""
        if self.modality not in context:
            raise DrivewmError(f"this world model's tokenizer ({self.tokenizer_name}) reads {self.modality!r} frames, "
                               f"but the context has keys {sorted(context)}: data of another modality?")
        frames = context[self.modality].shape[1]
        if frames < 1:
            raise DrivewmError(f"the context holds no {self.modality!r} frame: a forecast needs at least 1")
        return frames

    def prepare_dataset(self, dataset, device: torch.device | str = "cpu", progress: bool = True):
        """The training data as the loss reads it, made once per run: each frame tokenized by the frozen
        tokenizer (and its hint computed) once (`token_cache.tokenized`); other data unchanged."""
        from drivewm.dynamics.token_cache import tokenized

        return tokenized(self, dataset, device, progress)

    # --- the ego-warped prior ------------------------------------------------------------------------
    @torch.no_grad()
    def make_prior(self, tokens: Tensor, cond: Tensor, calibration: dict[str, Tensor] | None = None) -> WarpPrior:
        """tokens [B, T, h, w], cond [B, T, 5] -> the WarpPrior of those frames: entry t is frame t decoded,
        moved by the known motion t -> t+1 (`cond`) into frame t+1 and encoded. Occupancy moves as a static
        world, nearest voxel (`warp_occupancy`); camera frames through the road-plane homography of
        `calibration` ({'camera_intrinsics': [B, 3, 3], 'camera_extrinsics': [B, 4, 4]}, `prior_calibration`),
        bilinear, the unseen area filled from the border and rounded to uint8: the homography-warped copy
        (`baselines.camera.EgoWarpCamera`) of each frame.

        Training and rollouts compute it the same way, from tokens, so the prior a model learns to read
        is the prior it gets when it forecasts from its own frames."""
        if self.tokenizer is None:
            raise ValueError("model.warp_prior needs the tokenizer (model.tokenizer_run) or batches with 'prior'")
        b, t = tokens.shape[:2]
        motion = motion_from_conditions(cond[:, :t].float())  # [B, T, 3]: frame t+1 in frame t
        if self.modality == "camera":
            calibration = self.prior_calibration(calibration or {}, "the calibration given to make_prior / rollout")
            return WarpPrior(self.encode(warp_camera_frames(self.decode(tokens), motion, calibration)))
        occ = self.decode(tokens).flatten(0, 1)  # [B*T, X, Y, Z]
        warped = warp_occupancy(occ, motion.reshape(b * t, 1, 3), self.tokenizer.grid,
                                self.cfg.prior_outside)  # [B*T, 1, X, Y, Z]
        return WarpPrior(self.encode(warped.reshape(b, t, *occ.shape[1:])))

    def prior_calibration(self, source: dict[str, Tensor], where: str) -> dict[str, Tensor] | None:
        """The camera calibration the camera prior warps by, read from `source` (a batch, a context: the window's
        `STATIC_KEYS`), or None where the prior needs none (no warp_prior, or an occupancy tokenizer). A missing
        key is one error naming it and `where` it was looked for."""
        if not (self.cfg.warp_prior and self.modality == "camera"):
            return None
        for key in STATIC_KEYS:
            if key not in source:
                raise DrivewmError(
                    f"model.warp_prior on camera tokens warps each frame through the road-plane homography, which "
                    f"needs the camera calibration {key!r}: {where} has none (add {' and '.join(STATIC_KEYS)} to "
                    f"data.keys; the store must record them)")
        return {key: source[key] for key in STATIC_KEYS}

    def batch_prior(self, batch: dict[str, Tensor], tokens: Tensor, cond: Tensor) -> WarpPrior | None:
        """The window's WarpPrior: the batch's `prior` (pre-tokenized data) or computed from its tokens (and,
        camera tokens, its calibration); None without warp_prior."""
        if not self.cfg.warp_prior:
            return None
        if "prior" not in batch:
            return self.make_prior(tokens, cond, self.prior_calibration(batch, "the batch"))
        ids = batch["prior"].long()
        self.check_tokens(ids, "prior")
        return WarpPrior(ids)

    # --- training --------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        tokens = batch["tokens"].long() if "tokens" in batch else self.encode_batch(batch)
        self.check_tokens(tokens, "tokens")
        cond = ego_conditions(batch, self.cfg.condition)
        return self.loss_tokens(tokens, cond, self.batch_prior(batch, tokens, cond))

    def loss_tokens(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        raise TypeError(f"{type(self).__name__} must define loss_tokens")

    # --- rollout -----------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, context: Tensor, actions: Tensor, horizon: int, *, sampling: SamplingConfig | None = None,
                generator: torch.Generator | None = None, calibration: dict[str, Tensor] | None = None,
                **options) -> Tensor:
        """context [B, Tc, h, w] tokens, actions [B, >=Tc+horizon-1, A] -> future tokens [B, horizon, h, w].

        Each new frame is `next_frame` of the last `rollout_window` frames (a window sliding over longer
        rollouts), their conditions and, with warp_prior, their prior, extended by each generated frame
        (camera tokens: warped by `calibration`, see `make_prior`). `options` are the model's own `next_frame`
        keywords (GPT: use_cache; MaskGIT: steps, guidance, use_cache)."""
        self.check_rollout_inputs(context, actions, horizon)
        sampling = sampling or self.sampling
        frames = context.long()
        prior_of = self.make_prior if calibration is None else functools.partial(self.make_prior,
                                                                                 calibration=calibration)
        prior = prior_of(frames, actions[:, : frames.shape[1]]) if self.cfg.warp_prior else None
        for k in range(horizon):
            t = frames.shape[1]
            start = max(0, t - self.rollout_window)
            # Entry i: the transition out of window frame i; the new frame's own (last) one may lie past the
            # given actions and is never read, so it is padded with zeros.
            cond = actions[:, start : t + 1].float()
            if cond.shape[1] < t - start + 1:
                cond = torch.cat([cond, torch.zeros_like(cond[:, :1])], 1)
            window_prior = prior.window(start) if prior is not None else None
            new = self.next_frame(frames[:, start:], cond, window_prior, sampling=sampling, generator=generator,
                                  **options)  # [B, h, w]
            frames = torch.cat([frames, new[:, None]], 1)
            if prior is not None and k < horizon - 1:
                prior = prior.extend(prior_of(new[:, None], actions[:, t : t + 1]))
        return frames[:, context.shape[1] :]

    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None) -> Tensor:
        """window [B, T, h, w], cond [B, T+1, A] (entry i: the transition out of frame i), prior (warp_prior:
        T entries, the last the new frame's) -> the next frame's tokens [B, h, w]."""
        raise TypeError(f"{type(self).__name__} must define next_frame")

    # --- input checks shared by loss and rollout ---------------------------------------------------
    def check_tokens(self, tokens: Tensor, name: str) -> None:
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"{name}: token ids must be an integer tensor, got {tokens.dtype}")
        if tokens.dim() != 4 or tuple(tokens.shape[2:]) != self.token_shape:
            raise ValueError(
                f"{name}: expected token ids [B, T, {self.token_shape[0]}, {self.token_shape[1]}], "
                f"got {tuple(tokens.shape)}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"{name}: token ids must lie in [0, {self.vocab_size}), got range "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )

    def check_rollout_inputs(self, context: Tensor, actions: Tensor, horizon: int) -> None:
        self.check_tokens(context, "context")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        need = context.shape[1] + horizon - 1
        if actions.dim() != 3 or actions.shape[0] != context.shape[0] or actions.shape[2] != self.action_dim:
            raise ValueError(
                f"actions: expected [B={context.shape[0]}, T>={need}, {self.action_dim}] "
                f"(condition={self.cfg.condition!r}), got {tuple(actions.shape)}"
            )
        if actions.shape[1] < need:
            raise ValueError(
                f"actions: {context.shape[1]} context frames + horizon {horizon} need {need} per-frame "
                f"conditions, got {actions.shape[1]}"
            )
        bad = ~torch.isfinite(actions)
        if bad.any():  # sampling would fail later with torch's "probability tensor contains inf, nan"
            raise DrivewmError(f"actions: {int(bad.sum())} non-finite (NaN/inf) values, first at index {bad.nonzero()[0].tolist()}")


# Options of older world-model configs that were removed, with the one value each run can drop them at.
REMOVED_OPTIONS = {"min_context": 1, "prior_max_age": 1, "sampling.top_p": 1.0}

# BackboneConfig fields a world model sets from its own config.
BACKBONE_FROM_MODEL = {"dim": "dim", "depth": "depth", "heads": "heads", "dropout": "dropout", "max_len": "max_frames"}


def temporal_backbone(cfg: WorldModelConfig, *, dim: int, depth: int, max_len: int) -> BackboneConfig:
    """A world model's temporal mixer (model.backbone) at the width, depth and length one part of it needs."""
    return dataclasses.replace(cfg.backbone, dim=dim, depth=depth, heads=cfg.heads, dropout=cfg.dropout,
                               max_len=max_len)


def tokenizer_modality(tokenizer: nn.Module | None, cfg: WorldModelConfig) -> str:
    """Which window key a world model's tokenizer reads: 'lidar', 'camera' (a camera VQ tokenizer) or 'occ' (an
    occupancy tokenizer, or none: batches carry tokens). A camera tokenizer without one grid of discrete tokens
    per frame (VQ-VAE-2's two grids, the KL autoencoder's continuous latent) is refused."""
    if isinstance(tokenizer, LidarTokenizer):
        return "lidar"
    if isinstance(tokenizer, VQGAN):
        return "camera"
    if isinstance(tokenizer, (CameraAutoencoder, VQVAE2)):
        raise DrivewmError(
            f"model.tokenizer: {cfg.tokenizer_run or cfg.tokenizer['name']} ({cfg.tokenizer['name']}) is not a "
            f"camera VQ tokenizer with one token grid per frame; token world models take camera_vqgan or "
            f"camera_temporal_vq (the KL autoencoder's latent is continuous, VQ-VAE-2 has two grids)")
    return "occ"


def frozen_tokenizer(cfg: WorldModelConfig) -> nn.Module:
    """Build the tokenizer nested in cfg.tokenizer, check it matches the world model's config, and freeze it."""
    from drivewm.hub import build_from_config

    if cfg.tokenizer_run:
        # Its weights come from that run (or this run's checkpoint), so building it draws nothing from the global
        # RNG: the world model's own layers start from the state that loading the tokenizer run left.
        with torch.random.fork_rng(devices=[]):
            tokenizer = build_from_config(cfg.tokenizer, "model.tokenizer")
    else:
        tokenizer = build_from_config(cfg.tokenizer, "model.tokenizer")
    tokenizer_modality(tokenizer, cfg)  # refuses a tokenizer without one discrete grid per frame
    vocab, shape = int(tokenizer.vocab_size), tuple(int(s) for s in tokenizer.token_shape)
    if vocab != cfg.vocab_size or shape != tuple(cfg.token_shape):
        raise DrivewmError(
            f"model.tokenizer: tokenizer {cfg.tokenizer_run or cfg.tokenizer['name']} has vocab_size={vocab}, "
            f"token_shape={list(shape)} but the world model is configured for vocab_size={cfg.vocab_size}, "
            f"token_shape={list(cfg.token_shape)}"
        )
    tokenizer.requires_grad_(False)
    return tokenizer.eval()
