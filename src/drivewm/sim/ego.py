"""Ego vehicle: the kinematic bicycle model about the rear axle, with action limits.

State (x, y, yaw, v) at the rear-axle centre; actions: acceleration a (m/s^2) and front-wheel
steering angle delta (rad). With delta constant the path has constant curvature
kappa = tan(delta) / L (L the wheelbase) whatever the speed profile, so a step with constant
inputs is integrated exactly: the distance travelled is that of constant acceleration (speed
clamped to [0, v_max]) and the pose moves along a circular arc of that length
(Kong et al., "Kinematic and dynamic vehicle models for autonomous driving control design", IV 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivewm.geometry import ego_to_world, wrap_angle
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WHEELBASE, EGO_WIDTH


@dataclass
class EgoState:
    x: float
    y: float
    yaw: float
    v: float

    def pose(self) -> np.ndarray:
        return np.array([self.x, self.y, self.yaw])

    def box(self) -> tuple[float, float, float, float, float]:
        """Footprint (centre x, centre y, yaw, length, width) in the world frame."""
        cx, cy = ego_to_world(np.array([EGO_BOX_OFFSET_X, 0.0]), self.pose())
        return (cx, cy, self.yaw, EGO_LENGTH, EGO_WIDTH)


def travel_distance(v: float, a: float, dt: float, v_max: float) -> tuple[float, float]:
    """Distance covered in dt from speed v under constant acceleration a, speed kept in [0, v_max]."""
    if a < 0 and v + a * dt < 0:
        return v * v / (-2 * a), 0.0
    if a > 0 and v + a * dt > v_max:
        t1 = max(0.0, (v_max - v) / a)
        return v * t1 + 0.5 * a * t1 * t1 + v_max * (dt - t1), v_max
    return v * dt + 0.5 * a * dt * dt, v + a * dt


def bicycle_step(state: EgoState, accel: float, steer: float, dt: float, v_max: float,
                 wheelbase: float = EGO_WHEELBASE) -> EgoState:
    """Exact integration of the kinematic bicycle model over dt with constant (accel, steer)."""
    dist, v_new = travel_distance(state.v, accel, dt, v_max)
    kappa = np.tan(steer) / wheelbase
    dyaw = kappa * dist
    if abs(dyaw) < 1e-9:
        x = state.x + dist * np.cos(state.yaw)
        y = state.y + dist * np.sin(state.yaw)
    else:
        x = state.x + (np.sin(state.yaw + dyaw) - np.sin(state.yaw)) / kappa
        y = state.y - (np.cos(state.yaw + dyaw) - np.cos(state.yaw)) / kappa
    yaw = float(wrap_angle(state.yaw + dyaw))
    return EgoState(x=float(x), y=float(y), yaw=yaw, v=float(v_new))
