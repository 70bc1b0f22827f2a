"""The simulator itself as the planner's world model, behind the same `observe` / `rollout` protocol.

`SimulatorModel.observe(obs)` takes the live simulator from the observation (a `DrivingEnv` or a
`Scenario`) and never steps it; rollouts run on clones (`clone()`, a deep copy of the full state).

- ``mode="exact"``: every candidate sequence is played on its own clone, frame by frame; the
  outcomes (collision, off-road, route progress) are the simulator's own. A perfect model, and
  as slow as the simulator (S x H frames per scoring).
- ``mode="replay"``: the traffic is played once on a clone with the first candidate (the current
  plan), and every candidate's ego motion is integrated in a batch with the simulator's own
  bicycle model and checked against the replayed road users and the static world raster with
  the simulator's rules (footprint overlap, obstacles taller than 0.3 m, corners off the
  drivable surface). Exact for the ego and the map; it only misses how other road users would
  react to a different ego path within the horizon. H frames per scoring instead of S x H.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.costs import route_progress
from drivewm.geometry import ego_to_world, to_frame, world_to_ego
from drivewm.planning.kinematics import rollout_bicycle
from drivewm.planning.mpc import Rollout
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WIDTH
from drivewm.sim.rasterize import CAR, DRIVEABLE
from drivewm.sim.scenario import Scenario

MODES = ("exact", "replay")
OBSTACLE_HEIGHT = 0.3  # the simulator counts static cells taller than this as obstacles


def scenario_of(obj: Any) -> Scenario:
    """The Scenario behind a DrivingEnv, a PlanningObservation or a Scenario."""
    for cand in (obj, getattr(obj, "env", None)):
        if isinstance(cand, Scenario):
            return cand
        sc = getattr(cand, "scenario", None)
        if isinstance(sc, Scenario):
            return sc
    raise PlanningError(
        f"the simulator model needs the live simulator (a DrivingEnv, a Scenario, or an observation with .env), "
        f"got {type(obj).__name__}"
    )


def bounds_of(sc_or_cfg: Any) -> ActionBounds:
    """The simulator's action limits: accel in [-max_brake, max_accel], steer in [-max_steer, max_steer]."""
    cfg = getattr(sc_or_cfg, "cfg", sc_or_cfg)
    return ActionBounds(low=(-cfg.max_brake, -cfg.max_steer), high=(cfg.max_accel, cfg.max_steer))


def _footprint_points(poses: torch.Tensor) -> torch.Tensor:
    """World sample points [S, H, 45, 2] of the ego box (9 x 5 grid, corners included) at poses [S, H, 3]."""
    lx, ly = torch.meshgrid(torch.linspace(-EGO_LENGTH / 2, EGO_LENGTH / 2, 9, dtype=poses.dtype),
                            torch.linspace(-EGO_WIDTH / 2, EGO_WIDTH / 2, 5, dtype=poses.dtype), indexing="ij")
    lx, ly = lx.reshape(-1) + EGO_BOX_OFFSET_X, ly.reshape(-1)  # [45] in the rear-axle frame
    return ego_to_world(torch.stack([lx, ly], -1), poses[..., None, :])


CORNERS = [0, 4, 40, 44]  # indices of the four box corners in the 9 x 5 sample grid


