"""`WorldModelEnv`: a learned world model behind the simulator's own gymnasium reset/step interface.

Like DIAMOND's world-model environment (Alonso et al., 2024), the learned model stands where the
simulator stood: `reset(options={"observation": obs})` takes the real past (a
`PlanningObservation`), `step(action)` returns the model's prediction of the next frame
(embeddings [N, D] for a JEPA model, occupancy [X, Y, Z] for a token model) with the ego pose and
speed in `info`; `clone()` copies the state, as `DrivingEnv.clone()` does, so a planner written
against the simulator drives the learned model unchanged. Each step re-plays the executed actions
through the model's batched `rollout`, so stepping and planning see the same predictions.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.mpc import Cost, PlanningModel
from drivewm.planning.observation import PlanningObservation


class WorldModelEnv(gym.Env):
    """reset/step over a learned model's predicted states; reward = -cost of the step when a cost is given."""

    metadata = {"render_modes": []}

    def __init__(self, model: PlanningModel, bounds: ActionBounds, max_steps: int = 6,
                 cost: Cost | None = None, goal: Any = None):
        if model.action_dim != bounds.dim:
            raise PlanningError(f"world model action dim {model.action_dim} != action bounds dim {bounds.dim}")
        self.model, self.bounds, self.max_steps, self.cost, self.goal = model, bounds, max_steps, cost, goal
        self.action_space = gym.spaces.Box(np.array(bounds.low, np.float32), np.array(bounds.high, np.float32))
        self.actions: list[torch.Tensor] = []
        self._observation: PlanningObservation | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        obs = (options or {}).get("observation")
        if not isinstance(obs, PlanningObservation):
            raise PlanningError("WorldModelEnv.reset needs options={'observation': PlanningObservation(...)}")
        self._observation = obs
        self.model.observe(obs)
        self.actions = []
        self._cost_so_far = 0.0
        return obs.occ[-1], {"ego": np.zeros(3, np.float32), "speed": float(obs.speed)}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._observation is None:
            raise PlanningError("WorldModelEnv.step called before reset")
        a = torch.as_tensor(np.asarray(action, np.float32))
        if a.shape != (self.bounds.dim,):
            raise PlanningError(f"action must have shape ({self.bounds.dim},), got {tuple(a.shape)}")
        self.actions.append(self.bounds.clip(a))
        seq = torch.stack(self.actions)[None]  # [1, t, A]
        with torch.no_grad():
            r = self.model.rollout(seq)
        pred = r.embeddings if r.embeddings is not None else r.occupancy
        obs = pred[0, -1].cpu().numpy() if pred is not None else None
        info = {"ego": r.ego[0, -1].cpu().numpy(), "speed": float(r.speed[0, -1])}
        for k, v in r.events.items():
            info[k] = v[0, -1].item()
        reward = 0.0
        if self.cost is not None:
            # The cost scores the whole executed sequence; the step's reward is its increment,
            # so the rewards of an episode sum to minus the cost of the sequence.
            total = float(self.cost(r, seq, self.goal)[0])
            reward, self._cost_so_far = -(total - self._cost_so_far), total
        truncated = len(self.actions) >= self.max_steps
        return obs, reward, False, truncated, info

    def clone(self) -> "WorldModelEnv":
        """An independent copy of the predicted state (the model's weights are shared, read-only)."""
        twin = copy.copy(self)
        twin.actions = list(self.actions)
        twin.model = copy.copy(self.model)
        return twin
