"""``jepa_ac``: the V-JEPA 2-AC action-conditioned predictor (Assran et al., 2025, arXiv 2506.09985).

A frozen encoder (loaded from a ``jepa_bev`` run directory) turns each occupancy frame into N patch
embeddings, layer-normed. Per frame the predictor reads the tokens [action_t, state_t, patches_t]
(block of N + 2), all frames interleaved in time, with block-causal attention (every token of frame
t sees all tokens of frames <= t: ``drivewm.backbones`` with ``block_size = N + 2``), 3D RoPE over
(frame, row, col) and 2-D sin-cos positions on the patches. The patch outputs of frame t predict the embeddings
of frame t + 1. Training, as in the paper: teacher forcing (predict t + 1 from the true frames <= t)
plus a 2-step autoregressive rollout loss (from frame 0, predictions fed back, averaged over both
predicted frames), both L1 against the layer-normed targets. Every predictor output is layer-normed
(no affine) before it is scored, fed back or used to plan, as the official ``normalize_reps``.

The ego state is the frame's pose in the current ego frame (``rel_pose``: x, y, yaw), as the
paper's robot arm reads its end-effector pose. The action token carries the conditioning vector of
the transition t -> t + 1 (``drivewm.conditions``, shared with the token world models):
``condition="action"`` the applied (accel, steer); ``"action_motion"`` (default) also the ego motion
to the next frame. The ego's own dynamics are known (the planner integrates the bicycle model for
each candidate, as V-JEPA 2-AC integrates end-effector deltas into the next state), so a rollout
given the future poses conditions every step on where the ego will be; the predictor has to learn
what the scene does. The output at the state token also predicts the next state (L1,
``state_weight``, ours), which a rollout without future poses feeds forward.

Whether a trained predictor uses its conditioning shows in the teacher-forced L1 with the
conditioning shuffled across the batch. On 48 tiny episodes (BENCHMARKS.md; figures from before the
predictions were layer-normed and the rollout loss covered both frames): with frame-index RoPE
and 800 steps it did not change (0.127 either way, copying the frame scores 0.129); with 3D RoPE,
lr 3e-3 and 2500 steps it is 0.058 against 0.111 shuffled, close to the 0.052 of encoding the
ego-warped frame. How closely the predicted planning energy follows the true one is measured by
``benchmarks/bench_energy.py`` (BENCHMARKS.md).

Planning (``drivewm.planning``): ``encode(occ) -> [B, N, D]``, ``predict(z, actions) -> [B, N, D]``
and ``rollout(z, action_seq) -> [S, H, N, D]`` (KV-cached, batched over samples); energy = L1 to a
goal embedding from ``encode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import BackboneConfig, build_backbone
from drivewm.conditions import condition_dim, ego_conditions
from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, init_weights, sincos_2d
from drivewm.registry import register_model


@dataclass(kw_only=True)
class JepaACConfig:
    name: str = "jepa_ac"
    """Registered model name."""
    encoder_run: str = ""
    """Run directory of a trained jepa_bev model whose encoder (the EMA teacher if it has one) a new run copies
    in, frozen: its config into `encoder`, its weights into the model ('' = a frozen random encoder, for tests).
    Recorded with the run, never read to load it."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The frozen encoder's config (filled from encoder_run when a run starts)."""
    width: int = 64
    """Predictor width."""
    depth: int = 4
    """Predictor transformer blocks."""
    heads: int = 4
    """Predictor attention heads (width / heads must be even for RoPE)."""
    rollout_steps: int = 2
    """Autoregressive steps of the rollout loss (V-JEPA 2-AC: 2)."""
    rollout_weight: float = 1.0
    """Weight of the rollout loss next to the teacher-forcing loss."""
    state_weight: float = 0.1
    """Weight of the next-state L1 loss at the state token."""
    condition: str = "action_motion"
    """Per-frame conditioning (drivewm.conditions): 'action' (accel, steer) or 'action_motion' (+ ego motion to the next frame)."""
    state_scale: list[float] = field(default_factory=lambda: [20.0, 20.0, 1.0])
    """Divisors bringing (x m, y m, yaw rad) to ~unit range."""

    @staticmethod
    def upgrade(data: dict) -> list[str]:
        """Bring the model section of a config written by an older drivewm up to date, in place; returns the
        keys changed. `rope3d` is gone (3D RoPE only): it goes when it was on, a ValueError says a run with
        frame-index RoPE cannot be converted."""
        if "rope3d" not in data:
            return []
        if data["rope3d"] is not True:
            raise ValueError(f"model.rope3d={data['rope3d']}: frame-index RoPE is gone (3D RoPE only); "
                             f"the run cannot be converted")
        del data["rope3d"]
        return ["rope3d"]

    def frozen_sources(self, missing_only: bool = False) -> dict[str, str]:
        """{model attribute: run directory} of the frozen encoder copied from a jepa_bev run (its config is
        always nested, so nothing is ever missing)."""
        return {} if missing_only or not self.encoder_run else {"encoder": self.encoder_run}

    def adopt_frozen(self, attribute: str, run_kind: str, run_model: nn.Module) -> PatchEncoder:
        """Nest the config of `run_model`'s encoder (the EMA teacher if it has one); returns that encoder."""
        enc = getattr(run_model, "target_encoder", None) or getattr(run_model, "encoder", None)
        if attribute != "encoder" or not isinstance(enc, PatchEncoder):
            raise ValueError(f"encoder_run {self.encoder_run!r}: model {type(run_model).__name__} has no PatchEncoder to freeze")
        self.encoder = enc.cfg
        return enc


