"""Copilot4D-style discrete diffusion world model: MaskGIT decoding of each future frame.

Copilot4D (Zhang et al. 2023, arXiv 2311.01017) conditions on past frames and actions and denoises the
next frame's tokens with MaskGIT (Chang et al. 2022, arXiv 2202.04200): training masks ceil(cos(u pi/2) N)
tokens of the target frame and, as Copilot4D adds, replaces up to eta = 20 % of the remaining tokens by
random codes (`schedule.corrupt_tokens`); cross-entropy with label smoothing 0.1 on every token of the
target frame, so the model both fills masks and corrects wrong tokens. Decoding starts from a fully
masked frame and in S steps samples all masked tokens in parallel (top-k sampling), then keeps the most
confident and re-masks floor(cos((s+1)/S pi/2) N) of them (confidence = log-probability plus Gumbel noise
annealed as in MaskGIT). Classifier-free guidance: during training the conditioning (past frames and
actions) is dropped with probability `cond_drop_prob`; at sampling logits = uncond + w (cond - uncond),
so w = 1 is the plain conditional model and w = 0 the unconditional one; for w != 1 both terms come
from one network pass over the batch doubled into conditional and unconditional rows.

Decoding cost: the context frames run through the network once per frame (their temporal states are
kept, `st_net.TemporalCache`), then each step runs only the frame being decoded; each step draws the
masked tokens and their confidences with one top-k over the vocabulary (`sample_with_logprob`).

The network is the same multi-scale spatio-temporal transformer as OccWorld's (`st_net.py`), with causal
temporal mixing: frame t's output denoises frame t from frames < t and its own corrupted tokens; frame
t's ego token carries the action/motion of the transition t-1 -> t.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.dynamics.base import TokenWorldModel, WarpPrior, WorldModelConfig
from drivewm.dynamics.sampling import SamplingConfig, sample_with_logprob
from drivewm.dynamics.schedule import corrupt_tokens, mask_input_tokens, num_masked_after_step
from drivewm.dynamics.st_net import SpatioTemporalNet, TemporalCache
from drivewm.registry import register_model


TRAIN_PASSES = ("auto", "cut", "whole")


@dataclass(kw_only=True)
class MaskGITWorldConfig(WorldModelConfig):
    name: str = "maskgit_world"
    """Registered model name."""
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Width multiplier of each scale of the U-Net."""
    steps: int = 8
    """Parallel decoding steps per frame (Copilot4D: 10)."""
    eta: float = 0.2
    """Up to this fraction of unmasked target tokens is replaced by random codes in training (Copilot4D: 0.2)."""
    cond_drop_prob: float = 0.1
    """Probability of training a clip without its past frames and actions (classifier-free guidance)."""
    guidance: float = 1.0
    """Guidance scale w at sampling: logits = uncond + w (cond - uncond); 1 = conditional, 0 = unconditional."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy (Copilot4D: 0.1)."""
    choice_temperature: float = 4.5
    """Scale of the Gumbel noise on token confidences, annealed linearly to 0 over the steps (MaskGIT)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_k=3))
    """Token sampling of each decoding step (Copilot4D: top-3)."""
    train_pass: str = "auto"
    """How training runs the network on clips with different target frames, both exact: 'cut' (one pass per
    target frame over the clips cut after it: fewer FLOPs), 'whole' (one pass over the whole clips: fewer
    kernel launches), or 'auto' (cut on a CPU, whole on a GPU)."""


def guided_logits(cond: Tensor, uncond: Tensor, w: float) -> Tensor:
    """uncond + w (cond - uncond), exact at w = 0 (uncond) and w = 1 (cond) thanks to torch.lerp."""
    return torch.lerp(uncond, cond, w)


class MaskGITWorldModel(TokenWorldModel):
    def __init__(self, cfg: MaskGITWorldConfig) -> None:
        super().__init__(cfg)
        if cfg.steps < 1:
            raise ValueError(f"steps must be >= 1, got {cfg.steps}")
        if cfg.train_pass not in TRAIN_PASSES:
            raise ValueError(f"model.train_pass must be one of {', '.join(TRAIN_PASSES)}, got {cfg.train_pass!r}")
        if not 0.0 <= cfg.eta < 1.0 or not 0.0 <= cfg.cond_drop_prob < 1.0:
            raise ValueError(f"eta and cond_drop_prob must be in [0, 1), got {cfg.eta}, {cfg.cond_drop_prob}")
        self.rollout_window = cfg.max_frames - 1  # the frame being decoded is the window's last
        self.mask_id = cfg.vocab_size
        self.ego_emb = nn.Sequential(nn.Linear(self.action_dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.null_ego = nn.Parameter(torch.zeros(cfg.dim))  # ego token without conditioning (frame 0, CFG)
        self.net = SpatioTemporalNet(cfg)

    def _condition(self, tokens: Tensor, cond: Tensor, uncond: Tensor | None,
                   prior: WarpPrior | None = None, target: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Network inputs (token ids, ego tokens [B, T, D], prior ids or None) of a window, with conditioning
        dropped where uncond. prior: of >= T-1 frames; frame t's input carries the prior made from frame t-1.
        target [B]: the frame each clip denoises (default: the last); the frames before it are its past."""
        b, t = tokens.shape[:2]
        ego = self.ego_emb(cond[:, : t - 1])  # [B, T-1, D]: transition t-1 -> t enters frame t
        ego = torch.cat([self.null_ego.expand(b, 1, -1), ego], 1)  # [B, T, D]
        prior_ids = None
        if self.cfg.warp_prior:
            if prior is None:
                raise ValueError("model.warp_prior: no prior given")
            prior_ids = prior.by_frame(t, self.mask_id)  # [B, T, h, w]
        if uncond is not None and bool(uncond.any()):
            # Unconditional: the past frames become [MASK], every ego token the null token, no priors.
            if target is None:
                target = torch.full((b,), t - 1, device=tokens.device)
            past = torch.arange(t, device=tokens.device)[None] < target[:, None]  # [B, T]
            tokens = torch.where((uncond[:, None] & past)[:, :, None, None], self.mask_id, tokens)
            ego = torch.where(uncond[:, None, None], self.null_ego.expand(b, t, -1), ego)
            if prior_ids is not None:
                prior_ids = torch.where(uncond[:, None, None, None], self.mask_id, prior_ids)
        return tokens, ego, prior_ids

    def denoise_logits(self, tokens: Tensor, cond: Tensor, uncond: Tensor | None = None,
                       prior: WarpPrior | None = None, target: Tensor | None = None) -> Tensor:
        """tokens [B, T, h, w] (last frames may hold [MASK]), cond [B, >=T-1, A] (frame t: transition t -> t+1),
        uncond [B] bool (drop conditioning), prior of >= T-1 frames (model.warp_prior) -> logits
        [B, T, h, w, V] of each frame's clean tokens; target [B] as in `_condition`."""
        tokens, ego, prior_ids = self._condition(tokens, cond, uncond, prior, target)
        return self.net(tokens, ego, prior=prior_ids)

    def loss_tokens(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
        if not 1 < t <= self.cfg.max_frames:
            raise ValueError(f"window of {t} frames: need 2..model.max_frames={self.cfg.max_frames}")
        dev = tokens.device
        # One target frame k per clip; frames < k are clean context, frames > k are invisible (causal).
        k = torch.randint(1, t, (b,), device=dev)
        target = tokens[torch.arange(b, device=dev), k]  # [B, h, w]
        corrupted, masked, _ = corrupt_tokens(target.flatten(1), self.mask_id, self.vocab_size, self.cfg.eta)
        inputs = tokens.clone()
        if self.training and self.cfg.input_mask_ratio > 0:  # DrivingWorld's masking, on the context frames
            context = torch.arange(t, device=dev)[None] < k[:, None]  # [B, T]
            inputs = mask_input_tokens(inputs, self.cfg.input_mask_ratio, self.mask_id, where=context)
        inputs[torch.arange(b, device=dev), k] = corrupted.view_as(target)
        uncond = torch.rand(b, device=dev) < self.cfg.cond_drop_prob
        logits = self._logits_at(inputs, cond, uncond, k, prior)  # [B, h, w, V]
        loss = F.cross_entropy(
            logits.reshape(-1, self.vocab_size), target.reshape(-1), label_smoothing=self.cfg.label_smoothing
        )
        with torch.no_grad():
            hit = (logits.argmax(-1) == target).flatten(1)
            masked_acc = (hit & masked).sum() / masked.sum().clamp(min=1)
        return {"loss": loss, "token_acc": hit.float().mean(), "masked_acc": masked_acc}

    def _logits_at(self, inputs: Tensor, cond: Tensor, uncond: Tensor, k: Tensor,
                   prior: WarpPrior | None = None) -> Tensor:
        """Logits of frame k[b] of each clip. The network is causal in time, so the frames after k[b] never
        reach it: one pass over the whole clips gives the same logits as passes over the clips cut after
        frame k[b]. The cut clips save the FLOPs of the unseen frames, which is what counts on a CPU; on a
        GPU the small per-k passes are launch-bound and one whole pass is faster (model.train_pass)."""
        b, t = inputs.shape[:2]
        whole = self.cfg.train_pass == "whole" or (self.cfg.train_pass == "auto" and inputs.device.type != "cpu")
        if whole:
            logits = self.denoise_logits(inputs, cond[:, :t], uncond, prior, target=k)  # [B, T, h, w, V]
            return logits[torch.arange(b, device=inputs.device), k]
        out = []
        for kk in k.unique().tolist():  # clips sharing a target index run as one batch
            rows = (k == kk).nonzero().squeeze(1)
            clip_prior = prior.rows(rows).window(0, kk) if prior is not None else None
            logits = self.denoise_logits(inputs[rows, : kk + 1], cond[rows, : kk + 1], uncond[rows], clip_prior)
            out.append((rows, logits[:, -1]))
        result = torch.empty(inputs.shape[0], *out[0][1].shape[1:], device=inputs.device, dtype=out[0][1].dtype)
        for rows, logits in out:
            result = result.index_copy(0, rows, logits)
        return result

    # --- decoding ---------------------------------------------------------------------------------
    def _guided_rows(self, window: Tensor, cond: Tensor, guidance: float, prior: WarpPrior | None = None
                     ) -> tuple[Tensor, Tensor, Tensor, WarpPrior | None]:
        """Network inputs for `guidance`: the batch itself (w = 1), or doubled to [conditional; unconditional]
        rows so that both terms of classifier-free guidance come from one network pass.

        window [B, T, h, w], cond [B, T', A], prior of T-1 frames or None -> (window, cond, drop [B or 2B]
        bool, prior)."""
        b = window.shape[0]
        if guidance == 1.0:  # uncond + 1 * (cond - uncond) is exactly cond (guided_logits is a lerp)
            return window, cond, torch.zeros(b, dtype=torch.bool, device=window.device), prior
        drop = torch.arange(2 * b, device=window.device) >= b
        if prior is not None:
            prior = WarpPrior(torch.cat([prior.ids, prior.ids]))
        return torch.cat([window, window]), torch.cat([cond, cond]), drop, prior

    @staticmethod
    def _guide(logits: Tensor, guidance: float) -> Tensor:
        """Logits of _guided_rows' batch -> guided logits of the original batch."""
        if guidance == 1.0:
            return logits
        cond_logits, uncond_logits = logits.chunk(2)
        return guided_logits(cond_logits, uncond_logits, guidance)

    def context_cache(self, window: Tensor, cond: Tensor, guidance: float, prior: WarpPrior | None = None
                      ) -> tuple[TemporalCache, Tensor, Tensor | None]:
        """Run the context frames of window [B, T, h, w] (its last frame is the one being decoded) once.

        Returns the temporal states (TemporalCache in step mode), the new frame's ego token [B', 1, D] and its
        prior ids [B', 1, h, w] (or None), for the rows of `_guided_rows` (B' = 2B when guidance != 1:
        conditional rows, then unconditional ones)."""
        window, cond, drop, prior = self._guided_rows(window, cond, guidance, prior)
        tokens, ego, prior_ids = self._condition(window, cond, drop, prior)
        ctx_ids, new_ids = (prior_ids[:, :-1], prior_ids[:, -1:]) if prior_ids is not None else (None, None)
        return self.net.record(tokens[:, :-1], ego[:, :-1], ctx_ids), ego[:, -1:], new_ids

    def frame_logits(self, window: Tensor, cond: Tensor, guidance: float,
                     cache: tuple[TemporalCache, Tensor, Tensor | None] | None = None,
                     prior: WarpPrior | None = None) -> Tensor:
        """Guided logits [B, N, V] of the last frame of window [B, T, h, w]; with `cache` (from context_cache
        with the same guidance) only the last frame runs through the network."""
        if cache is None:
            window, cond, drop, prior = self._guided_rows(window, cond, guidance, prior)
            logits = self.denoise_logits(window, cond, drop, prior)[:, -1].flatten(1, 2)
        else:
            new = window[:, -1:]  # [B, 1, h, w]
            new = new if guidance == 1.0 else torch.cat([new, new])
            logits = self.net(new, cache[1], cache[0], prior=cache[2])[:, -1].flatten(1, 2)
        return self._guide(logits, guidance)

    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None, steps: int | None = None, guidance: float | None = None,
                   use_cache: bool = True) -> Tensor:
        """The next frame's tokens [B, h, w] in `steps` passes (default model.steps) with guidance scale
        `guidance` (default model.guidance), from a fully masked frame after the window."""
        steps = self.cfg.steps if steps is None else steps
        guidance = self.cfg.guidance if guidance is None else guidance
        b, n = window.shape[0], self.tokens_per_frame
        x = torch.full((b, n), self.mask_id, dtype=torch.long, device=window.device)
        cache = None
        if use_cache:  # the context runs once; each decoding step then costs one frame
            cache = self.context_cache(torch.cat([window, x.view(b, 1, *self.token_shape)], 1), cond, guidance,
                                       prior)
        for s in range(steps):
            masked = x == self.mask_id
            frames = torch.cat([window, x.view(b, 1, *self.token_shape)], 1)
            logits = self.frame_logits(frames, cond, guidance, cache, prior)  # [B, N, V]
            # The draw and its log-probability under the tempered, top-k filtered distribution.
            sampled, conf = sample_with_logprob(logits, sampling, generator)  # [B, N] each
            anneal = self.cfg.choice_temperature * (1.0 - (s + 1) / steps)
            if anneal > 0:
                u = torch.rand(b, n, generator=generator, device=x.device).clamp(1e-20, 1.0)
                conf = conf + anneal * -torch.log(-torch.log(u))
            conf = conf.masked_fill(~masked, float("inf"))  # decoded tokens stay
            x = torch.where(masked, sampled, x)
            remask = num_masked_after_step(s, steps, n)
            if remask > 0:
                lowest = conf.topk(remask, dim=-1, largest=False).indices  # [B, remask]
                x = x.scatter(-1, lowest, self.mask_id)
        return x.view(b, *self.token_shape)


@register_model("maskgit_world", MaskGITWorldConfig, kind="world")
def build_maskgit_world(cfg: MaskGITWorldConfig) -> MaskGITWorldModel:
    return MaskGITWorldModel(cfg)
