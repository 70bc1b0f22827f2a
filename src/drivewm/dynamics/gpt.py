"""Autoregressive GPT world model over interleaved frame and action tokens (GAIA-1, DrivingGPT).

GAIA-1 (Hu et al. 2023, arXiv 2309.17080) and DrivingGPT (Chen et al. 2024, arXiv 2412.18607) model a
drive as one token sequence z_1, a_1, z_2, a_2, ... (z_t: the N scene tokens of frame t, a_t: the ego
action from t to t+1) with a causal transformer trained by next-token cross-entropy. Positions follow
DrivingGPT: frame-wise 1D rotary positions (every token of frame t, its action tokens included, has
position t) plus a learned in-frame position embedding.

`model.actions` chooses what a_t is:
- 'condition' (drivewm's variant): one continuous token per frame, a small MLP of the conditioning vector
  (see `conditions.py`); an input only, never predicted.
- 'drivinggpt' (DrivingGPT as published; no official code is released, this follows the paper's text):
  the ego motion t -> t+1 (x, y, theta in frame t) as 3 discrete tokens, 128 bins each, each component
  with its own vocabulary after the scene codes (`tokenizers.actions.ActionTokenizer`); one head over the
  joint vocabulary predicts scene and action tokens alike, so the loss is the cross-entropy of every next
  token, action tokens included, and the model plans: after frame t it predicts a_t (`plan`).
- 'drivingworld': the same sequence with DrivingWorld's pose tokenizer (arXiv 2412.19505, official
  YvanYin/DrivingWorld: yaw, x, y tokens; `tokenizers.actions.PoseTokenizer`). DrivingWorld places the
  pose tokens of the motion t -> t+1 before frame t+1's image tokens, which is this order; its frame 0
  leading zero pose is left out.
With action tokens, rollouts condition on the given motion's tokens (action-conditioned generation) and
sampled scene tokens are drawn from the scene codes only.

Sampling draws token by token with temperature / top-k, using the backbone's KV cache (or SSM state)
so each new token costs one step instead of a pass over the whole prefix.

With `warp_prior` (condition actions only) the input that predicts scene token j of frame t also carries
the embedding of token j of the ego-warped frame t-1 (`TokenWorldModel.make_prior`), so each prediction
sees its own location's prior while the sequence stays causal: the prior is built from earlier frames and
the known ego motion. With `copy_prior` as well (drivewm's), the output mixes the head's distribution with the
prior's id by a learned per-position gate, as pointer-generator networks copy from their input (See et al. 2017,
arXiv 1704.04368): p(k) = g softmax(logits)_k + (1 - g) [k = prior id], g = sigmoid(w . h + b); copying the
ego-warped prior is one gate away and the head learns where the frame departs from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import build_backbone
from drivewm.conditions import motion_from_conditions
from drivewm.geometry import relative_steps
from drivewm.dynamics.base import TokenWorldModel, WorldModelConfig, temporal_backbone
from drivewm.dynamics.warp_prior import WarpPrior
from drivewm.dynamics.sampling import SamplingConfig, sample_logits
from drivewm.dynamics.schedule import mask_input_tokens
from drivewm.registry import register_model
from drivewm.tokenizers.actions import ActionTokenizer, ActionTokenizerConfig, PoseTokenizer, PoseTokenizerConfig

ACTIONS = ("condition", "drivinggpt", "drivingworld")


@dataclass(kw_only=True)
class GPTWorldConfig(WorldModelConfig):
    name: str = "gpt_world"
    """Registered model name."""
    actions: str = "condition"
    """How the ego motion enters the sequence: 'condition' (drivewm's: one continuous token per frame from the
    conditioning vector, input only), 'drivinggpt' (DrivingGPT: 3 predicted tokens x, y, theta from
    `action_tokens`) or 'drivingworld' (DrivingWorld's pose tokenizer, `pose_tokens`). Action tokens need
    condition='action_motion' (the motion they encode) and no warp_prior."""
    action_tokens: ActionTokenizerConfig = field(default_factory=ActionTokenizerConfig)
    """DrivingGPT's action bins (actions='drivinggpt')."""
    pose_tokens: PoseTokenizerConfig = field(default_factory=PoseTokenizerConfig)
    """DrivingWorld's pose bins (actions='drivingworld')."""
    copy_prior: bool = False
    """drivewm's, with warp_prior: mix each prediction with a copy of its prior's id by a learned gate of the
    hidden state (pointer-generator copying); the model outputs the mixture's log-probabilities."""


def frame_positions(frames: int, per_frame: int, device: torch.device | str | None = None) -> Tensor:
    """Frame-wise 1D positions: every one of the per_frame tokens of frame t gets position t -> [frames*per_frame]."""
    return torch.arange(frames, device=device).repeat_interleave(per_frame)


class GPTWorldModel(TokenWorldModel):
    def __init__(self, cfg: GPTWorldConfig) -> None:
        super().__init__(cfg)
        if cfg.actions not in ACTIONS:
            raise ValueError(f"model.actions must be one of {', '.join(ACTIONS)}, got {cfg.actions!r}")
        self.rollout_window = cfg.max_frames - 1  # the new frame's tokens take the last frame's positions
        if cfg.actions == "condition":
            self._init_condition_token(cfg)
        else:
            self._init_action_tokens(cfg)
        self.backbone = build_backbone(temporal_backbone(cfg, dim=cfg.dim, depth=cfg.depth, max_len=cfg.max_frames + 1))
        self.head = nn.Linear(cfg.dim, self.total_vocab, bias=False)
        if cfg.copy_prior and not cfg.warp_prior:
            raise ValueError("model.copy_prior copies the ego-warped prior's ids: needs model.warp_prior=true")
        self.copy_gate = nn.Linear(cfg.dim, 1) if cfg.copy_prior else None  # logit of g, the head's share

    def _init_condition_token(self, cfg: GPTWorldConfig) -> None:
        """drivewm's continuous action token: an MLP of the conditioning vector, an input only."""
        d, n = cfg.dim, self.tokens_per_frame
        self.action_tokenizer = None
        self.slots = 1
        self.total_vocab = cfg.vocab_size  # what the head predicts: scene codes
        # One more row with input masking: the [MASK] input, id vocab_size (never predicted).
        self.mask_id = cfg.vocab_size
        self.tok_emb = nn.Embedding(cfg.vocab_size + (cfg.input_mask_ratio > 0), d)
        self.action_emb = nn.Sequential(nn.Linear(self.action_dim, d), nn.GELU(), nn.Linear(d, d))
        # In-frame positions 0..N-1 for scene tokens, N for the frame's action token.
        self.inframe_pos = nn.Parameter(torch.randn(n + 1, d) * 0.02)
        self.none_id = cfg.vocab_size
        self.prior_emb = nn.Embedding(cfg.vocab_size + 1, d) if cfg.warp_prior else None  # + none

    def _init_action_tokens(self, cfg: GPTWorldConfig) -> None:
        """Action tokens: one joint vocabulary, scene codes then each action slot's bins; one head predicts both."""
        if cfg.condition != "action_motion":
            raise ValueError(f"model.actions={cfg.actions} tokenizes the ego motion: needs condition='action_motion'")
        if cfg.warp_prior:
            raise ValueError(f"model.warp_prior works with model.actions='condition' only, got {cfg.actions!r}")
        d, n = cfg.dim, self.tokens_per_frame
        self.action_tokenizer = (ActionTokenizer(cfg.action_tokens, cfg.vocab_size) if cfg.actions == "drivinggpt"
                                 else PoseTokenizer(cfg.pose_tokens, cfg.vocab_size))
        self.slots = len(self.action_tokenizer.slot_ranges)
        self.total_vocab = cfg.vocab_size + self.action_tokenizer.vocab_size  # what the head predicts
        self.mask_id = self.total_vocab  # the [MASK] input (input_mask_ratio > 0), never predicted
        self.tok_emb = nn.Embedding(self.total_vocab + (cfg.input_mask_ratio > 0), d)
        self.action_emb = None
        self.inframe_pos = nn.Parameter(torch.randn(n + self.slots, d) * 0.02)  # scene 0..N-1, action slots
        self.prior_emb = None

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

    def forward_logits(self, x: Tensor, frames: int, copy_ids: Tensor | None = None) -> Tensor:
        """Embeddings [B, L, D] of a prefix spanning `frames` frames -> next-token logits [B, L, V] (with
        copy_prior: the prior id each position predicts, `copy_ids` [B, L])."""
        return self.output(self.hidden(x, frames), copy_ids)

    def hidden(self, x: Tensor, frames: int) -> Tensor:
        """Embeddings [B, L, D] of a prefix spanning `frames` frames -> the backbone's states [B, L, D]."""
        pos = frame_positions(frames, self.tokens_per_frame + self.slots, x.device)[: x.shape[1]]
        return self.backbone(x, positions=pos)

    def output(self, h: Tensor, copy_ids: Tensor | None = None) -> Tensor:
        """Hidden states [..., D] -> logits [..., V]; with copy_prior the log-probabilities of the gated mixture
        g softmax(head(h)) + (1 - g) onehot(copy_ids), where `copy_ids` [...] holds none_id (no prior) the head
        alone."""
        logits = self.head(h)
        if self.copy_gate is None:
            return logits
        gate = self.copy_gate(h)  # [..., 1]
        head = logits.log_softmax(-1)
        mixed = F.logsigmoid(gate) + head
        has = copy_ids < self.cfg.vocab_size
        ids = torch.where(has, copy_ids, 0)[..., None]
        mixed = mixed.scatter(-1, ids, torch.logaddexp(mixed.gather(-1, ids), F.logsigmoid(-gate)))
        return torch.where(has[..., None], mixed, head)

    def loss_tokens(self, tokens: Tensor, cond: Tensor, prior: WarpPrior | None = None) -> dict[str, Tensor]:
        b, t = tokens.shape[:2]
        if t > self.cfg.max_frames:
            raise ValueError(f"window of {t} frames exceeds model.max_frames={self.cfg.max_frames}")
        if self.action_tokenizer is not None:
            return self._loss_action_tokens(tokens, cond)
        n = self.tokens_per_frame
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:  # DrivingWorld's masking; targets stay the true ids
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        copy_ids = self.prior_stream(prior, t).flatten(1) if self.copy_gate is not None else None
        logits = self.forward_logits(self.embed_frames(inputs, cond, prior), t, copy_ids)  # [B, T(N+1), V]
        # Targets: the next token wherever it is a scene token; action slots (continuous inputs) are ignored.
        target = torch.cat([tokens.flatten(2), torch.full_like(tokens[:, :, :1, 0], -100)], 2).flatten(1)
        logits, target = logits[:, :-1], target[:, 1:]  # position p predicts token p+1
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1), ignore_index=-100)
        with torch.no_grad():
            keep = target != -100
            acc = (logits.argmax(-1)[keep] == target[keep]).float().mean()
            # Accuracy on the last frame alone, the forecasting-relevant part: its N scene tokens are the targets
            # of the N positions before its action slot.
            last = logits[:, -n - 1 : -1].argmax(-1) == target[:, -n - 1 : -1]
        return {"loss": loss, "token_acc": acc, "last_frame_acc": last.float().mean()}

    # --- sampling ---------------------------------------------------------------------------------
    def next_frame(self, window: Tensor, cond: Tensor, prior: WarpPrior | None, *, sampling: SamplingConfig,
                   generator: torch.Generator | None, use_cache: bool = True) -> Tensor:
        """One frame, token by token: with `use_cache` the prefix runs once and each token is one backbone
        step; without it each token recomputes the whole prefix (the reference the cache must equal)."""
        cond = cond[:, :-1]  # the new frame's own action token is never an input here
        if self.action_tokenizer is not None:
            return self._next_frame_action_tokens(window, cond, sampling, generator, use_cache)
        tc, n = window.shape[1], self.tokens_per_frame
        prefix = self.embed_frames(window, cond, prior)  # [B, Tc(N+1), D]
        extra = self._new_frame_inputs(prior)  # [B or 1, N, D]
        copy_ids = prior.ids[:, -1].flatten(1) if self.copy_gate is not None else None  # [B, N]: the new frame's
        pos = torch.tensor([tc], device=prefix.device)
        new: list[Tensor] = []
        for j in range(n):
            copy_j = copy_ids[:, j] if copy_ids is not None else None
            if not use_cache:
                x = torch.cat([prefix, self.tok_emb(torch.stack(new, 1)) + extra[:, :j]], 1) if new else prefix
                h = self.hidden(x, tc + 1)[:, -1]  # [B, D]
            else:
                if j == 0:  # the last action token predicts the first new token
                    out, state = self.backbone.prefill(prefix, positions=frame_positions(tc, n + 1, prefix.device))
                else:
                    x = (self.tok_emb(new[-1]) + extra[:, j - 1])[:, None]  # [B, 1, D]
                    out, state = self.backbone.step(x, state, positions=pos)
                h = out[:, -1]  # [B, D]
            logits = self.output(h, copy_j)  # [B, V]
            new.append(sample_logits(logits, sampling, generator))  # [B]
        return torch.stack(new, 1).reshape(window.shape[0], *self.token_shape)

    # --- action tokens (model.actions 'drivinggpt' / 'drivingworld') -----------------------------------
    def action_ids(self, cond: Tensor) -> Tensor:
        """'action_motion' conditions [B, T, 5] -> action tokens [B, T, S] of each motion t -> t+1 (joint-vocabulary
        ids, slot order)."""
        return self.action_tokenizer.encode(motion_from_conditions(cond.float()))

    def sequence_ids(self, tokens: Tensor, action_ids: Tensor) -> Tensor:
        """Scene tokens [B, T, h, w] and action tokens [B, T, S] -> the interleaved stream [B, T*(N+S)]."""
        return torch.cat([tokens.flatten(2), action_ids], 2).flatten(1)

    def sequence_targets(self, tokens: Tensor, action_ids: Tensor) -> Tensor:
        """The id each position of the stream predicts [B, T*(N+S)]: the next id, or -100 where there is none to
        learn: the last frame's action tokens (its motion leads past the window) and past the end."""
        ids = torch.cat([tokens.flatten(2), action_ids], 2).clone()  # [B, T, N+S]
        ids[:, -1, self.tokens_per_frame :] = -100
        ids = ids.flatten(1)
        return torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], 1)

    def embed_ids(self, ids: Tensor, start: int = 0) -> Tensor:
        """Stream ids [B, L] whose first id is stream position `start` -> embeddings [B, L, D] (token + in-frame
        position)."""
        slot = torch.arange(start, start + ids.shape[1], device=ids.device) % (self.tokens_per_frame + self.slots)
        return self.tok_emb(ids) + self.inframe_pos[slot]

    def _loss_action_tokens(self, tokens: Tensor, cond: Tensor) -> dict[str, Tensor]:
        """DrivingGPT's objective: cross-entropy of every next token of the stream, scene and action tokens alike."""
        t, n, v = tokens.shape[1], self.tokens_per_frame, self.cfg.vocab_size
        acts = self.action_ids(cond)  # [B, T, S]
        inputs = tokens
        if self.training and self.cfg.input_mask_ratio > 0:  # scene inputs only; targets stay the true ids
            inputs = mask_input_tokens(tokens, self.cfg.input_mask_ratio, self.mask_id)
        logits = self.forward_logits(self.embed_ids(self.sequence_ids(inputs, acts)), t)  # [B, L, V+A]
        target = self.sequence_targets(tokens, acts)  # [B, L]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        with torch.no_grad():
            per_token = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100,
                                        reduction="none").view_as(target)
            scene, action = (target >= 0) & (target < v), target >= v
            hit = logits.argmax(-1) == target
            last = torch.zeros_like(scene)
            start = (t - 1) * (n + self.slots)  # the last frame's scene tokens are targets of positions start-1...
            last[:, max(start - 1, 0) : start + n - 1] = True
            last &= scene
        return {"loss": loss, "scene_loss": per_token[scene].mean(), "action_loss": per_token[action].mean(),
                "token_acc": hit[scene].float().mean(), "action_acc": hit[action].float().mean(),
                "last_frame_acc": hit[last].float().mean()}

    def _next_frame_action_tokens(self, window: Tensor, cond: Tensor, sampling: SamplingConfig,
                                  generator: torch.Generator | None, use_cache: bool) -> Tensor:
        """The next frame after a window whose every frame carries its (given) action tokens, drawn from the
        scene codes."""
        stream = _Stream(self, self.sequence_ids(window.long(), self.action_ids(cond)), use_cache)
        new: list[Tensor] = []
        for j in range(self.tokens_per_frame):
            new.append(sample_logits(stream.logits()[:, : self.cfg.vocab_size], sampling, generator))  # [B]
            if j < self.tokens_per_frame - 1:
                stream.push(new[-1])
        return torch.stack(new, 1).reshape(window.shape[0], *self.token_shape)

    @torch.no_grad()
    def plan(self, context: Tensor, past_motion: Tensor, horizon: int, *, sampling: SamplingConfig | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             frames: bool = False) -> tuple[Tensor, ...]:
        """DrivingGPT's planning: context [B, Tc, h, w] tokens and past_motion [B, Tc-1, 3] (x, y, theta of frame
        t+1 in frame t) -> (action tokens [B, H, S], the motion [B, H, 3] they decode to), and with `frames`
        the imagined frames [B, H, h, w] each action leads to.

        After the last context frame the model predicts its action tokens, greedy, each slot from its own
        vocabulary; then the next frame's scene tokens (drawn with `sampling`, default the model's), then
        that frame's action tokens, and so on for `horizon` steps."""
        if self.action_tokenizer is None:
            raise ValueError("model.actions='condition' reads actions as inputs and never predicts them: "
                             "planning needs model.actions='drivinggpt' or 'drivingworld'")
        self.check_tokens(context, "context")
        b, tc = context.shape[:2]
        if tuple(past_motion.shape) != (b, tc - 1, 3):
            raise ValueError(f"past_motion: expected [{b}, {tc - 1}, 3] (x, y, theta per step), "
                             f"got {tuple(past_motion.shape)}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        span = tc + horizon - (0 if frames else 1)  # the last action's frame is imagined only with `frames`
        if span > self.cfg.max_frames:
            raise ValueError(f"{tc} context frames and a horizon of {horizon} span {span} frames, "
                             f"more than model.max_frames={self.cfg.max_frames}")
        sampling = sampling or self.sampling
        n, v = self.tokens_per_frame, self.cfg.vocab_size
        past = self.action_tokenizer.encode(past_motion.float().to(context.device))  # [B, Tc-1, S]
        unknown = torch.zeros(b, 1, self.slots, dtype=past.dtype, device=past.device)  # the action to predict
        ids = self.sequence_ids(context.long(), torch.cat([past, unknown], 1))
        stream = _Stream(self, ids[:, : -self.slots], use_cache)  # the last frame's action tokens are predicted
        steps: list[Tensor] = []
        imagined: list[Tensor] = []
        for k in range(horizon):
            more = k < horizon - 1 or frames  # whether anything follows this step's action tokens
            slot_ids = []
            for i, (lo, hi) in enumerate(self.action_tokenizer.slot_ranges):
                slot_ids.append(stream.logits()[:, lo:hi].argmax(-1) + lo)  # [B]
                if more or i < self.slots - 1:
                    stream.push(slot_ids[-1])
            steps.append(torch.stack(slot_ids, -1))  # [B, S]
            frame = []
            for j in range(n if more else 0):  # the next frame, then its action tokens
                frame.append(sample_logits(stream.logits()[:, :v], sampling, generator))  # [B]
                if k < horizon - 1 or j < n - 1:
                    stream.push(frame[-1])
            if frame:
                imagined.append(torch.stack(frame, 1).reshape(b, *self.token_shape))
        tokens = torch.stack(steps, 1)  # [B, H, S]
        if frames:
            return tokens, self.action_tokenizer.decode(tokens), torch.stack(imagined, 1)
        return tokens, self.action_tokenizer.decode(tokens)

    @property
    def forecast_plan(self):
        """With action tokens, the Forecaster's planning form: `forecast_plan(context, horizon, generator=)` ->
        (the imagined frames, decoded as `forecast` decodes them: occupancy [B, H, X, Y, Z] or camera frames
        [B, H, H_img, W_img, 3]; waypoints [B, H, 2]), from one `plan`: the scene
        follows the model's own actions, never the recorded ones. Waypoints are the cumulative (x, y) steps,
        as the evaluation's truth. The condition variant has none (it cannot plan)."""
        if self.action_tokenizer is None:
            raise AttributeError("forecast_plan: a gpt_world with model.actions='condition' does not plan")
        return self._forecast_plan

    @torch.no_grad()
    def _forecast_plan(self, context: dict[str, Tensor], horizon: int, *,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        past = self.context_frames(context)
        past_motion = relative_steps(context["ego_pose"][:, :past].double()).float()  # [B, past-1, 3]
        tokens = self.encode_batch(context, past)
        _, motion, imagined = self.plan(tokens, past_motion, horizon, generator=generator, frames=True)
        if self.modality == "camera":  # frames decoded after the context's, as the temporal VQ's decoder reads clips
            from drivewm.dynamics.camera_forecast import decode_after

            return decode_after(self, tokens, imagined), motion[..., :2].cumsum(1)
        return self.decode(imagined), motion[..., :2].cumsum(1)

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


class _Stream:
    """An interleaved id stream extended one token at a time (action-token GPT): with the cache each new token
    is one backbone step; without it the whole stream runs again (the reference the cache must equal)."""

    def __init__(self, model: GPTWorldModel, ids: Tensor, use_cache: bool):
        self.model, self.ids, self.use_cache = model, ids, use_cache
        self.per = model.tokens_per_frame + model.slots
        if use_cache:
            out, self.state = model.backbone.prefill(model.embed_ids(ids), positions=self._positions(0, ids.shape[1]))
            self.last = model.head(out[:, -1])  # [B, V+A]

    def _positions(self, start: int, length: int) -> Tensor:
        return torch.arange(start, start + length, device=self.ids.device) // self.per  # frame-wise positions

    def logits(self) -> Tensor:
        """Logits [B, V+A] of the id after the stream."""
        if self.use_cache:
            return self.last
        length = self.ids.shape[1]
        return self.model.forward_logits(self.model.embed_ids(self.ids), (length - 1) // self.per + 1)[:, -1]

    def push(self, ids: Tensor) -> None:
        """Append ids [B] to the stream."""
        start = self.ids.shape[1]
        self.ids = torch.cat([self.ids, ids[:, None]], 1)
        if self.use_cache:
            x = self.model.embed_ids(ids[:, None], start)  # [B, 1, D]
            out, self.state = self.model.backbone.step(x, self.state, positions=self._positions(start, 1))
            self.last = self.model.head(out[:, -1])