def _frozen_encoder(cfg: JepaACConfig) -> PatchEncoder:
    if not cfg.encoder_run:
        enc = PatchEncoder(cfg.encoder)
        init_weights(enc)
        return enc
    # Its weights come from that run (or this run's checkpoint), so building it draws nothing from the global
    # RNG: the predictor starts from the state that loading the encoder run left.
    with torch.random.fork_rng(devices=[]):
        enc = PatchEncoder(cfg.encoder)
        init_weights(enc)
    return enc


class JepaAC(nn.Module):
    def __init__(self, cfg: JepaACConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _frozen_encoder(cfg).requires_grad_(False).eval()
        ecfg = self.encoder.cfg
        self.n = self.encoder.num_tokens
        d, w = ecfg.dim, cfg.width
        self.patch_in = nn.Linear(d, w)
        self.action_in = nn.Linear(condition_dim(cfg.condition), w)
        self.state_in = nn.Linear(3, w)
        self.register_buffer("pos", sincos_2d(*ecfg.token_grid, w), persistent=False)
        rows, cols = torch.meshgrid(torch.arange(ecfg.token_grid[0]), torch.arange(ecfg.token_grid[1]), indexing="ij")
        # (row, col) per token of a frame block [action, state, patches...]: action and state sit at (0, 0),
        # where the rotation is the identity, so they carry the frame axis only.
        grid = torch.cat([torch.zeros(2, 2, dtype=torch.long), torch.stack([rows.flatten(), cols.flatten()], -1)])
        self.register_buffer("block_grid", grid, persistent=False)  # [N + 2, 2]
        self.register_buffer("s_scale", torch.tensor(cfg.state_scale, dtype=torch.float32), persistent=False)
        self.backbone = build_backbone(
            BackboneConfig(kind="attention", dim=w, depth=cfg.depth, heads=cfg.heads, norm="layer", max_len=4096,
                           rope_axes=3)
        )
        self.patch_out = nn.Linear(w, d)
        self.state_out = nn.Linear(w, 3)
        for mod in (self.patch_in, self.action_in, self.state_in, self.backbone, self.patch_out, self.state_out):
            init_weights(mod)

    def train(self, mode: bool = True) -> "JepaAC":
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout / norm statistics change
        return self

    # ---- protocol --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, occ: Tensor) -> Tensor:
        """uint8 [B, X, Y, Z] -> layer-normed frozen embeddings [B, N, D] (the space predictions live in)."""
        z = self.encoder(occ)
        return F.layer_norm(z, z.shape[-1:])

    def conditions(self, actions: Tensor, states: Tensor | None) -> Tensor:
        """actions [B, T, 2] (transition t -> t+1) and poses [B, >= T + 1, 3] -> conditioning [B, T, A].

        'action_motion' reads the motion t -> t+1 from the poses, so it needs the pose after the last action."""
        t = actions.shape[1]
        if self.cfg.condition == "action":
            return ego_conditions({"action": actions}, "action")
        if states is None or states.shape[1] < t + 1:
            have = "none" if states is None else states.shape[1]
            raise ValueError(f"condition='action_motion' needs the ego poses of {t + 1} frames (the pose after each "
                             f"action; a planner integrates them from the candidate actions), got {have}")
        pad = torch.cat([actions, torch.zeros_like(actions[:, :1])], 1)  # [B, T+1, 2]: motion t -> t+1 uses poses t, t+1
        return ego_conditions({"action": pad, "ego_pose": states[:, : t + 1]}, "action_motion")[:, :t]

    def _frame_tokens(self, z: Tensor, cond: Tensor, states: Tensor) -> Tensor:
        """z [B, T, N, D], conditioning [B, T, A], states [B, T, 3] -> tokens [B, T * (N + 2), W]."""
        b, t = z.shape[:2]
        a = self.action_in(cond)[:, :, None]  # [B, T, 1, W]
        s = self.state_in(states / self.s_scale)[:, :, None]
        p = self.patch_in(z) + self.pos  # [B, T, N, W]
        return torch.cat([a, s, p], dim=2).reshape(b, t * (self.n + 2), -1)

    def _positions(self, t0: int, t: int, device) -> Tensor:
        """3D RoPE positions (frame, row, col) [T*(N+2), 3] of frames t0..t0+t-1 (V-JEPA 2-AC): the patch tokens
        rotate by all three axes, the action and state tokens, at (0, 0), by the frame axis alone."""
        frames = torch.arange(t0, t0 + t, device=device).repeat_interleave(self.n + 2)
        return torch.cat([frames[:, None], self.block_grid.to(device).repeat(t, 1)], -1)

    def _readout(self, h: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Backbone outputs [B, T*(N+2), W] -> next embeddings [B, T, N, D] and next states [B, T, 3].

        The embeddings are layer-normed over D without affine, as every predictor output in V-JEPA 2-AC
        (``normalize_reps``: ``_step_predictor`` in facebookresearch/vjepa2 app/vjepa_droid/train.py at
        c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb): they live in the space of the layer-normed targets and goals,
        so a plan cannot lower the energy by scale or offset, and what is fed back is what is scored."""
        h = h.view(h.shape[0], t, self.n + 2, -1)
        z = self.patch_out(h[:, :, 2:])
        return F.layer_norm(z, z.shape[-1:]), self.state_out(h[:, :, 1]) * self.s_scale

    def forward(self, z: Tensor, cond: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced pass: frames z [B, T, N, D], their conditioning [B, T, A] (from `conditions`) and
        states [B, T, 3] -> predictions of frames 1..T: [B, T, N, D], [B, T, 3]."""
        t = z.shape[1]
        x = self._frame_tokens(z, cond, states)
        h = self.backbone(x, positions=self._positions(0, t, z.device), block_size=self.n + 2)
        return self._readout(h, t)

    def _check(self, z: Tensor, actions: Tensor) -> None:
        if z.dim() != 4 or z.shape[2:] != (self.n, self.encoder.cfg.dim):
            raise ValueError(f"z must be [B, T, {self.n}, {self.encoder.cfg.dim}], got {tuple(z.shape)}")
        if actions.dim() != 3 or actions.shape[-1] != 2 or actions.shape[0] != z.shape[0]:
            raise ValueError(f"actions must be [B, T, 2] with B = {z.shape[0]}, got {tuple(actions.shape)}")

    def predict(self, z: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Next-frame embeddings [B, N, D] from history z [B, T, N, D], its actions [B, T, 2] (the last one is
        applied now) and poses [B, T (+1), 3] (with 'action_motion': T + 1, the pose the last action leads to)."""
        self._check(z, actions)
        if actions.shape[1] != z.shape[1]:
            raise ValueError(f"predict needs one action per history frame: z has {z.shape[1]}, actions {actions.shape[1]}")
        return self.rollout(z, actions[:, -1:], past_actions=actions[:, :-1], states=states)[:, 0]

    def rollout(self, z: Tensor, action_seq: Tensor, past_actions: Tensor | None = None,
                states: Tensor | None = None) -> Tensor:
        """H autoregressive frames [S, H, N, D] from history z [S, T, N, D] (or [S, N, D]) and action_seq [S, H, 2].

        ``past_actions`` [S, T - 1, 2] are the actions between history frames (needed when T > 1);
        action_seq[:, 0] is applied at the last history frame. ``states``: the history's poses [S, T, 3]
        (the model's own state predictions are fed forward), or history and future poses [S, T + H, 3]
        (the ego's known kinematics; 'action_motion' needs them). KV-cached: each new frame costs one block.
        """
        if z.dim() == 3:
            z = z[:, None]
        s, t = z.shape[:2]
        h = action_seq.shape[1]
        if past_actions is None:
            if t > 1:
                raise ValueError(f"rollout from {t} history frames needs past_actions [S, {t - 1}, 2]")
            past_actions = action_seq[:, :0]
        acts = torch.cat([past_actions, action_seq], dim=1)  # [S, T - 1 + H, 2]
        self._check(z, acts)
        cur = states if states is not None else torch.zeros(s, t, 3, device=z.device, dtype=z.dtype)
        if cur.dim() != 3 or cur.shape[0] != s or cur.shape[1] not in (t, t + h) or cur.shape[2] != 3:
            raise ValueError(f"states must be [S, {t}, 3] or [S, {t + h}, 3] (history + future poses), got {tuple(cur.shape)}")
        known = cur.shape[1] == t + h
        cond = self.conditions(acts, cur if known else None)  # [S, T - 1 + H, A]
        cache = self.backbone.init_state(s, device=z.device, dtype=z.dtype)
        frames, out = [z[:, i] for i in range(t)], []
        st = [cur[:, i] for i in range(cur.shape[1])]
        for i in range(t - 1 + h):
            x = self._frame_tokens(frames[i][:, None], cond[:, i : i + 1], st[i][:, None])
            hid, cache = self.backbone.step(x, cache, positions=self._positions(i, 1, z.device))
            nz, ns = self._readout(hid, 1)
            if i >= t - 1:
                frames.append(nz[:, 0])
                if not known:
                    st.append(ns[:, 0])
                out.append(nz[:, 0])
        return torch.stack(out, dim=1)

    # ---- training --------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        occ, actions = batch["occ"], batch["action"].float()
        b, t = occ.shape[:2]
        if t < 2 + (self.cfg.rollout_steps > 0):
            raise ValueError(f"jepa_ac needs windows of >= 3 frames (data.past + data.future), got {t}")
        if "rel_pose" not in batch and self.cfg.condition == "action_motion":
            raise KeyError("jepa_ac with condition='action_motion' needs the batch's 'rel_pose' (window datasets add it "
                           "when data.keys holds ego_pose)")
        states = batch["rel_pose"].float() if "rel_pose" in batch else torch.zeros(b, t, 3, device=occ.device)
        z = self.encode(occ.flatten(0, 1)).view(b, t, self.n, -1)  # [B, T, N, D], frozen, layer-normed
        cond = self.conditions(actions[:, :-1], states)  # [B, T-1, A]
        pred, pred_state = self(z[:, :-1], cond, states[:, :-1])
        tf = (pred - z[:, 1:]).abs().mean()
        st = (pred_state - states[:, 1:]).abs().mean()
        total = tf + self.cfg.state_weight * st
        out = {"tf_loss": tf.detach(), "state_loss": st.detach()}
        k = min(self.cfg.rollout_steps, t - 1)
        if k > 0 and self.cfg.rollout_weight > 0:
            # From frame 0 only, predictions fed back for k steps (the poses are the ego's, known); L1 averaged over
            # all k predicted frames, as ``forward_predictions`` / ``loss_fn`` (``auto_steps`` = 2) in vjepa2
            # app/vjepa_droid/train.py at c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb.
            zs = [z[:, 0]]
            for i in range(k):
                pz, _ = self(torch.stack(zs, 1), cond[:, : i + 1], states[:, : i + 1])
                zs.append(pz[:, -1])
            ro = (torch.stack(zs[1:], 1) - z[:, 1 : k + 1]).abs().mean()
            total = total + self.cfg.rollout_weight * ro
            out["rollout_loss"] = ro.detach()
        out["loss"] = total
        return out


@register_model("jepa_ac", JepaACConfig, kind="jepa")
def build_jepa_ac(cfg: JepaACConfig) -> JepaAC:
    return JepaAC(cfg)
