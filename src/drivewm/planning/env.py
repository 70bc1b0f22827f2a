"""`WorldModelEnv`: a learned world model behind the simulator's gymnasium interface.

Registered as `drivewm/WorldModel-v0` (drivewm.planning's import registers it, as drivewm.sim registers
`drivewm/Driving-v0`): `gymnasium.make("drivewm/WorldModel-v0", model=planning_model, context=obs)`.

Like DIAMOND's world-model environment (Alonso et al., 2024), the learned model stands where the
simulator (`drivewm/Driving-v0`) stood, so a policy or planner written against one drives the other.

- Model: any planning model of `learned.py` (`TokenPlanningModel`, `JepaPlanningModel`); it is
  stepped only through its batched `rollout`, so stepping and planning see the same predictions.
- `reset(seed=...)` starts from an observed context: the `PlanningObservation` given at construction
  (`context=`, one or a list to draw from) or a window of an episode store (`store=`: a seeded draw
  of an episode and an end frame); `reset(options={"observation": obs})` starts from `obs` instead.
- Action: Box [accel m/s^2, steer rad] within `bounds` (the data contract's limits by default),
  clipped into the box.
- Observation (dict, the simulator's keys where they mean the same): `occ` uint8 [X, Y, Z] the
  predicted occupancy of the new frame (token models; at reset the last observed frame) or
  `embedding` float32 [N, D] (JEPA models; at reset the last observed frame encoded), and
  `ego_state` float32 [4] (speed m/s, last accel, last steer, yaw rate rad/s), as `DrivingEnv`.
- `step(action)` appends the action to the episode's executed sequence and rolls the model out over
  the whole sequence from the context (token models are sampled with the episode's `rollout_seed`,
  so every replay reproduces the frames already returned); the observation is its last frame.
- Reward: minus the increase of `cost` over the executed sequence, so an episode's rewards sum to
  minus the cost of what was driven. The default cost for occupancy models is `OccupancyCost`
  (collision, clearance, off-road on the predicted occupancy, route progress toward `goal` (default:
  the context's route), comfort); embedding models get reward 0 unless a cost (with its goal) is given.
- Terminated: the ego footprint overlaps a predicted obstacle (occupancy models, when
  `terminate_on_collision`). Truncated: after `max_steps` steps.
- Info: `ego` [3] (x, y, yaw in the context's current ego frame), `speed`, and for occupancy models
  `collision` / `offroad` of the new frame.
`clone()` copies the episode state, as `DrivingEnv.clone()` does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from drivewm.data.spec import GridSpec
from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.costs import OccupancyCost
from drivewm.planning.mpc import Cost, PlanningModel, Rollout
from drivewm.planning.observation import PlanningObservation
from drivewm.sim.config import EGO_WHEELBASE


class WorldModelEnv(gym.Env):
    """reset/step over a learned model's predicted frames, from observed contexts (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, model: PlanningModel, *, context: PlanningObservation | Sequence[PlanningObservation] | None = None,
                 store: str | Path | None = None, bounds: ActionBounds | None = None, max_steps: int = 6,
                 cost: Cost | None = None, goal: Any = None, grid: GridSpec | None = None,
                 terminate_on_collision: bool = True) -> None:
        self.bounds = bounds if bounds is not None else ActionBounds()
        if model.action_dim != self.bounds.dim:
            raise PlanningError(f"world model action dim {model.action_dim} != action bounds dim {self.bounds.dim}")
        if max_steps < 1:
            raise PlanningError(f"max_steps must be >= 1, got {max_steps}")
        if (context is None) == (store is None):
            raise PlanningError("WorldModelEnv needs exactly one source of contexts: context=... or store=...")
        self.model, self.max_steps, self.goal = model, max_steps, goal
        self.terminate_on_collision = terminate_on_collision
        self.context_frames = int(getattr(model, "context_frames", 1))
        if store is not None:
            from drivewm.data.store import EpisodeStore

            self.store, self.contexts = EpisodeStore(store), None
            if len(self.store) == 0:
                raise PlanningError(f"store {store}: no episodes to draw contexts from")
        else:
            self.store = None
            self.contexts = [context] if isinstance(context, PlanningObservation) else list(context)
            if not self.contexts or not all(isinstance(c, PlanningObservation) for c in self.contexts):
                raise PlanningError("context must be a PlanningObservation or a non-empty list of them")

        # The spaces follow from what the model predicts: one zero action from the first context shows it.
        first = self.contexts[0] if self.contexts is not None else self._store_context(0, self.context_frames - 1)
        self.model.observe(first)
        with torch.no_grad():
            probe = self.model.rollout(torch.zeros(1, 1, self.bounds.dim, device=model.device))
        if probe.occupancy is None and probe.embeddings is None:
            raise PlanningError(f"{type(model).__name__}.rollout predicts neither occupancy nor embeddings")
        self.predicts = "occ" if probe.occupancy is not None else "embedding"
        if self.predicts == "occ":
            tokenizer = getattr(getattr(model, "model", None), "tokenizer", None)  # a token world model's decoder
            self.grid = grid if grid is not None else getattr(tokenizer, "grid", None)
            if self.grid is None or tuple(self.grid.shape) != tuple(probe.occupancy.shape[-3:]):
                raise PlanningError(f"pass grid= (the GridSpec of the predicted occupancy {tuple(probe.occupancy.shape[-3:])})")
            frame = gym.spaces.Box(0, self.grid.num_classes - 1, tuple(self.grid.shape), np.uint8)
            self.cost = cost if cost is not None else OccupancyCost(self.grid, dt=float(getattr(model, "dt", 0.5)))
            self._collision = OccupancyCost(self.grid)
        else:
            # Embeddings have no contract range; a wide finite box keeps samplers and checkers meaningful.
            frame = gym.spaces.Box(-1e6, 1e6, tuple(probe.embeddings.shape[-2:]), np.float32)
            self.cost, self._collision = cost, None
        self.observation_space = gym.spaces.Dict({
            self.predicts: frame,
            "ego_state": gym.spaces.Box(-1e3, 1e3, (4,), np.float32),  # speed, accel, steer, yaw rate
        })
        self.action_space = gym.spaces.Box(np.array(self.bounds.low, np.float32),
                                           np.array(self.bounds.high, np.float32), dtype=np.float32)
        self.actions: list[torch.Tensor] = []
        self.observation: PlanningObservation | None = None
        self.rollout_seed = 0

    # ----- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        obs = (options or {}).get("observation")
        if obs is None:
            obs = self._draw_context()
        elif not isinstance(obs, PlanningObservation):
            raise PlanningError(f"reset options['observation'] must be a PlanningObservation, got {type(obs).__name__}")
        self.observation = obs
        self.model.observe(obs)
        self.actions = []
        self._cost_so_far = 0.0
        self.rollout_seed = int(self.np_random.integers(2**62))
        last = obs.occ[-1]
        if self.predicts == "occ":
            frame = np.array(last, np.uint8)  # a copy: the caller may keep or change it
        else:
            frame = self.model.encode(np.asarray(last)[None])[0].cpu().numpy().astype(np.float32)
        prev = np.asarray(obs.action[-1], np.float32)
        state = np.array([obs.speed, prev[0], prev[1], obs.speed * np.tan(prev[1]) / EGO_WHEELBASE], np.float32)
        return {self.predicts: frame, "ego_state": state}, {"ego": np.zeros(3, np.float32), "speed": float(obs.speed)}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.observation is None:
            raise PlanningError("WorldModelEnv.step called before reset")
        a = torch.as_tensor(np.asarray(action, np.float32))
        if a.shape != (self.bounds.dim,) or not torch.isfinite(a).all():
            raise PlanningError(f"action must be {self.bounds.dim} finite numbers (accel m/s^2, steer rad), got {action!r}")
        self.actions.append(self.bounds.clip(a))
        seq = torch.stack(self.actions)[None].to(self.model.device)  # [1, t, A]
        r = self.rollout(seq)
        speed, acc, steer = float(r.speed[0, -1]), float(seq[0, -1, 0]), float(seq[0, -1, 1])
        state = np.array([speed, acc, steer, speed * np.tan(steer) / EGO_WHEELBASE], np.float32)
        info: dict[str, Any] = {"ego": r.ego[0, -1].cpu().numpy().astype(np.float32), "speed": speed}
        for k, v in r.events.items():
            info[k] = v[0, -1].item()
        terminated = False
        if self.predicts == "occ":
            frame = r.occupancy[0, -1].cpu().numpy().astype(np.uint8)
            terms = self._collision.terms(r.occupancy[:, -1:])
            info["collision"] = bool(terms["collision"][0, 0])
            info["offroad"] = float(terms["offroad"][0, 0])
            terminated = self.terminate_on_collision and info["collision"]
        else:
            frame = r.embeddings[0, -1].cpu().numpy().astype(np.float32)
        reward = 0.0
        if self.cost is not None:
            goal = self.goal if self.goal is not None else self.observation.route
            total = float(self.cost(r, seq, goal)[0])
            reward, self._cost_so_far = -(total - self._cost_so_far), total
        truncated = len(self.actions) >= self.max_steps and not terminated
        return {self.predicts: frame, "ego_state": state}, reward, bool(terminated), bool(truncated), info

    def rollout(self, actions: torch.Tensor) -> Rollout:
        """The model's rollout of actions [S, H, A] from the current context, sampled with the episode's seed."""
        generator = getattr(self.model, "generator", None)
        if generator is not None:
            generator.manual_seed(self.rollout_seed)
        with torch.no_grad():
            return self.model.rollout(actions)

    def clone(self) -> "WorldModelEnv":
        """An independent copy of the episode state (the model's weights are shared, read-only)."""
        twin = copy.copy(self)
        twin.actions = list(self.actions)
        twin.model = copy.copy(self.model)
        twin._np_random = copy.deepcopy(self._np_random)
        return twin

    # ----- contexts ----------------------------------------------------------------------------
    def _draw_context(self) -> PlanningObservation:
        if self.contexts is not None:
            return self.contexts[int(self.np_random.integers(len(self.contexts)))]
        i = int(self.np_random.integers(len(self.store)))
        frames = self.store.array(i, "ego_pose").shape[0]
        if frames < self.context_frames:
            raise PlanningError(f"store episode {i} has {frames} frames, the model needs {self.context_frames} of context")
        return self._store_context(i, int(self.np_random.integers(self.context_frames - 1, frames)))

    def _store_context(self, episode: int, t: int) -> PlanningObservation:
        """The observation at frame t of a store episode: its last `context_frames` frames up to t."""
        from drivewm.planning.open_loop import HeldOutEpisode, observation_at

        arrays = self.store.read_episode(episode)
        for key in ("occ", "ego_pose", "action"):
            if key not in arrays:
                raise PlanningError(f"store episode {episode} has no {key!r}, needed for a world-model context")
        return observation_at(HeldOutEpisode(arrays, f"episode {episode}"), t, self.context_frames, with_sim=False)
