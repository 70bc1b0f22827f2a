"""What the three token world models share: config fields, the frozen tokenizer, input checks, loss(batch).

A world model predicts the scene tokens of future frames from past tokens and per-frame ego
conditions (see `conditions.py`). It holds a trained tokenizer, frozen: the tokenizer's config is nested
in the world model's (`model.tokenizer`) and its weights are part of the world model's, so a run is
self-contained; when a new run starts from a tokenizer run (`model.tokenizer_run`), the train layer nests
that run's config and copies its weights in (`drivewm.train.checkpoint.build_model_from_sources`). It is frozen
(`requires_grad=False`, always in eval mode), and tokenizes the frames of its modality inside `loss`
under `no_grad`; a batch that already carries `tokens` [B, T, h, w] skips that step (tests, pre-tokenized data).
The modality follows from the tokenizer's type: an occupancy tokenizer reads `batch['occ']`
[B, T, X, Y, Z]; Copilot4D's LiDAR tokenizer (`lidar_vqvae`, arXiv 2311.01017) reads `batch['lidar']`
[B, T, P, 4] with `batch['lidar_count']` [B, T], so the same three world models also run on LiDAR tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from drivewm.errors import DrivewmError
from drivewm.geometry import WARP_OUTSIDE
from drivewm.dynamics.conditions import condition_dim, ego_conditions
from drivewm.dynamics.sampling import SamplingConfig
from drivewm.tokenizers.lidar import LidarTokenizer


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
    vocab_size: int = 512
    """Scene codebook size; must equal the tokenizer's."""
    token_shape: list[int] = field(default_factory=lambda: [16, 16])
    """Token grid (h, w) of one frame; must equal the tokenizer's."""
    condition: str = "action_motion"
    """Ego conditioning per frame: 'action' (accel, steer) or 'action_motion' (+ known ego motion to the next frame)."""
    backbone: str = "attention"
    """Temporal sequence mixer: 'attention' or 'ssm' (drivewm.backbones)."""
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
    min_context: int = 1
    """Fewest context frames rollout accepts."""
    warp_prior: bool = False
    """Give every predicted frame, token by token, the previous frame ego-warped into it (decoded, moved by
    the known ego motion, encoded again): the ego-warped copy as a per-location hint. Needs an occupancy
    tokenizer and condition='action_motion'."""
    prior_outside: str = "free"
    """With warp_prior: what the hint shows where the predicted frame sees past the warped frame's grid:
    'free' (the ego-warped copy's rule) or 'border' (the nearest edge column, so the road and roadside
    run on into the area entering the view; `warp_occupancy`)."""
    input_mask_ratio: float = 0.0
    """DrivingWorld's (arXiv 2412.19505) random input-token masking against rollout drift: in training, per
    clip, a fraction U(0, r) of the input tokens is replaced by [MASK] (0 disables it; DrivingWorld: 0.5).
    MaskGIT masks only the context frames (its target frame has its own schedule)."""
    prior_max_age: int = 1
    """With warp_prior: how many frames back a hint may come from. 1: every hint is the frame before, so a
    rollout's hints chain through its own generated frames. A: rollouts anchor the hints of the first A
    forecast frames on the last observed frame (one warp by the summed motion, one encoding), and training
    draws, per window, the frame its hints are anchored on; the hint's age enters as its own embedding."""

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
    """Base class: subclasses implement `loss_tokens(tokens, cond)` and `rollout(context, actions, horizon)`.

    A `drivewm.forecaster.Forecaster`: `forecast(context, horizon)` encodes the context frames, rolls out and
    returns occupancy (occupancy tokenizer) or a field to render along the true future rays (LiDAR)."""

    sees_future = False

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
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
        # 'lidar' or 'occ': which window key the tokenizer reads (no tokenizer: batches carry tokens).
        self.modality = "lidar" if isinstance(self.tokenizer, LidarTokenizer) else "occ"
        self.sampling = SamplingConfig()
        if cfg.prior_outside not in WARP_OUTSIDE:
            raise ValueError(f"model.prior_outside must be 'free' or 'border', got {cfg.prior_outside!r}")
        if not 0.0 <= cfg.input_mask_ratio < 1.0:
            raise ValueError(f"model.input_mask_ratio must be in [0, 1), got {cfg.input_mask_ratio}")
        if cfg.prior_max_age < 1:
            raise ValueError(f"model.prior_max_age must be >= 1, got {cfg.prior_max_age}")
        if cfg.warp_prior:
            if cfg.condition != "action_motion":
                raise ValueError("model.warp_prior needs condition='action_motion' (the known ego motion to warp by)")
            if self.tokenizer is not None and self.modality != "occ":
                raise ValueError("model.warp_prior needs an occupancy tokenizer (it decodes and warps occupancy)")

    # --- the frozen tokenizer -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TokenWorldModel":
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()  # frozen: its norms/dropout never switch to training behaviour
        return self

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
        """Frames of the tokenizer's modality -> tokens [B, T, h, w].

        occ [B, T, X, Y, Z] class ids, or (LiDAR tokenizer) points [B, T, P, 4] with count [B, T] real rows.
        """
        if self.tokenizer is None:
            raise ValueError("this world model has no tokenizer (model.tokenizer_run is empty); pass tokens")
        b, t = frames.shape[:2]
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
                    f"this world model's tokenizer ({self.cfg.tokenizer_run}) reads batch[{need!r}], but the batch "
                    f"has keys {sorted(batch)}; add {key!r} to data.keys"
                )
        count = batch["lidar_count"][:, :stop] if key == "lidar" else None  # padding rows are not returns
        return self.encode(batch[key][:, :stop], count)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, h, w] -> occupancy class ids [B, T, X, Y, Z] (argmax of the decoder's logits)."""
        if self.tokenizer is None:
            raise ValueError("this world model has no tokenizer (model.tokenizer_run is empty)")
        if self.modality == "lidar":
            raise ValueError("decode gives occupancy; a LiDAR world model's tokens are rendered along rays "
                             "(drivewm.dynamics.lidar_forecast.render_sweeps)")
        self.check_tokens(tokens, "tokens")
        b, t = tokens.shape[:2]
        logits = self.tokenizer.decode(tokens.flatten(0, 1))  # [B*T, C, X, Y, Z]
        occ = logits.argmax(1)
        return occ.reshape(b, t, *occ.shape[1:])

    # --- the Forecaster interface ------------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, context: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor | dict:
        """`horizon` frames after the context's last one: occupancy [B, H, X, Y, Z], or for a LiDAR tokenizer
        {"render": fn(points [B, H, P, C], count [B, H])} (`lidar_forecast.forecast_lidar`)."""
        if self.modality == "lidar":
            from drivewm.dynamics.lidar_forecast import forecast_lidar

            return forecast_lidar(self, context, horizon, generator=generator)
        from drivewm.dynamics.forecast import forecast_occupancy

        return forecast_occupancy(self, context, self.context_frames(context), horizon, generator=generator)

    def context_frames(self, context: dict[str, torch.Tensor]) -> int:
        """How many observed frames a forecaster's context holds (of the tokenizer's modality)."""
        if self.modality not in context:
            raise KeyError(f"the context has no {self.modality!r} frames (keys {sorted(context)}); add it to data.keys")
        return context[self.modality].shape[1]

    def prepare_dataset(self, dataset, device: torch.device | str = "cpu", progress: bool = True):
        """The training data as the loss reads it, made once per run: each frame tokenized by the frozen
        tokenizer (and its hint computed) once (`token_cache.tokenized`); other data unchanged."""
        from drivewm.dynamics.token_cache import tokenized

        return tokenized(self, dataset, device, progress)

    # --- the ego-warped prior ------------------------------------------------------------------------
    @torch.no_grad()
    def warp_hints(self, tokens: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, h, w], poses [B, T, A, 3] (target frames in each frame's ego frame) -> [B, T, A, h, w]:
        each frame decoded once, moved into each of its A target frames (static world, nearest voxel) and
        encoded: the ego-warped copy of the target frame, in tokens."""
        from drivewm.geometry import warp_occupancy

        if self.tokenizer is None:
            raise ValueError("model.warp_prior needs the tokenizer (model.tokenizer_run) or batches with 'next_prior'")
        b, t, a = poses.shape[:3]
        occ = self.decode(tokens).flatten(0, 1)  # [B*T, X, Y, Z]
        warped = warp_occupancy(occ, poses.reshape(b * t, a, 3), self.tokenizer.grid,
                                self.cfg.prior_outside)  # [B*T, A, X, Y, Z]
        return self.encode(warped.reshape(b, t * a, *occ.shape[1:])).reshape(b, t, a, *self.token_shape)

    @torch.no_grad()
    def next_prior(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, h, w], cond [B, T, 5] -> [B, T, h, w]: entry t is frame t decoded, warped by the
        known motion t -> t+1 (`cond`) into frame t+1, and encoded: the ego-warped copy of frame t+1.

        Training and rollouts compute it the same way, from tokens, so the hint a model learns to read
        is the hint it gets when it forecasts from its own frames."""
        from drivewm.dynamics.conditions import motion_from_conditions

        t = tokens.shape[1]
        motion = motion_from_conditions(cond[:, :t].float())[:, :, None]  # [B, T, 1, 3]
        return self.warp_hints(tokens, motion)[:, :, 0]

    @torch.no_grad()
    def aged_priors(self, tokens: torch.Tensor, cond: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """tokens [B, T, h, w], cond [B, T, 5] -> [B, T, A, h, w] (A = prior_max_age): entry [t, a-1] is the
        hint of frame t+1 made from frame t+1-a (warped by the motions summed over the a steps between);
        `none` (vocab_size) where that frame precedes the window. Sources run in chunks of `chunk` frames."""
        from drivewm.geometry import se2_compose
        from drivewm.dynamics.conditions import motion_from_conditions

        b, t = tokens.shape[:2]
        ages = self.cfg.prior_max_age
        motion = motion_from_conditions(cond[:, :t].float())  # [B, T, 3], step i -> i+1 (as next_prior reads it)
        motion = torch.cat([motion, motion.new_zeros(b, ages, 3)], 1)  # past the window: never read
        poses = [motion[:, :t]]  # poses[a-1][:, i]: frame i+a in frame i
        for a in range(1, ages):
            poses.append(se2_compose(poses[-1], motion[:, a : a + t]))
        poses = torch.stack(poses, 2)  # [B, T, A, 3]
        by_source = torch.cat([self.warp_hints(tokens[:, lo : lo + chunk], poses[:, lo : lo + chunk])
                               for lo in range(0, t, chunk)], 1)  # [B, T, A, h, w]: from frame i to i+a
        out = torch.full_like(by_source, self.vocab_size)
        for a in range(1, ages + 1):  # target position t = source + a - 1
            out[:, a - 1 :, a - 1] = by_source[:, : t - a + 1, a - 1]
        return out

    def pack_hints(self, codes: torch.Tensor, age: torch.Tensor | int) -> torch.Tensor:
        """Hint ids the networks read: code (0..V, V = none) + (V + 1) * (age - 1); unpacked by `HintEmbedding`."""
        return codes + (self.vocab_size + 1) * (torch.as_tensor(age, device=codes.device) - 1)

    def rollout_prior(self, prior: torch.Tensor | None, frames: torch.Tensor, actions: torch.Tensor,
                      observed: int) -> torch.Tensor | None:
        """A rollout's hints so far: `prior` (the hints of the frames it already covers, None at the start)
        extended by those of the frames [B, T, h, w] after them, each with its own transition in `actions`;
        the first `observed` frames are the context. None without warp_prior.

        Entry p hints frame p+1. Up to the first forecast frame it is made from frame p (age 1); with
        prior_max_age A, later ones come from the last observed frame while it is at most A frames back,
        then from the generated frame A back."""
        from drivewm.geometry import se2_compose
        from drivewm.dynamics.conditions import motion_from_conditions

        if not self.cfg.warp_prior:
            return None
        done, t = (0 if prior is None else prior.shape[1]), frames.shape[1]
        ages = self.cfg.prior_max_age
        parts = [] if prior is None else [prior]
        chained = min(t, observed) if ages > 1 else t
        if done < chained:
            parts.append(self.next_prior(frames[:, done:chained], actions[:, done:chained]))
        for p in range(max(done, chained), t):
            src = max(observed - 1, p + 1 - ages)
            motion = motion_from_conditions(actions[:, src : p + 1].double())  # [B, age, 3]
            pose = motion[:, 0]
            for k in range(1, p + 1 - src):
                pose = se2_compose(pose, motion[:, k])
            hint = self.warp_hints(frames[:, src : src + 1], pose[:, None, None])[:, :, 0]  # [B, 1, h, w]
            parts.append(self.pack_hints(hint, p + 1 - src))
        return torch.cat(parts, 1)

    def window_prior(self, batch: dict[str, torch.Tensor], tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor | None:
        """The window's hint ids [B, T, h, w] from the batch's `next_prior` (pre-tokenized data: [B, T, h, w],
        or [B, T, A, h, w] by age) or computed from its tokens; None without warp_prior.

        With prior_max_age > 1 each window draws the frame c its hints are anchored on, as a rollout anchors
        them on its last observed frame: frames up to c get age-1 hints, frame j > c the hint from frame
        max(c, j - A). c = T - 1 leaves every hint at age 1."""
        if not self.cfg.warp_prior:
            return None
        ages = self.cfg.prior_max_age
        if "next_prior" in batch:
            prior = batch["next_prior"].long()
        else:
            prior = self.next_prior(tokens, cond) if ages == 1 else self.aged_priors(tokens, cond)
        if ages == 1:
            self.check_tokens(prior, "next_prior")
            return prior
        b, t = tokens.shape[:2]
        if prior.dim() != 5 or prior.shape[2] != ages:
            raise ValueError(f"next_prior: model.prior_max_age={ages} needs hints by age [B, T, {ages}, h, w], "
                             f"got {tuple(prior.shape)}")
        anchor = torch.randint(0, t, (b, 1), device=tokens.device)
        target = torch.arange(1, t + 1, device=tokens.device)[None]  # entry p hints frame p+1
        age = torch.where(target <= anchor, 1, (target - anchor).clamp(max=ages))  # [B, T]
        codes = prior[:, :t].gather(2, (age - 1)[:, :, None, None, None].expand(-1, -1, 1, *prior.shape[3:]))[:, :, 0]
        self.check_tokens(codes, "next_prior")
        return self.pack_hints(codes, age[:, :, None, None])

    # --- training --------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"].long() if "tokens" in batch else self.encode_batch(batch)
        self.check_tokens(tokens, "tokens")
        cond = ego_conditions(batch, self.cfg.condition)
        return self.loss_tokens(tokens, cond, self.window_prior(batch, tokens, cond))

    def loss_tokens(self, tokens: torch.Tensor, cond: torch.Tensor,
                    next_prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} must define loss_tokens")

    # --- input checks shared by loss and rollout ---------------------------------------------------
    def check_tokens(self, tokens: torch.Tensor, name: str) -> None:
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

    def check_rollout_inputs(self, context: torch.Tensor, actions: torch.Tensor, horizon: int) -> None:
        self.check_tokens(context, "context")
        if context.shape[1] < self.cfg.min_context:
            raise ValueError(
                f"context: the model needs at least {self.cfg.min_context} frames, got {context.shape[1]}"
            )
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


class HintEmbedding(nn.Embedding):
    """Embedding of hint ids (`TokenWorldModel.pack_hints`): the code's row (vocab_size + 1 rows, the last
    for `none`) plus, with max_age > 1, the age's row. Its weight keeps nn.Embedding's name, so runs
    trained before ages existed load unchanged."""

    def __init__(self, vocab_size: int, dim: int, max_age: int = 1) -> None:
        super().__init__(vocab_size + 1, dim)
        self.age = nn.Embedding(max_age, dim) if max_age > 1 else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.age is None:
            return super().forward(ids)
        return super().forward(ids % self.num_embeddings) + self.age(ids // self.num_embeddings)


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
    vocab, shape = int(tokenizer.vocab_size), tuple(int(s) for s in tokenizer.token_shape)
    if vocab != cfg.vocab_size or shape != tuple(cfg.token_shape):
        raise DrivewmError(
            f"model.tokenizer: tokenizer {cfg.tokenizer_run or cfg.tokenizer['name']} has vocab_size={vocab}, "
            f"token_shape={list(shape)} but the world model is configured for vocab_size={cfg.vocab_size}, "
            f"token_shape={list(cfg.token_shape)}"
        )
    tokenizer.requires_grad_(False)
    return tokenizer.eval()