class SimulatorModel:
    """The simulator as a perfect (exact) or traffic-replaying world model."""

    def __init__(self, mode: str = "replay", device: str = "cpu"):
        if mode not in MODES:
            raise PlanningError(f"simulator model mode {mode!r} unknown; valid: {', '.join(MODES)}")
        self.mode, self.device = mode, torch.device(device)
        self.action_dim = 2
        self.scenario: Scenario | None = None
        self._route: torch.Tensor | None = None

    def observe(self, observation: Any) -> None:
        self.scenario = scenario_of(observation)
        sc = self.scenario
        pts = sc.route_points()
        s = sc.route_s0 + 2.0 * np.arange(len(pts))  # route_points are 2 m apart from route_s0
        keep = (s >= sc.ego_s - 10.0) & (s <= sc.ego_s + sc.cfg.max_speed * 10.0)
        self._route = torch.as_tensor(pts[keep] if keep.sum() >= 2 else pts[-2:], dtype=torch.float64)
        self._route_s = float(s[keep][0]) if keep.sum() >= 2 else float(s[-2])

    def _current(self) -> Scenario:
        if self.scenario is None:
            raise PlanningError("SimulatorModel.rollout called before observe()")
        return self.scenario

    def rollout(self, actions: torch.Tensor) -> Rollout:
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise PlanningError(f"actions must be [S, H, {self.action_dim}], got {tuple(actions.shape)}")
        return self._exact(actions) if self.mode == "exact" else self._replay(actions)

    def _frame(self, sc: Scenario, poses_world: torch.Tensor, speeds: torch.Tensor, ev: dict) -> Rollout:
        origin = torch.tensor(sc.ego.pose(), dtype=torch.float64)
        ego = to_frame(poses_world.double(), origin).float().to(self.device)
        ev = {k: (v.float() if v.is_floating_point() else v).to(self.device) for k, v in ev.items()}
        return Rollout(ego=ego, speed=speeds.float().to(self.device), events=ev)

    def _exact(self, actions: torch.Tensor) -> Rollout:
        sc = self._current()
        a = actions.detach().cpu().double().numpy()
        s, h = a.shape[:2]
        poses, speeds = np.zeros((s, h, 3)), np.zeros((s, h))
        coll, off, prog = np.zeros((s, h), bool), np.zeros((s, h), bool), np.zeros((s, h))
        for i in range(s):
            c = sc.clone()
            for k in range(h):
                c.step(a[i, k])
                poses[i, k], speeds[i, k] = c.ego.pose(), c.ego.v
                coll[i, k], off[i, k], prog[i, k] = c.collided, c.offroad_now, c.ego_s - sc.ego_s
        poses_t = torch.from_numpy(poses)
        ev = {"collision": torch.from_numpy(coll), "offroad": torch.from_numpy(off), "progress": torch.from_numpy(prog),
              "lateral": self._lateral(poses_t)}
        return self._frame(sc, poses_t, torch.from_numpy(speeds), ev)

    def _lateral(self, poses: torch.Tensor) -> torch.Tensor:
        """[S, H] distance (m) of the rear axle from the route's centre line."""
        _, lat = route_progress(poses[..., :2].reshape(-1, 2).double(), self._route)
        return lat.reshape(poses.shape[:2])

    def _replay(self, actions: torch.Tensor) -> Rollout:
        sc = self._current()
        s, h = actions.shape[:2]
        # Road users over the horizon, from one clone driven by the first (nominal) candidate.
        c = sc.clone()
        boxes_t = []
        a0 = actions[0].detach().cpu().double().numpy()
        # Only road users the ego could reach within the horizon matter (max speed, plus box sizes).
        reach = sc.cfg.max_speed * h / sc.cfg.hz + 15.0
        for k in range(h):
            c.step(a0[k])
            boxes, _, active = c.agent_boxes_world()
            near = active & (np.hypot(boxes[:, 0] - sc.ego.x, boxes[:, 1] - sc.ego.y) < reach)
            boxes_t.append(torch.as_tensor(boxes[near], dtype=torch.float32))
        start = torch.tensor([sc.ego.x, sc.ego.y, sc.ego.yaw, sc.ego.v], dtype=torch.float64)
        dt = 1.0 / sc.cfg.hz
        poses, speeds = rollout_bicycle(start, actions.detach().cpu().double(), dt, sc.cfg.max_speed)  # [S, H, 3]
        pts = _footprint_points(poses).float()  # [S, H, 45, 2]
        coll = torch.zeros(s, h, dtype=torch.bool)
        for k, b in enumerate(boxes_t):
            if len(b) == 0:
                continue
            local = world_to_ego(pts[:, k, :, None, :], b[:, [0, 1, 6]])  # [S, 45, K, 2] in each box frame
            inside = (local[..., 0].abs() <= b[:, 3] / 2) & (local[..., 1].abs() <= b[:, 4] / 2)
            coll[:, k] = inside.any(-1).any(-1)
        ix, iy = sc.road.cell_index(pts.numpy())
        static = torch.from_numpy(sc.road.height[ix, iy] > OBSTACLE_HEIGHT).any(-1)  # [S, H]
        corner_cls = sc.road.cls[ix[..., CORNERS], iy[..., CORNERS]]  # [S, H, 4]
        off = torch.from_numpy(np.any(~np.isin(corner_cls, (*DRIVEABLE, CAR)), axis=-1))  # [S, H]
        arc, lat = route_progress(poses[..., :2].reshape(-1, 2), self._route)
        arc_now, _ = route_progress(start[None, :2], self._route)
        prog = (arc - arc_now).reshape(s, h)
        ev = {"collision": coll | static, "offroad": off, "progress": prog, "lateral": lat.reshape(s, h)}
        return self._frame(sc, poses, speeds, ev)
