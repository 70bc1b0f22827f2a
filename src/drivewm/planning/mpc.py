"""Receding-horizon planning through any world model: one protocol for the simulator and learned models.

A planning model turns the current observation into an internal state (``observe``) and predicts,
for a batch of action sequences, what happens next (``rollout``), without changing that state.
The simulator itself (via ``DrivingEnv.clone()``), a JEPA predictor in embedding space and a token
world model with decoding all implement it, so the planner cannot tell them apart. A cost scores the
predicted rollouts; CEM or MPPI searches the action sequences; the controller executes only the
first action and replans (receding horizon, as V-JEPA 2-AC, arXiv 2506.09985); MPPI, and CEM with
``cem.warm_start`` (drivewm's), start from the previous plan shifted by one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.optimizers import CEM, MPPI, PlanResult


@dataclass
class Rollout:
    """What a planning model predicts for S action sequences of H steps."""

    ego: torch.Tensor
    """[S, H, 3] ego x, y, yaw after each step, in the ego frame of the current observation."""
    speed: torch.Tensor
    """[S, H] ego speed after each step (m/s)."""
    embeddings: torch.Tensor | None = None
    """[S, H, N, D] predicted embeddings (JEPA models)."""
    occupancy: torch.Tensor | None = None
    """[S, H, X, Y, Z] predicted class ids, each frame in its own ego frame (token models, simulator)."""
    events: dict[str, torch.Tensor] = field(default_factory=dict)
    """[S, H] exact per-step outcomes where the model knows them (the simulator): collision, offroad, progress."""
    prev_action: torch.Tensor | None = None
    """[A] the action executed just before the plan (set by the planner), so comfort covers the junction."""
    observed: torch.Tensor | None = None
    """[X, Y, Z] the last observed occupancy in the current ego frame (models that plan from observations)."""
    agents: torch.Tensor | None = None
    """[K, 7] tracked road users now (`PlanningObservation.agents`), when the observation has them."""


class PlanningModel(Protocol):
    """A world model a planner can search through."""

    action_dim: int
    device: torch.device

    def observe(self, observation: Any) -> None:
        """Set the state from which rollouts start."""

    def rollout(self, actions: torch.Tensor) -> Rollout:
        """Predict S futures for actions [S, H, A]; the observed state is left unchanged."""


class Cost(Protocol):
    def __call__(self, rollout: Rollout, actions: torch.Tensor, goal: Any) -> torch.Tensor:
        """[S] cost of each sequence (lower is better)."""


class RecedingHorizonPlanner:
    """Plan with CEM/MPPI through a model, execute the first action, shift the plan, replan."""

    def __init__(self, model: PlanningModel, optimizer: CEM | MPPI, cost: Cost, name: str = "planner"):
        if model.action_dim != optimizer.bounds.dim:
            raise PlanningError(
                f"world model action dim {model.action_dim} != planner action dim {optimizer.bounds.dim} "
                f"(bounds low={optimizer.bounds.low}, high={optimizer.bounds.high})"
            )
        self.model, self.optimizer, self.cost, self.name = model, optimizer, cost, name
        self.warm: torch.Tensor | None = None
        self._executed: torch.Tensor | None = None
        self.last: PlanResult | None = None
        self.last_rollout: Rollout | None = None

    @property
    def bounds(self) -> ActionBounds:
        return self.optimizer.bounds

    @property
    def horizon(self) -> int:
        return self.optimizer.horizon

    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start and reseed the sampler (the same seed replays the same plans)."""
        self.warm, self.last, self.last_rollout, self._executed = None, None, None, None
        self.optimizer.reseed(seed)

    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        """[H, A] the optimised action sequence from this observation, inside the action limits."""
        self.model.observe(observation)
        prev = self.prev_action(observation)

        def objective(actions: torch.Tensor) -> torch.Tensor:
            rollout = self.model.rollout(actions)
            rollout.prev_action = prev
            return self.cost(rollout, actions, goal)

        with torch.no_grad():
            self.last = self.optimizer.optimize(objective, self.warm if self.optimizer.warm_start else None)
            self.last_rollout = self.model.rollout(self.last.actions[None])
        return self.last.actions.detach().cpu()

    def prev_action(self, observation: Any) -> torch.Tensor | None:
        """The last executed action: from the observation's history, else the one this planner chose last."""
        hist = getattr(observation, "action", None)
        if isinstance(hist, np.ndarray) and hist.ndim == 2 and hist.shape[-1] == self.bounds.dim:
            return torch.as_tensor(hist[-1], dtype=torch.float32, device=self.optimizer.device)
        return self._executed

    def act(self, observation: Any, goal: Any = None) -> np.ndarray:
        """[A] the first action of a fresh plan; the rest, shifted by one step, is kept for a warm start."""
        plan = self.plan(observation, goal).to(self.optimizer.device)
        self.warm = torch.cat([plan[1:], plan[-1:]], dim=0)  # [H, A] shifted; the last action repeated
        self._executed = plan[0]
        return plan[0].cpu().numpy().astype(np.float32)
