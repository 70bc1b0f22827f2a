"""Batched ego kinematics on the planner's device: the simulator's exact bicycle step, vectorised in torch.

`drivewm.sim.ego.bicycle_step` integrates one ego state in numpy; a planner needs the same
integration for thousands of candidate action sequences at once on the model's device, so this is
the same closed form (constant acceleration with the speed clamped to [0, v_max], then a circular
arc of curvature tan(steer) / L about the rear axle; Kong et al., IV 2015) over tensors [S].
tests/planning/test_kinematics.py checks it against the simulator's function.
"""

from __future__ import annotations

import torch

from drivewm.geometry import wrap_angle
from drivewm.sim.config import EGO_WHEELBASE


def travel(v: torch.Tensor, a: torch.Tensor, dt: float, v_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance and final speed [S] under constant acceleration with the speed kept in [0, v_max]."""
    free_d, free_v = v * dt + 0.5 * a * dt * dt, v + a * dt
    safe_a = torch.where(a.abs() > 1e-12, a, torch.ones_like(a))
    stop_d = v * v / (-2 * safe_a)  # braking to a standstill before dt ends
    t1 = ((v_max - v) / safe_a).clamp_min(0.0)  # reaching v_max before dt ends
    cap_d = v * t1 + 0.5 * a * t1 * t1 + v_max * (dt - t1)
    stops = (a < 0) & (free_v < 0)
    caps = (a > 0) & (free_v > v_max)
    d = torch.where(stops, stop_d, torch.where(caps, cap_d, free_d))
    vn = torch.where(stops, torch.zeros_like(v), torch.where(caps, torch.full_like(v, v_max), free_v))
    return d, vn


def rollout_bicycle(
    state: torch.Tensor, actions: torch.Tensor, dt: float, v_max: float, wheelbase: float = EGO_WHEELBASE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poses [S, H, 3] (x, y, yaw) and speeds [S, H] after each step, from state [S, 4] or [4] (x, y, yaw, v).

    Actions [S, H, 2] (accel, steer) are held constant over each step of dt seconds.
    """
    s, h = actions.shape[:2]
    state = state.to(actions).expand(s, 4)
    x, y, yaw, v = state.unbind(-1)
    poses, speeds = [], []
    for k in range(h):
        a, steer = actions[:, k, 0], actions[:, k, 1]
        dist, v = travel(v, a, dt, v_max)
        kappa = torch.tan(steer) / wheelbase
        dyaw = kappa * dist
        straight = dyaw.abs() < 1e-9
        safe_k = torch.where(straight, torch.ones_like(kappa), kappa)
        x_arc = x + (torch.sin(yaw + dyaw) - torch.sin(yaw)) / safe_k
        y_arc = y - (torch.cos(yaw + dyaw) - torch.cos(yaw)) / safe_k
        x = torch.where(straight, x + dist * torch.cos(yaw), x_arc)
        y = torch.where(straight, y + dist * torch.sin(yaw), y_arc)
        yaw = wrap_angle(yaw + dyaw)
        poses.append(torch.stack([x, y, yaw], -1))
        speeds.append(v)
    return torch.stack(poses, 1), torch.stack(speeds, 1)

