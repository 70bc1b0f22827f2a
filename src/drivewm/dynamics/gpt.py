"""Autoregressive GPT world model over interleaved frame and action tokens (GAIA-1, DrivingGPT).

GAIA-1 (Hu et al. 2023, arXiv 2309.17080) and DrivingGPT (Chen et al. 2024, arXiv 2412.18607) model a
drive as one token sequence z_1, a_1, z_2, a_2, ... (z_t: the N scene tokens of frame t, a_t: the ego
action from t to t+1) with a causal transformer trained by next-token cross-entropy. Positions follow
DrivingGPT: frame-wise 1D rotary positions (every token of frame t, its action token included, has
position t) plus a learned in-frame position embedding. Actions: one continuous action token per frame
(a small MLP of the conditioning vector, see `conditions.py`) instead of DrivingGPT's 3 x 128 binned
action tokens: the action is an input here, never predicted, so binning it would only lose precision.
Sampling draws token by token with temperature / top-k, using the backbone's KV cache (or SSM state)
so each new token costs one step instead of a pass over the whole prefix.

With `warp_prior` the input that predicts scene token j of frame t also carries the embedding of token j
of the ego-warped frame t-1 (`TokenWorldModel.make_prior`), so each prediction sees its own location's
prior while the sequence stays causal: the prior is built from earlier frames and the known ego motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import build_backbone
from drivewm.dynamics.base import TokenWorldModel, WarpPrior, WorldModelConfig, temporal_backbone
from drivewm.dynamics.sampling import SamplingConfig, sample_logits
from drivewm.dynamics.schedule import mask_input_tokens
from drivewm.registry import register_model


@dataclass(kw_only=True)
class GPTWorldConfig(WorldModelConfig):
    name: str = "gpt_world"
    """Registered model name."""


def frame_positions(frames: int, per_frame: int, device: torch.device | str | None = None) -> Tensor:
    """Frame-wise 1D positions: every one of the per_frame tokens of frame t gets position t -> [frames*per_frame]."""
    return torch.arange(frames, device=device).repeat_interleave(per_frame)


class GPTWorldModel(TokenWorldModel):
    def __init__(self, cfg: GPTWorldConfig) -> None:
        super().__init__(cfg)
        d, n = cfg.dim, self.tokens_per_frame
        self.rollout_window = cfg.max_frames - 1  # the new frame's tokens take the last frame's positions
        # One more row with input masking: the [MASK] input, id vocab_size (never predicted).
        self.mask_id = cfg.vocab_size
        self.tok_emb = nn.Embedding(cfg.vocab_size + (cfg.input_mask_ratio > 0), d)
        self.action_emb = nn.Sequential(nn.Linear(self.action_dim, d), nn.GELU(), nn.Linear(d, d))
        # In-frame positions 0..N-1 for scene tokens, N for the frame's action token.
        self.inframe_pos = nn.Parameter(torch.randn(n + 1, d) * 0.02)
        self.none_id = cfg.vocab_size
        self.prior_emb = nn.Embedding(cfg.vocab_size + 1, d) if cfg.warp_prior else None  # + none
        self.backbone = build_backbone(temporal_backbone(cfg, dim=d, depth=cfg.depth, max_len=cfg.max_frames + 1))
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)

    # --- sequence construction ------------------------------------------------------------------
    def embed_frames(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> Tensor:
        """tokens [B, T, h, w], cond [B, T, A] (, prior of T frames with warp_prior) -> interleaved
        embeddings [B, T*(N+1), D]."""
        z = self.tok_emb(tokens.flatten(2))  # [B, T, N, D]
        a = self.action_emb(cond)[:, :, None]  # [B, T, 1, D]
        x = torch.cat([z, a], 2) + self.inframe_pos  # [B, T, N+1, D]
        if self.prior_emb is not None:
            x = x + self.prior_emb(self.prior_stream(prior, tokens.shape[1]))
        return x.flatten(1, 2)

    def prior_stream(self, prior: WarpPrior | None, frames: int) -> Tensor:
        """Prior ids [B, T, N+1] aligned with the inputs: the input that predicts a scene token carries that
        token's ego-warped prior (frame 0 and action targets: none)."""
        if prior is None or prior.ids.shape[1] < frames:
            raise ValueError(f"model.warp_prior: need the prior of all {frames} frames")
        nxt = prior.ids[:, :frames].flatten(2)  # [B, T, N]: priors of frames 1..T
        own = prior.by_frame(frames, self.none_id).flatten(2)  # [B, T, N]: frame t's own priors
        none = torch.full_like(nxt[:, :, :1], self.none_id)
        # z_t[j] predicts z_t[j+1]; z_t[N-1] predicts the action slot; a_t predicts z_{t+1}[0].
        return torch.cat([own[:, :, 1:], none, nxt[:, :, :1]], 2)

    def forward_logits(self, x: Tensor, frames: int) -> Tensor:
        """Embeddings [B, L, D] of a prefix spanning `frames` frames -> next-token logits [B, L, V]."""
        pos = frame_positions(frames, self.tokens_per_frame + 1, x.device)[: x.shape[1]]
        return self.head(self.backbone(x, positions=pos))

    def loss_tokens(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
        if t > self.cfg.max_frames:
            raise ValueError(f"window of {t} frames exceeds model.max_frames={self.cfg.max_frames}")
        n = self.tokens_per_frame
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:  # DrivingWorld's masking; targets stay the true ids
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        logits = self.forward_logits(self.embed_frames(inputs, cond, prior), t)  # [B, T(N+1), V]
        # Targets: the next token wherever it is a scene token; action slots (continuous inputs) are ignored.
        target = torch.cat([tokens.flatten(2), torch.full_like(tokens[:, :, :1, 0], -100)], 2).flatten(1)
        logits, target = logits[:, :-1], target[:, 1:]  # position p predicts token p+1
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1), ignore_index=-100)
        with torch.no_grad():
            keep = target != -100
            acc = (logits.argmax(-1)[keep] == target[keep]).float().mean()
            # Accuracy on the last frame alone: the forecasting-relevant part.
            last = logits[:, -n:].argmax(-1) == target[:, -n:]
        return {"loss": loss, "token_acc": acc, "last_frame_acc": last.float().mean()}

    # --- sampling ---------------------------------------------------------------------------------
    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None, use_cache: bool = True) -> Tensor:
        """One frame, token by token: with `use_cache` the prefix runs once and each token is one backbone
        step; without it each token recomputes the whole prefix (the reference the cache must equal)."""
        cond = cond[:, :-1]  # the new frame's own action token is never an input here
        tc, n = window.shape[1], self.tokens_per_frame
        prefix = self.embed_frames(window, cond, prior)  # [B, Tc(N+1), D]
        extra = self._new_frame_inputs(prior)  # [B or 1, N, D]
        pos = torch.tensor([tc], device=prefix.device)
        new: list[Tensor] = []
        for j in range(n):
            if not use_cache:
                x = torch.cat([prefix, self.tok_emb(torch.stack(new, 1)) + extra[:, :j]], 1) if new else prefix
                logits = self.forward_logits(x, tc + 1)[:, -1]  # [B, V]
            else:
                if j == 0:  # the last action token predicts the first new token
                    out, state = self.backbone.prefill(prefix, positions=frame_positions(tc, n + 1, prefix.device))
                else:
                    x = (self.tok_emb(new[-1]) + extra[:, j - 1])[:, None]  # [B, 1, D]
                    out, state = self.backbone.step(x, state, positions=pos)
                logits = self.head(out[:, -1])  # [B, V]
            new.append(sample_logits(logits, sampling, generator))  # [B]
        return torch.stack(new, 1).reshape(window.shape[0], *self.token_shape)

    def _new_frame_inputs(self, prior: WarpPrior | None) -> Tensor:
        """In-frame inputs added to scene token j of the new frame: its position, plus (warp_prior) the
        prior of token j+1, which that input predicts -> [B or 1, N, D]."""
        pos = self.inframe_pos[None, : self.tokens_per_frame]
        if self.prior_emb is None:
            return pos
        ids = prior.ids[:, -1].flatten(1)  # [B, N]: the new frame's priors
        ids = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], self.none_id)], 1)
        return pos + self.prior_emb(ids)


@register_model("gpt_world", GPTWorldConfig, kind="world")
def build_gpt_world(cfg: GPTWorldConfig) -> GPTWorldModel:
    return GPTWorldModel(cfg)
