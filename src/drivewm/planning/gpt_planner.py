"""DrivingGPT's planner (Chen et al., arXiv 2412.18607): the plan is the GPT world model's own prediction of
the next action tokens, decoded into a trajectory; no search, no cost.

From the recent past (scene tokens of the observed frames, the ego motion between them as action tokens)
the GPT predicts the action tokens after the current frame greedily, then the next frame, then its action
tokens, and so on (`GPTWorldModel.plan`, model.actions 'drivinggpt' or 'drivingworld'). The decoded
motion (x, y, theta per step) integrated from the current pose is the planned trajectory. drivewm's
planners hand the evaluators and the simulator controls (acceleration, steering), so the trajectory is
turned into the controls that make the simulator's bicycle model drive it (`controls_from_motion`, exact
where the step is an arc reachable within the action limits and the speed limit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drivewm.geometry import integrate_steps, relative_steps
from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.observation import PlanningObservation
from drivewm.sim.config import EGO_WHEELBASE


def controls_from_motion(motion: torch.Tensor, speed: float, dt: float,
                         wheelbase: float = EGO_WHEELBASE) -> torch.Tensor:
    """Per-step motion [H, 3] (x, y, theta of each pose in the previous one) from `speed` -> controls [H, 2]
    (acceleration, steering) under which `kinematics.rollout_bicycle` drives it: each step is the circular arc
    of the same heading change over the chord, its length d driven at constant acceleration (braking to a
    standstill within the step where d < v dt / 2), the steering of the arc's curvature."""
    if motion.ndim != 2 or motion.shape[-1] != 3:
        raise PlanningError(f"motion must be [H, 3] (x, y, theta per step), got {tuple(motion.shape)}")
    v = float(speed)
    out = []
    for x, y, theta in motion.double().tolist():
        chord = float(np.hypot(x, y))
        half = theta / 2
        d = chord if abs(half) < 1e-9 else chord * half / np.sin(half)  # the arc through the chord
        if d < 0.5 * v * dt:  # stops inside the step: d = v^2 / (-2 a)
            a = -v * v / (2 * max(d, 1e-6))
            v_next = 0.0
        else:
            a = 2 * (d - v * dt) / (dt * dt)
            v_next = v + a * dt
        steer = float(np.arctan(wheelbase * theta / d)) if d > 1e-9 else 0.0
        out.append((a, steer))
        v = v_next
    return torch.tensor(out, dtype=torch.float32)


class ActionTokenPlanner:
    """A GPT world model with action tokens as a planner: `plan(observation)` -> controls [H, 2]; the trajectory
    [H, 3] (poses in the current ego frame) and the action tokens [H, S] it came from are kept in `trajectory`
    and `tokens`."""

    def __init__(self, model: torch.nn.Module, bounds: ActionBounds, horizon: int, *, context_frames: int,
                 hz: float, seed: int = 0, name: str = "gpt"):
        if getattr(model, "action_tokenizer", None) is None or not callable(getattr(model, "plan", None)):
            actions = getattr(getattr(model, "cfg", None), "actions", None)
            raise PlanningError(f"the 'gpt' planner needs a gpt_world run with model.actions='drivinggpt' or "
                                f"'drivingworld' (it predicts its own actions), got {type(model).__name__}"
                                + (f" with model.actions={actions!r}" if actions else ""))
        if getattr(model, "tokenizer", None) is None:
            raise PlanningError("the GPT world model has no tokenizer (model.tokenizer is empty): it cannot read "
                                "the observed occupancy")
        if context_frames < 1:
            raise PlanningError(f"context_frames must be >= 1, got {context_frames}")
        self.model, self.bounds, self.horizon, self.name = model.eval(), bounds, horizon, name
        self.context_frames, self.dt = context_frames, 1.0 / hz
        self.device = next(model.parameters()).device
        self.seed = seed
        self.reset(seed)
        self.tokens: torch.Tensor | None = None
        self.motion: torch.Tensor | None = None
        self.trajectory: torch.Tensor | None = None

    def reset(self, seed: int | None = None) -> None:
        """Reseed the sampler of the imagined frames (the same seed replays the same plans)."""
        self.seed = self.seed if seed is None else seed
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)

    @torch.no_grad()
    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        """[H, A] controls driving the GPT's predicted trajectory, inside the action limits."""
        if not isinstance(observation, PlanningObservation):
            raise PlanningError(f"the 'gpt' planner plans from a PlanningObservation, got {type(observation).__name__}")
        if len(observation.occ) < self.context_frames:
            raise PlanningError(f"the model needs {self.context_frames} context frames, the observation has "
                                f"{len(observation.occ)}")
        obs = observation.last(self.context_frames)
        context = self.model.encode(torch.as_tensor(np.asarray(obs.occ), device=self.device)[None])  # [1, T, h, w]
        past = relative_steps(torch.as_tensor(np.asarray(obs.ego_pose, np.float64)))[None].float()  # [1, T-1, 3]
        tokens, motion = self.model.plan(context, past.to(self.device), self.horizon, generator=self.generator)
        self.tokens, self.motion = tokens[0].cpu(), motion[0].cpu()  # [H, S], [H, 3]
        self.trajectory = integrate_steps(self.motion.double())[1:].float()  # [H, 3] in the current ego frame
        return self.bounds.clip(controls_from_motion(self.motion, obs.speed, self.dt))

    def act(self, observation: Any, goal: Any = None) -> np.ndarray:
        """[A] the first control of a fresh plan."""
        return self.plan(observation, goal)[0].numpy().astype(np.float32)
