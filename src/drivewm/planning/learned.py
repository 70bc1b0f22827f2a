"""Learned world models behind the planning protocol: a JEPA predictor in embedding space and a token
world model with decoding to occupancy.

Both take the recent past from a `PlanningObservation`, integrate the ego's own motion for each
candidate with the simulator's bicycle model (`kinematics.py`: the ego's dynamics are known; the
scene's are what the model learned), and predict the scene:

- `JepaPlanningModel`: V-JEPA 2-AC (arXiv 2506.09985): encode the history once, then one batched,
  KV-cached autoregressive `rollout(z, actions)` per scoring -> embeddings [S, H, N, D]; no decoding.
- `TokenPlanningModel`: tokenize the history once, `rollout(context, conditions, H)` samples future
  tokens frame by frame, the tokenizer decodes them to occupancy [S, H, X, Y, Z] (planning by generation).
"""

from __future__ import annotations

import numpy as np
import torch

from drivewm.planning.config import PlanningError
from drivewm.geometry import to_frame
from drivewm.planning.kinematics import rollout_bicycle
from drivewm.planning.mpc import Rollout
from drivewm.planning.observation import PlanningObservation


def relative_poses(ego_pose: np.ndarray) -> np.ndarray:
    """World poses [T, 3] -> the same poses in the last pose's ego frame (the window's `rel_pose`)."""
    p = torch.as_tensor(np.asarray(ego_pose, np.float64))
    return to_frame(p, p[-1]).numpy().astype(np.float32)


def _check_finite(name: str, values: torch.Tensor) -> None:
    """A NaN/inf action would only surface deep in the model (as NaN sampling probabilities): name it here."""
    bad = ~torch.isfinite(values)
    if bad.any():
        first = [int(i) for i in bad.nonzero()[0]]
        raise PlanningError(f"{name}: {int(bad.sum())} non-finite (NaN/inf) values, first at index {first}")


