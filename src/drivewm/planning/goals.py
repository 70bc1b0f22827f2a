"""Goals for driving: a route waypoint, or (V-JEPA 2-AC style, arXiv 2506.09985) the observation the
expert reached H seconds later, encoded by the planning model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drivewm.planning.config import PlanningError
from drivewm.planning.costs import EmbeddingGoal
from drivewm.planning.observation import PlanningObservation
from drivewm.sim.expert import ExpertDriver
from drivewm.sim.scenario import Scenario
from drivewm.sim.sensors.occupancy import OccupancyRenderer


def waypoint_goal(point: Any, *, max_speed: float, seconds: float) -> torch.Tensor:
    """A [2] waypoint in the ego frame; unreachable (farther than max_speed * seconds) or malformed: an error."""
    p = torch.as_tensor(np.asarray(point, np.float32))
    if p.shape != (2,) or not torch.isfinite(p).all():
        raise PlanningError(f"a waypoint goal must be two finite numbers (x, y) in the ego frame, got {tuple(p.shape)} {p.tolist()}")
    reach = max_speed * seconds
    if float(p.norm()) > reach:
        raise PlanningError(
            f"waypoint goal {p.tolist()} is {float(p.norm()):.1f} m away, unreachable within {seconds:g} s "
            f"at the speed limit {max_speed:g} m/s ({reach:.1f} m)"
        )
    return p


def expert_future_occupancy(sc: Scenario, horizon: int, renderer: OccupancyRenderer,
                            every_step: bool = False) -> np.ndarray:
    """Occupancy [X, Y, Z] the expert sees after driving `horizon` frames from the current state (on a
    clone); with `every_step`, the observations after each of the frames [horizon, X, Y, Z]."""
    c = sc.clone()
    expert = ExpertDriver()
    seen = []
    for k in range(horizon):
        c.step(expert.act(c))
        if every_step or k == horizon - 1:
            boxes, valid = c.agents_ego_frame()
            seen.append(renderer.render(c.ego.pose(), boxes, valid))
    return np.stack(seen) if every_step else seen[-1]


def embedding_goal(model: Any, goal_occ: np.ndarray, observation: PlanningObservation | None = None) -> EmbeddingGoal:
    """Encode a goal observation [X, Y, Z] (or one per planned step, [H, X, Y, Z]) with a planning model's
    encoder; the route rides along for shaping."""
    occ = np.asarray(goal_occ)
    grid = occ.shape[-3:]
    if occ.ndim not in (3, 4) or (observation is not None and grid != observation.occ.shape[1:]):
        want = observation.occ.shape[1:] if observation is not None else "[X, Y, Z]"
        raise PlanningError(f"goal observation {occ.shape} must be [X, Y, Z] or [H, X, Y, Z] with the grid {want}")
    z = model.encode(occ[None])[0] if occ.ndim == 3 else model.encode(occ)  # [N, D] or [H, N, D]
    route = None if observation is None or observation.route is None else torch.as_tensor(observation.route)
    return EmbeddingGoal(embedding=z, route=route)


class ExpertGoal:
    """Closed loop: at every decision, the goal is the expert's observation `horizon` frames ahead, encoded
    (with `every_step`, its observation after each of those frames: one goal per planned step)."""

    def __init__(self, model: Any, horizon: int, every_step: bool = False):
        self.model, self.horizon, self.every_step = model, horizon, every_step
        self._renderers: dict[int, OccupancyRenderer] = {}

    def __call__(self, sc: Scenario, observation: PlanningObservation) -> EmbeddingGoal:
        key = id(sc.road)
        if key not in self._renderers:
            self._renderers = {key: OccupancyRenderer(sc.road, sc.grid)}
        occ = expert_future_occupancy(sc, self.horizon, self._renderers[key], self.every_step)
        return embedding_goal(self.model, occ, observation)
