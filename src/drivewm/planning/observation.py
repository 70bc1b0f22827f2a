"""What a planner is given at each decision: the recent past of the scene, the ego state and the route.

The same observation serves every model: the simulator-as-model reads `env` (and clones it),
learned models read the occupancy history, poses and actions, as a window of the data contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivewm.planning.config import PlanningError


@dataclass
class PlanningObservation:
    """The past `T` frames up to now (the last frame is the current one)."""

    occ: np.ndarray
    """uint8 [T, X, Y, Z] occupancy, each frame in its own ego frame."""
    ego_pose: np.ndarray
    """float32 [T, 3] world poses (x, y, yaw) of the ego at those frames (rear axle)."""
    action: np.ndarray
    """float32 [T, 2] action applied from frame t to t+1 (the last row: the previous action, repeated)."""
    speed: float
    """Current ego speed (m/s)."""
    route: np.ndarray | None = None
    """float32 [P, 2] the route ahead in the current ego frame (for progress costs and waypoint goals)."""
    env: Any = None
    """The live simulator, when planning may use it as a perfect model (cloned, never stepped)."""
    agents: np.ndarray | None = None
    """float32 [K, 7] tracked road users now, in the current ego frame: x, y, yaw, length, width, and the
    ground velocity vx, vy (m/s, ego-frame axes). What a perception stack's tracker would hand the
    planner; used by the safety term's constant-velocity check (`costs.ObservedSafety`)."""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.occ)
        if self.occ.ndim != 4 or t < 1:
            raise PlanningError(f"observation.occ must be [T>=1, X, Y, Z], got {self.occ.shape}")
        if self.ego_pose.shape != (t, 3):
            raise PlanningError(f"observation.ego_pose must be [{t}, 3], got {self.ego_pose.shape}")
        if self.action.ndim != 2 or len(self.action) != t:
            raise PlanningError(f"observation.action must be [{t}, A], got {self.action.shape}")
        if not np.isfinite(self.ego_pose).all() or not np.isfinite(self.speed):
            raise PlanningError("observation has non-finite ego pose or speed")
        if self.agents is not None:
            a = np.asarray(self.agents)
            if a.ndim != 2 or a.shape[1] != 7:
                raise PlanningError(f"observation.agents must be [K, 7] (x, y, yaw, length, width, vx, vy), got {a.shape}")
            if not np.isfinite(a).all():
                raise PlanningError("observation.agents has non-finite values")

    def last(self, frames: int) -> "PlanningObservation":
        """The same observation keeping only the last `frames` frames of history."""
        return PlanningObservation(
            occ=self.occ[-frames:], ego_pose=self.ego_pose[-frames:], action=self.action[-frames:],
            speed=self.speed, route=self.route, env=self.env, agents=self.agents, extras=self.extras,
        )