class _LearnedModel:
    """Shared part: history on the model's device, ego kinematics of each candidate."""

    action_dim = 2

    def __init__(self, model: torch.nn.Module, context_frames: int, hz: float, max_speed: float):
        if context_frames < 1:
            raise PlanningError(f"context_frames must be >= 1, got {context_frames}")
        self.model = model.eval()
        self.context_frames, self.dt, self.max_speed = context_frames, 1.0 / hz, max_speed
        self.device = next(model.parameters()).device
        self.obs: PlanningObservation | None = None

    def _observe(self, observation: PlanningObservation) -> None:
        if not isinstance(observation, PlanningObservation):
            raise PlanningError(f"learned models plan from a PlanningObservation, got {type(observation).__name__}")
        if len(observation.occ) < self.context_frames:
            raise PlanningError(
                f"the model needs {self.context_frames} context frames, the observation has {len(observation.occ)}"
            )
        self.obs = observation.last(self.context_frames)
        _check_finite("observation.action", torch.as_tensor(self.obs.action))
        self.rel = torch.as_tensor(relative_poses(self.obs.ego_pose), device=self.device)  # [T, 3]
        self.past_actions = torch.as_tensor(self.obs.action[:-1], dtype=torch.float32, device=self.device)  # [T-1, 2]

    def ego(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.obs is None:
            raise PlanningError("rollout called before observe()")
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise PlanningError(f"actions must be [S, H, {self.action_dim}], got {tuple(actions.shape)}")
        _check_finite("actions", actions)
        start = torch.tensor([0.0, 0.0, 0.0, self.obs.speed], device=actions.device)
        return rollout_bicycle(start, actions.float(), self.dt, self.max_speed)  # [S, H, 3], [S, H]


class JepaPlanningModel(_LearnedModel):
    """A `jepa_ac` model (encode / rollout in embedding space) as a planning model."""

    def __init__(self, model: torch.nn.Module, context_frames: int = 1, hz: float = 2.0, max_speed: float = 20.0):
        for attr in ("encode", "rollout"):
            if not callable(getattr(model, attr, None)):
                raise PlanningError(f"a JEPA planning model needs .{attr}(); {type(model).__name__} has none")
        super().__init__(model, context_frames, hz, max_speed)

    @torch.no_grad()
    def encode(self, occ: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [T, X, Y, Z] -> [T, N, D] embeddings (goal observations go through here too)."""
        return self.model.encode(torch.as_tensor(np.asarray(occ), device=self.device))

    def observe(self, observation: PlanningObservation) -> None:
        self._observe(observation)
        self.z = self.encode(self.obs.occ)  # [T, N, D], encoded once per decision
        self.observed = torch.as_tensor(np.asarray(self.obs.occ[-1]), device=self.device)
        agents = self.obs.agents
        self.agents = None if agents is None else torch.as_tensor(np.asarray(agents), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def rollout(self, actions: torch.Tensor) -> Rollout:
        ego, speed = self.ego(actions)
        s = actions.shape[0]
        z = self.z[None].expand(s, *self.z.shape)  # [S, T, N, D]
        past = self.past_actions[None].expand(s, *self.past_actions.shape)  # [S, T-1, 2]
        # History poses, then each candidate's own integrated poses: the predictor is told where the ego goes.
        states = torch.cat([self.rel[None].expand(s, *self.rel.shape), ego.to(self.device)], 1)  # [S, T + H, 3]
        emb = self.model.rollout(z, actions.float().to(self.device), past_actions=past, states=states)  # [S, H, N, D]
        return Rollout(ego=ego, speed=speed, embeddings=emb, observed=self.observed, agents=self.agents)


class TokenPlanningModel(_LearnedModel):
    """A token world model (dynamics: gpt / spatiotemporal / maskgit) decoded to occupancy, as a planning model."""

    def __init__(self, model: torch.nn.Module, context_frames: int = 2, hz: float = 2.0, max_speed: float = 20.0,
                 seed: int = 0):
        for attr in ("encode", "decode", "rollout"):
            if not callable(getattr(model, attr, None)):
                raise PlanningError(f"a token planning model needs .{attr}(); {type(model).__name__} has none")
        if getattr(model, "tokenizer", None) is None:
            raise PlanningError("the token world model has no tokenizer (model.tokenizer_run is empty): it cannot decode")
        if getattr(model, "modality", "occ") != "occ":
            # Planning observes occupancy; a camera model would also need the episode's calibration to roll out.
            raise PlanningError(f"a token planning model reads occupancy observations; {model.cfg.name} forecasts "
                                f"{model.modality!r} frames (tokenizer {model.tokenizer_name})")
        super().__init__(model, context_frames, hz, max_speed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def observe(self, observation: PlanningObservation) -> None:
        from drivewm.conditions import condition_dim

        self._observe(observation)
        if condition_dim(self.model.cfg.condition) != self.model.action_dim:
            raise PlanningError("token world model condition and action_dim disagree")
        occ = torch.as_tensor(self.obs.occ, device=self.device)[None]  # [1, T, X, Y, Z]
        self.context = self.model.encode(occ)  # [1, T, h, w]

    @torch.no_grad()
    def rollout(self, actions: torch.Tensor) -> Rollout:
        from drivewm.conditions import ego_conditions

        ego, speed = self.ego(actions)
        s, h = actions.shape[:2]
        t = self.context.shape[1]
        acts = actions.float().to(self.device)
        full_actions = torch.cat([self.past_actions[None].expand(s, -1, -1), acts], 1)  # [S, T-1+H, 2]
        poses = torch.cat([self.rel[None].expand(s, -1, -1), ego.to(self.device)], 1)  # [S, T+H, 3]
        pad = full_actions[:, -1:]
        cond = ego_conditions({"action": torch.cat([full_actions, pad], 1), "ego_pose": poses},
                              self.model.cfg.condition)  # [S, T+H, A]
        tokens = self.model.rollout(self.context.expand(s, -1, -1, -1), cond, h, generator=self.generator)
        occ = self.model.decode(tokens)  # [S, H, X, Y, Z]
        return Rollout(ego=ego, speed=speed, occupancy=occ)
