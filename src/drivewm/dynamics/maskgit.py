"""MaskGIT discrete diffusion world model, with MaskGIT's and Copilot4D's samplers and training objectives.

Copilot4D (Zhang et al. 2023, arXiv 2311.01017; no official code: this follows the paper's text, its
Algorithms 1 and 2 and Section 3) conditions on past frames and actions and denoises future frames' tokens
with MaskGIT (Chang et al. 2022, arXiv 2202.04200; official code google-research/maskgit). A corrupted frame
has ceil(cos(u pi/2) N) tokens masked and, as Copilot4D adds, up to eta = 20 % of the rest replaced by
random codes (`schedule.corrupt_tokens`); cross-entropy with label smoothing 0.1 on every token of a
denoised frame, so the model both fills masks and corrects wrong tokens.

Training objectives (model.objective):
- 'copilot4d': Copilot4D's mix, per clip: future prediction (50 %: the frames after a random split are
  corrupted and denoised, those before it are clean context), joint denoising of past and future (40 %:
  every frame corrupted and denoised) and individual frame denoising (10 %: one frame denoised without its
  past or actions, the unconditional model that classifier-free guidance uses); `task_mix`.
- 'one_frame': drivewm's own: one target frame per clip, its past clean, its conditioning dropped with
  probability `cond_drop_prob`.

Samplers (model.sampler), both starting from a fully masked frame, drawing every token each step
(`sampling`) and ranking draws by the model's own log-probability plus Gumbel noise scaled by
choice_temperature * k / K at iteration k = K-1, ..., 0 (MaskGIT writes it choice_temperature * (1 - (s+1)/S)):
- 'maskgit': google-research/maskgit, maskgit/libml/parallel_decode.py (commit
  1db23594e1bd328ee78eadcd148a19281cd0f5b8), ported line by line: decoded tokens stay, each step masks again
  `schedule.maskgit_mask_len` tokens (floor(cos((s+1)/S pi/2) N), at least 1, at most all but one),
  choice_temperature 4.5.
- 'copilot4d': Algorithm 2: the draw x~_0 covers every position, decoded positions get confidence +inf, and
  x_k takes x~_0 on the top M = ceil(gamma(k/K) N) positions (`schedule.copilot4d_num_fixed`), so the
  decoded tokens are re-sampled at every step while staying decoded; Gumbel scale k/K (choice_temperature 1).

Classifier-free guidance as Copilot4D writes it: logits = cond + w (cond - uncond), so w = 0 is the plain
conditional model (and runs no unconditional pass); for w != 0 both terms come from one network pass over
the batch doubled into conditional and unconditional rows.

Decoding cost: the context frames run through the network once per frame (their temporal states are
kept, `st_net.TemporalCache`), then each step runs only the frame being decoded.

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

from drivewm.dynamics.base import TokenWorldModel, WorldModelConfig
from drivewm.dynamics.warp_prior import WarpPrior
from drivewm.dynamics.sampling import SamplingConfig, sample_with_logprob
from drivewm.dynamics.schedule import copilot4d_num_fixed, corrupt_tokens, maskgit_mask_len, mask_input_tokens
from drivewm.dynamics.st_net import SpatioTemporalNet, TemporalCache
from drivewm.registry import register_model


TRAIN_PASSES = ("auto", "cut", "whole")
SAMPLERS = ("maskgit", "copilot4d")
OBJECTIVES = ("one_frame", "copilot4d")


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
    objective: str = "one_frame"
    """Training objective: 'copilot4d' (Copilot4D's mix of future prediction, joint past-and-future denoising and
    individual frame denoising, `task_mix`) or 'one_frame' (one target frame per clip, its past clean)."""
    task_mix: list[float] = field(default_factory=lambda: [0.5, 0.4, 0.1])
    """objective 'copilot4d': probabilities of future prediction, joint denoising and individual frame
    denoising (Copilot4D: 50 / 40 / 10 %); the last is the unconditional training of guidance."""
    cond_drop_prob: float = 0.1
    """objective 'one_frame': probability of training a clip without its past frames and actions
    (classifier-free guidance); 'copilot4d' trains the unconditional model by its individual frame task (0)."""
    guidance_weight: float = 0.0
    """Guidance weight w at sampling, as Copilot4D writes it: logits = cond + w (cond - uncond); 0 = the
    conditional model, -1 = the unconditional one."""
    sampler: str = "maskgit"
    """Parallel decoding: 'maskgit' (MaskGIT's parallel_decode: decoded tokens stay) or 'copilot4d'
    (Copilot4D's Algorithm 2: decoded tokens are re-sampled each step, M = ceil(gamma(k/K) N) decoded)."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy (Copilot4D: 0.1)."""
    choice_temperature: float = 4.5
    """Scale of the Gumbel noise on token confidences, times k/K at iteration k = K-1..0 (MaskGIT: 4.5;
    Copilot4D's Algorithm 2: 1)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_k=3))
    """Token sampling of each decoding step (Copilot4D: top-3)."""
    train_pass: str = "auto"
    """How training runs the network on clips with different target frames, both exact: 'cut' (one pass per
    target frame over the clips cut after it: fewer FLOPs), 'whole' (one pass over the whole clips: fewer
    kernel launches), or 'auto' (cut on a CPU, whole on a GPU). objective 'copilot4d' always runs whole clips."""

    @staticmethod
    def upgrade(data: dict) -> list[str]:
        """WorldModelConfig.upgrade, and `guidance` (logits = uncond + g (cond - uncond)) becomes Copilot4D's
        `guidance_weight` w = g - 1 (logits = cond + w (cond - uncond)): the same guided logits."""
        changed = WorldModelConfig.upgrade(data)
        if "guidance" in data:
            data["guidance_weight"] = float(data.pop("guidance")) - 1.0
            changed.append("guidance")
        return changed


def guided_logits(cond: Tensor, uncond: Tensor, w: float) -> Tensor:
    """Copilot4D's cond + w (cond - uncond), as the lerp from uncond to cond by 1 + w: exactly cond at w = 0 and
    exactly uncond at w = -1."""
    return torch.lerp(uncond, cond, 1.0 + w)


class MaskGITWorldModel(TokenWorldModel):
    def __init__(self, cfg: MaskGITWorldConfig) -> None:
        super().__init__(cfg)
        if cfg.steps < 1:
            raise ValueError(f"steps must be >= 1, got {cfg.steps}")
        if cfg.train_pass not in TRAIN_PASSES:
            raise ValueError(f"model.train_pass must be one of {', '.join(TRAIN_PASSES)}, got {cfg.train_pass!r}")
        if not 0.0 <= cfg.eta < 1.0 or not 0.0 <= cfg.cond_drop_prob < 1.0:
            raise ValueError(f"eta and cond_drop_prob must be in [0, 1), got {cfg.eta}, {cfg.cond_drop_prob}")
        if cfg.sampler not in SAMPLERS:
            raise ValueError(f"model.sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
        if cfg.objective not in OBJECTIVES:
            raise ValueError(f"model.objective must be one of {', '.join(OBJECTIVES)}, got {cfg.objective!r}")
        if cfg.objective == "copilot4d":
            if len(cfg.task_mix) != 3 or min(cfg.task_mix) < 0 or abs(sum(cfg.task_mix) - 1.0) > 1e-6:
                raise ValueError(f"model.task_mix must be 3 probabilities summing to 1, got {cfg.task_mix}")
            if cfg.cond_drop_prob != 0.0:
                raise ValueError(f"model.cond_drop_prob={cfg.cond_drop_prob}: objective 'copilot4d' trains the "
                                 f"unconditional model by its individual frame task (task_mix); set it to 0")
            if cfg.warp_prior:
                raise ValueError("model.warp_prior: objective 'copilot4d' denoises frames whose prior would be "
                                 "made from their clean predecessors; use objective 'one_frame'")
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
        t = tokens.shape[1]
        if not 1 < t <= self.cfg.max_frames:
            raise ValueError(f"window of {t} frames: need 2..model.max_frames={self.cfg.max_frames}")
        if self.cfg.objective == "copilot4d":
            return self._loss_copilot4d(tokens, cond)
        return self._loss_one_frame(tokens, cond, prior)

    def _loss_copilot4d(self, tokens: Tensor, cond: Tensor) -> dict[str, Tensor]:
        """Copilot4D's training mix (arXiv 2311.01017, Section 3 and Algorithm 1), one task per clip:
        0 future prediction: frames >= a split p ~ U{1..T-1} corrupted (each frame its own draw of
          Algorithm 1's mask and noise), frames < p clean context;
        1 joint denoising of past and future: every frame corrupted;
        2 individual frame denoising: one frame k ~ U{0..T-1} corrupted, its past [MASK] and its actions the
          null token, as the unconditional rows of guidance see it at sampling.
        The loss is the cross-entropy over the tokens of the denoised frames; one pass over the whole clips
        (the network is causal in time, so a frame's logits never see later frames)."""
        b, t = tokens.shape[:2]
        dev = tokens.device
        mix = torch.tensor(self.cfg.task_mix, dtype=torch.float, device=dev)
        task = torch.multinomial(mix.expand(b, 3), 1).squeeze(1)  # [B]
        frame = torch.arange(t, device=dev)[None]  # [1, T]
        split = torch.randint(1, t, (b,), device=dev)
        single = torch.randint(0, t, (b,), device=dev)
        denoised = torch.where((task == 0)[:, None], frame >= split[:, None],
                               torch.where((task == 1)[:, None], True, frame == single[:, None]))  # [B, T]
        corrupted, masked, _ = corrupt_tokens(tokens.flatten(2).flatten(0, 1), self.mask_id, self.vocab_size,
                                              self.cfg.eta)  # [B*T, N] each: every frame its own draw
        inputs = torch.where(denoised[:, :, None, None], corrupted.view_as(tokens), tokens)
        if self.training and self.cfg.input_mask_ratio > 0:  # DrivingWorld's masking, on the clean context
            inputs = mask_input_tokens(inputs, self.cfg.input_mask_ratio, self.mask_id, where=~denoised)
        uncond = task == 2
        logits = self.denoise_logits(inputs, cond[:, :t], uncond, target=single)  # [B, T, h, w, V]
        sel = denoised.flatten()  # frames in the loss
        logits = logits.flatten(0, 1)[sel].reshape(-1, self.vocab_size)  # [F*N, V]
        target = tokens.flatten(0, 1)[sel].reshape(-1)
        loss = F.cross_entropy(logits, target, label_smoothing=self.cfg.label_smoothing)
        with torch.no_grad():
            hit = logits.argmax(-1) == target
            was_masked = masked.view(b * t, -1)[sel].reshape(-1)
            masked_acc = (hit & was_masked).sum() / was_masked.sum().clamp(min=1)
        return {"loss": loss, "token_acc": hit.float().mean(), "masked_acc": masked_acc}

    def _loss_one_frame(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
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
    def _guided_rows(self, window: Tensor, cond: Tensor, guidance_weight: float, prior: WarpPrior | None = None
                     ) -> tuple[Tensor, Tensor, Tensor, WarpPrior | None]:
        """Network inputs for `guidance_weight`: the batch itself (w = 0), or doubled to [conditional;
        unconditional] rows so that both terms of classifier-free guidance come from one network pass.

        window [B, T, h, w], cond [B, T', A], prior of T-1 frames or None -> (window, cond, drop [B or 2B]
        bool, prior)."""
        b = window.shape[0]
        if guidance_weight == 0.0:  # cond + 0 (cond - uncond) is exactly cond (guided_logits is a lerp)
            return window, cond, torch.zeros(b, dtype=torch.bool, device=window.device), prior
        drop = torch.arange(2 * b, device=window.device) >= b
        if prior is not None:
            prior = WarpPrior(torch.cat([prior.ids, prior.ids]))
        return torch.cat([window, window]), torch.cat([cond, cond]), drop, prior

    @staticmethod
    def _guide(logits: Tensor, guidance_weight: float) -> Tensor:
        """Logits of _guided_rows' batch -> guided logits of the original batch."""
        if guidance_weight == 0.0:
            return logits
        cond_logits, uncond_logits = logits.chunk(2)
        return guided_logits(cond_logits, uncond_logits, guidance_weight)

    def context_cache(self, window: Tensor, cond: Tensor, guidance_weight: float, prior: WarpPrior | None = None
                      ) -> tuple[TemporalCache, Tensor, Tensor | None]:
        """Run the context frames of window [B, T, h, w] (its last frame is the one being decoded) once.

        Returns the temporal states (TemporalCache in step mode), the new frame's ego token [B', 1, D] and its
        prior ids [B', 1, h, w] (or None), for the rows of `_guided_rows` (B' = 2B when guidance_weight != 0:
        conditional rows, then unconditional ones)."""
        window, cond, drop, prior = self._guided_rows(window, cond, guidance_weight, prior)
        tokens, ego, prior_ids = self._condition(window, cond, drop, prior)
        ctx_ids, new_ids = (prior_ids[:, :-1], prior_ids[:, -1:]) if prior_ids is not None else (None, None)
        return self.net.record(tokens[:, :-1], ego[:, :-1], ctx_ids), ego[:, -1:], new_ids

    def frame_logits(self, window: Tensor, cond: Tensor, guidance_weight: float,
                     cache: tuple[TemporalCache, Tensor, Tensor | None] | None = None,
                     prior: WarpPrior | None = None) -> Tensor:
        """Guided logits [B, N, V] of the last frame of window [B, T, h, w]; with `cache` (from context_cache
        with the same guidance_weight) only the last frame runs through the network."""
        if cache is None:
            window, cond, drop, prior = self._guided_rows(window, cond, guidance_weight, prior)
            logits = self.denoise_logits(window, cond, drop, prior)[:, -1].flatten(1, 2)
        else:
            new = window[:, -1:]  # [B, 1, h, w]
            new = new if guidance_weight == 0.0 else torch.cat([new, new])
            logits = self.net(new, cache[1], cache[0], prior=cache[2])[:, -1].flatten(1, 2)
        return self._guide(logits, guidance_weight)

    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None, steps: int | None = None,
                   guidance_weight: float | None = None, use_cache: bool = True) -> Tensor:
        """The next frame's tokens [B, h, w] in `steps` passes (default model.steps) with guidance weight
        `guidance_weight` (default model.guidance_weight), from a fully masked frame after the window."""
        steps = self.cfg.steps if steps is None else steps
        w = self.cfg.guidance_weight if guidance_weight is None else guidance_weight
        b, n = window.shape[0], self.tokens_per_frame
        x = torch.full((b, n), self.mask_id, dtype=torch.long, device=window.device)
        cache = None
        if use_cache:  # the context runs once; each decoding step then costs one frame
            cache = self.context_cache(torch.cat([window, x.view(b, 1, *self.token_shape)], 1), cond, w, prior)
        for s in range(steps):
            frames = torch.cat([window, x.view(b, 1, *self.token_shape)], 1)
            logits = self.frame_logits(frames, cond, w, cache, prior)  # [B, N, V]
            x = decode_step(x, logits, s, steps, mask_id=self.mask_id, sampler=self.cfg.sampler, sampling=sampling,
                            choice_temperature=self.cfg.choice_temperature, generator=generator)
        return x.view(b, *self.token_shape)


def decode_step(x: Tensor, logits: Tensor, step: int, steps: int, *, mask_id: int, sampler: str,
                sampling: SamplingConfig, choice_temperature: float, generator: torch.Generator | None) -> Tensor:
    """One parallel decoding step: tokens x [B, N] (mask_id where masked) and the model's logits [B, N, V] at
    step `step` (0-based) of `steps` -> the tokens after it (see the module docstring for the two samplers).

    Confidence: the draw's log-probability under the model (`sample_with_logprob`) plus Gumbel noise scaled by
    choice_temperature * k / K, k = steps - 1 - step (MaskGIT's choice_temperature * (1 - (step + 1) / steps));
    tokens decoded before this step get +inf."""
    b, n = x.shape
    masked = x == mask_id  # [B, N]
    sampled, conf = sample_with_logprob(logits, sampling, generator)  # [B, N] each
    k = steps - 1 - step
    scale = choice_temperature * k / steps
    if scale > 0:
        u = torch.rand(b, n, generator=generator, device=x.device).clamp(1e-20, 1.0)
        conf = conf + scale * -torch.log(-torch.log(u))
    conf = conf.masked_fill(~masked, float("inf"))
    if sampler == "copilot4d":
        # Algorithm 2: x_k <- x~_0 on the top-M indices of l_k, every other position [MASK].
        keep = conf.topk(copilot4d_num_fixed(k, steps, n), dim=-1).indices  # [B, M]
        return torch.full_like(x, mask_id).scatter(-1, keep, sampled.gather(-1, keep))
    sampled = torch.where(masked, sampled, x)  # parallel_decode: "Just updates the masked tokens."
    unknown = masked.sum(-1)
    if bool((unknown != unknown[0]).any()):
        raise ValueError(f"decode_step: every row must hold the same number of masked tokens, got {unknown.tolist()}")
    mask_len = maskgit_mask_len(step, steps, n, int(unknown[0]))
    if mask_len == 0:
        return sampled
    lowest = conf.topk(mask_len, dim=-1, largest=False).indices  # [B, mask_len]
    return sampled.scatter(-1, lowest, mask_id)


@register_model("maskgit_world", MaskGITWorldConfig, kind="world")
def build_maskgit_world(cfg: MaskGITWorldConfig) -> MaskGITWorldModel:
    return MaskGITWorldModel(cfg)
