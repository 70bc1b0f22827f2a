"""Planners that need no world model, evaluated through the same code as the model-based ones.

- `ExpertPlanner`: the simulator's scripted expert (pure pursuit + IDM); its plan is the expert
  played forward on a clone of the live simulator.
- `ConstantVelocityPlanner`: zero acceleration, zero steering (keep the current speed and heading).
- `RandomPlanner`: actions drawn uniformly inside the limits, seeded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drivewm.planning.config import ActionBounds
from drivewm.planning.sim_model import scenario_of
from drivewm.sim.expert import ExpertDriver


class _SimplePlanner:
    name = "simple"

    def __init__(self, bounds: ActionBounds, horizon: int, seed: int = 0):
        self.bounds, self.horizon, self.seed = bounds, horizon, seed

    def reset(self, seed: int | None = None) -> None:
        self.seed = self.seed if seed is None else seed

    def act(self, observation: Any, goal: Any = None) -> np.ndarray:
        return self.plan(observation, goal)[0].numpy().astype(np.float32)

    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define plan")


class ConstantVelocityPlanner(_SimplePlanner):
    name = "constant-velocity"

    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        return self.bounds.clip(torch.zeros(self.horizon, self.bounds.dim))


class RandomPlanner(_SimplePlanner):
    name = "random"

    def __init__(self, bounds: ActionBounds, horizon: int, seed: int = 0):
        super().__init__(bounds, horizon, seed)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        low, high = self.bounds.tensors()
        u = torch.rand(self.horizon, self.bounds.dim, generator=self.generator)
        return low + u * (high - low)


class ExpertPlanner(_SimplePlanner):
    """The scripted expert; needs the live simulator in the observation."""

    name = "expert"

    def __init__(self, bounds: ActionBounds, horizon: int, seed: int = 0):
        super().__init__(bounds, horizon, seed)
        self.driver = ExpertDriver(noise=0.0, seed=seed)

    def act(self, observation: Any, goal: Any = None) -> np.ndarray:
        return self.bounds.clip(torch.as_tensor(self.driver.act(scenario_of(observation)))).numpy().astype(np.float32)

    def plan(self, observation: Any, goal: Any = None) -> torch.Tensor:
        sc = scenario_of(observation).clone()
        out = []
        for _ in range(self.horizon):
            a = self.driver.act(sc)
            out.append(a)
            sc.step(a)
        return self.bounds.clip(torch.as_tensor(np.stack(out), dtype=torch.float32))
