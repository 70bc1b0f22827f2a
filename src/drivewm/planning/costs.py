"""Planning costs in the two spaces a world model predicts in, plus the exact one the simulator knows.

- `EmbeddingGoalCost`: V-JEPA 2-AC's energy (arXiv 2506.09985), the L1 distance between the
  predicted embedding at the horizon and the goal observation's embedding, plus optional shaping
  (the same distance at intermediate steps, progress toward a route waypoint, comfort) and an
  optional safety term on the last observation held still (`ObservedSafety`).
- `OccupancyCost`: on decoded future occupancy (each frame in its own ego frame, the ego at the
  origin): collisions of the ego footprint with occupied road-user / obstacle voxels, off-road
  footprint cells, progress along the route, comfort (jerk, steering rate).
- `SimulatorCost`: the same terms from the simulator's exact per-step outcomes (collision,
  off-road, progress), used when the simulator itself is the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from drivewm.geometry import column_index, rotate, world_to_ego
from drivewm.data.spec import GridSpec
from drivewm.planning.config import PlanningError
from drivewm.planning.mpc import Rollout
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WIDTH

OBSTACLE_CLASSES = ("barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
                    "traffic_cone", "trailer", "truck", "manmade", "vegetation")
# The simulator paints crossings as other_flat on the road (sim/rasterize.py), so both are drivable here;
# on nuScenes, where other_flat means traffic islands and the like, pass drivable=("driveable_surface",).
DRIVABLE_CLASSES = ("driveable_surface", "other_flat")
# nuPlan's / NAVSIM's comfort bound on lateral acceleration (m/s^2), arXiv 2406.15349.
LAT_ACCEL_LIMIT = 4.89


@dataclass(kw_only=True)
class CostWeights:
    """Weights of the cost terms; each term is per planned step unless said otherwise."""

    collision: float = 100.0
    """Per step with any obstacle voxel inside the ego footprint (occupancy) or a recorded collision (simulator)."""
    near: float = 2.0
    """Fraction of the safety margin ring around the footprint that is occupied (keeps distance)."""
    offroad: float = 20.0
    """Fraction of the footprint off the drivable surface."""
    progress: float = 1.0
    """Minus metres of progress along the route by the horizon."""
    lateral: float = 0.5
    """Squared lateral distance (m^2) of the final position from the route."""
    jerk: float = 0.1
    """Squared jerk (m/s^3)^2, mean over steps."""
    steer_rate: float = 1.0
    """Squared steering rate (rad/s)^2, mean over steps."""
    accel: float = 0.0
    """Squared acceleration command (m/s^2)^2, mean over steps. Besides comfort, it keeps a receding-horizon
    search from parking its mean at full brake while stopped, where every braking command does the same."""
    lat_accel: float = 0.0
    """Squared lateral acceleration beyond LAT_ACCEL_LIMIT (m/s^2)^2, mean over steps: the kinematic model
    lets a plan steer hard at speed (a full-lock turn at 17 m/s would pull ~70 m/s^2), which no tyre holds."""
    goal_l1: float = 1.0
    """Embedding space: weight of the L1 energy at the horizon."""
    goal_l1_intermediate: float = 0.0
    """Embedding space: weight of the same energy at intermediate steps (shaping)."""
    margin: float = 1.0
    """Width (m) of the safety ring around the ego footprint."""


def comfort(actions: torch.Tensor, dt: float, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared jerk and steering rate [S] of actions [S, H, 2] (accel, steer) at step dt.

    With `prev` [2], the action executed before the plan, the first change counts too.
    """
    if prev is not None:
        actions = torch.cat([prev.to(actions)[None, None].expand(actions.shape[0], 1, -1), actions], 1)
    if actions.shape[1] < 2:
        z = actions.new_zeros(actions.shape[0])
        return z, z
    d = torch.diff(actions, dim=1) / dt  # [S, H-1, 2]
    return (d[..., 0] ** 2).mean(1), (d[..., 1] ** 2).mean(1)


def lateral_acceleration(rollout: Rollout, dt: float) -> torch.Tensor:
    """[S, H] speed x yaw rate of each planned step (the current heading is yaw 0 in the ego frame)."""
    yaw = rollout.ego[..., 2]
    yaw_rate = torch.diff(yaw, dim=1, prepend=torch.zeros_like(yaw[:, :1])) / dt
    return rollout.speed * yaw_rate


def comfort_cost(actions: torch.Tensor, dt: float, rollout: Rollout, w: CostWeights) -> torch.Tensor:
    """[S] weighted comfort terms: jerk, steering rate and acceleration of actions [S, H, 2], and lateral
    acceleration beyond the comfort bound along the rollout's path."""
    jerk, steer = comfort(actions, dt, rollout.prev_action)
    cost = w.jerk * jerk + w.steer_rate * steer + w.accel * (actions[..., 0] ** 2).mean(1)
    if w.lat_accel:
        excess = (lateral_acceleration(rollout, dt).abs() - LAT_ACCEL_LIMIT).clamp_min(0.0)
        cost = cost + w.lat_accel * (excess**2).mean(1)
    return cost


def route_progress(ego: torch.Tensor, route: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arc length along the route polyline [P, 2] of the projection of points ego [S, 2], and lateral distance.

    The route is in the same frame as the points and starts near the ego; progress is measured from
    the route's first point.
    """
    a, b = route[:-1], route[1:]  # [P-1, 2]
    seg = b - a
    seg_len = seg.norm(dim=-1).clamp_min(1e-6)  # [P-1]
    rel = ego[:, None, :] - a[None]  # [S, P-1, 2]
    t = ((rel * seg[None]).sum(-1) / seg_len[None] ** 2).clamp(0, 1)  # [S, P-1]
    closest = a[None] + t[..., None] * seg[None]  # [S, P-1, 2]
    dist = (ego[:, None, :] - closest).norm(dim=-1)  # [S, P-1]
    best = dist.argmin(dim=1)  # [S]
    cum = torch.cat([seg_len.new_zeros(1), seg_len.cumsum(0)])  # [P]
    s_idx = torch.arange(ego.shape[0], device=ego.device)
    arc = cum[best] + t[s_idx, best] * seg_len[best]
    return arc, dist[s_idx, best]


def check_route(route: Any, device: torch.device) -> torch.Tensor:
    """A route/waypoint goal as a [P, 2] float tensor (a single waypoint becomes a 2-point route from the origin)."""
    r = torch.as_tensor(route, dtype=torch.float32, device=device)
    if r.ndim == 1 and r.shape[0] == 2:
        r = torch.stack([torch.zeros_like(r), r])
    if r.ndim != 2 or r.shape[1] != 2 or r.shape[0] < 2:
        raise PlanningError(f"route goal must be [P>=2, 2] points (or one [2] waypoint), got {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise PlanningError("route goal has non-finite points")
    return r


class SimulatorCost:
    """Exact cost from the simulator's own per-step outcomes (the simulator as a perfect model)."""

    def __init__(self, weights: CostWeights | None = None, dt: float = 0.5):
        self.w, self.dt = weights or CostWeights(), dt

    def __call__(self, rollout: Rollout, actions: torch.Tensor, goal: Any) -> torch.Tensor:
        w, ev = self.w, rollout.events
        for key in ("collision", "offroad", "progress"):
            if key not in ev:
                raise PlanningError(f"SimulatorCost needs rollout.events[{key!r}] (the simulator's outcomes)")
        cost = w.collision * ev["collision"].float().sum(1) + w.offroad * ev["offroad"].float().sum(1)
        cost = cost - w.progress * ev["progress"][:, -1]
        if "lateral" in ev:  # keep to the route's lane
            cost = cost + w.lateral * (ev["lateral"] ** 2).sum(1)
        if goal is not None:
            route = check_route(goal, actions.device)
            _, lat = route_progress(rollout.ego[:, -1, :2], route)
            cost = cost + w.lateral * lat**2
        return cost + comfort_cost(actions, self.dt, rollout, w)


class OccupancyCost:
    """Cost of decoded occupancy rollouts: collision, clearance, off-road, route progress, comfort."""

    def __init__(self, grid: GridSpec, weights: CostWeights | None = None, dt: float = 0.5,
                 drivable: tuple[str, ...] = DRIVABLE_CLASSES):
        self.grid, self.w, self.dt = grid, weights or CostWeights(), dt
        xs = torch.as_tensor(grid.voxel_centers(0), dtype=torch.float32)
        ys = torch.as_tensor(grid.voxel_centers(1), dtype=torch.float32)
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")  # [X, Y] cell centres in the ego frame
        gx = gx - EGO_BOX_OFFSET_X  # the ego pose is the rear axle; the box centre sits ahead of it
        half_l, half_w = EGO_LENGTH / 2, EGO_WIDTH / 2
        # Cells whose centre lies in the box, grown by half a voxel so the coarse grids never miss the box.
        pad = grid.voxel_size / 2
        inside = (gx.abs() <= half_l + pad) & (gy.abs() <= half_w + pad)
        ring = (gx.abs() <= half_l + pad + self.w.margin) & (gy.abs() <= half_w + pad + self.w.margin) & ~inside
        self.footprint, self.ring = inside, ring
        n = grid.num_classes
        obstacle = torch.zeros(n, dtype=torch.bool)
        for name in OBSTACLE_CLASSES:
            if name in grid.classes:
                obstacle[grid.classes.index(name)] = True
        self.obstacle_lut = obstacle
        self.drivable_lut = torch.tensor([name in drivable for name in grid.classes], dtype=torch.bool)

    def terms(self, occupancy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-step collision flag, clearance and off-road fraction [S, H] of occupancy [S, H, X, Y, Z]."""
        if occupancy.shape[-3:] != self.grid.shape:
            raise PlanningError(f"occupancy grid {tuple(occupancy.shape[-3:])} does not match the cost's grid {self.grid.shape}")
        occ = occupancy.long()
        lut = self.obstacle_lut.to(occ.device)
        obstacle_col = lut[occ].any(-1)  # [S, H, X, Y] any obstacle voxel in the column
        road_col = self.drivable_lut.to(occ.device)[occ].any(-1)  # [S, H, X, Y]
        fp, ring = self.footprint.to(occ.device), self.ring.to(occ.device)
        collision = obstacle_col[..., fp].any(-1)  # [S, H]
        near = obstacle_col[..., ring].float().mean(-1)
        offroad = 1.0 - road_col[..., fp].float().mean(-1)
        return {"collision": collision, "near": near, "offroad": offroad}

    def scene_cost(self, occupancy: torch.Tensor) -> torch.Tensor:
        """[S] weighted collision, clearance and off-road terms of occupancy [S, H, X, Y, Z], summed over steps."""
        t, w = self.terms(occupancy), self.w
        return (w.collision * t["collision"].float() + w.near * t["near"] + w.offroad * t["offroad"]).sum(1)

    def __call__(self, rollout: Rollout, actions: torch.Tensor, goal: Any) -> torch.Tensor:
        if rollout.occupancy is None:
            raise PlanningError("OccupancyCost needs a model that predicts occupancy (rollout.occupancy is None)")
        cost = self.scene_cost(rollout.occupancy) + _route_terms(rollout, goal, self.w)
        return cost + comfort_cost(actions, self.dt, rollout, self.w)


def _route_terms(rollout: Rollout, goal: Any, w: CostWeights) -> torch.Tensor:
    """-progress along the route and the lateral error at the horizon; plain forward distance without a route."""
    end = rollout.ego[:, -1, :2]  # [S, 2]
    if goal is None:
        return -w.progress * end[:, 0]
    route = check_route(goal, end.device)
    arc, lat = route_progress(end, route)
    return -w.progress * arc + w.lateral * lat**2


@dataclass
class EmbeddingGoal:
    """A goal in embedding space: the encoded goal observation, and optionally a route for shaping."""

    embedding: torch.Tensor
    """[N, D] embedding of the goal observation (e.g. what the expert saw H seconds later), or [H, N, D]:
    one goal per planned step (the expert's observations along the way)."""
    route: torch.Tensor | None = None
    """Optional [P, 2] route in the current ego frame for progress shaping."""
    extras: dict = field(default_factory=dict)


class ObservedSafety:
    """Collision, clearance and off-road of the planned ego footprint against the last observation.

    An embedding carries no explicit obstacle geometry, so the energy alone cannot tell a plan that
    ends near the expert's embedding from one that runs into the slow car in between. This term is
    not the world model's: it scores the ego footprint against the current occupancy held still (the
    `EgoWarpCopyLast` forecast, static world) with `OccupancyCost`'s collision, clearance and off-road
    terms, over the first `steps` planned steps only, since a moving road user held still is wrong
    further out (NAVSIM's time-to-collision check looks 1 s ahead for the same reason, arXiv 2406.15349).

    With `agents=True` and tracked road users in the rollout (`Rollout.agents`), those are taken out of
    the held scene and moved at constant velocity instead, as NAVSIM's TTC check moves them; a voxel
    snapshot cannot see a car about to cross the ego's path.

    The footprint is swept along the path, not only placed at the planned poses: at 16 m/s a 0.5 s
    step moves the ego 8 m, nearly twice its length, so an obstacle between two poses would be
    jumped over. Poses are interpolated from the current one so that consecutive samples lie at most
    one voxel apart; a step costs its worst sample. Only the footprint and ring cells are looked up
    (the same nearest-voxel rule as `warp_occupancy`), not whole warped grids.
    """

    def __init__(self, grid: GridSpec, weights: CostWeights | None = None, steps: int = 3, dt: float = 0.5,
                 agents: bool = False):
        if steps < 1:
            raise PlanningError(f"observed-safety steps must be >= 1, got {steps}")
        self.occupancy_cost, self.steps, self.dt, self.use_agents = OccupancyCost(grid, weights), steps, dt, agents
        xs = torch.as_tensor(grid.voxel_centers(0), dtype=torch.float64)
        ys = torch.as_tensor(grid.voxel_centers(1), dtype=torch.float64)
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")
        self.cells = torch.stack([gx, gy], -1)  # [X, Y, 2] cell centres in a planned pose's frame
        self.footprint_xy = self.cells[self.occupancy_cost.footprint]  # [F, 2]
        self.ring_xy = self.cells[self.occupancy_cost.ring]  # [R, 2]

    def _to_observed_frame(self, poses: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres [C, 2] of each pose [..., 3] -> x, y [..., C] in the observation's ego frame."""
        p = rotate(cells, poses[..., 2:3]) + poses[..., None, :2]  # [..., C, 2], rounded as the warps round
        return p[..., 0], p[..., 1]

    def _lookup(self, column: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """column [X, Y] bool at points (px, py) of the observation's frame; outside the grid is False."""
        ix, iy, inside = column_index(px, py, self.occupancy_cost.grid, *column.shape)
        return column[ix, iy] & inside

    def _in_agents(self, px: torch.Tensor, py: torch.Tensor, agents: torch.Tensor, when: torch.Tensor | None) -> torch.Tensor:
        """Whether points (px, py) [..., C] lie in any agent box [K, 7], each moved by its velocity for
        `when` [...] seconds (None: where they are now). Boxes grow by half a voxel, as the footprint does,
        so a pedestrian thinner than a voxel cannot slip between two cell centres."""
        pad = self.occupancy_cost.grid.voxel_size / 2
        ax, ay = agents[:, 0], agents[:, 1]  # [K]
        if when is not None:
            ax = ax + agents[:, 5] * when[..., None, None]  # [..., 1, K]
            ay = ay + agents[:, 6] * when[..., None, None]
        boxes = torch.stack(torch.broadcast_tensors(ax, ay, agents[:, 2]), -1)  # [..., K, 3] (x, y, yaw)
        local = world_to_ego(torch.stack([px, py], -1)[..., None, :], boxes)  # [..., C, K, 2] in each box frame
        inside = (local[..., 0].abs() <= agents[:, 3] / 2 + pad) & (local[..., 1].abs() <= agents[:, 4] / 2 + pad)
        return inside.any(-1)

    def __call__(self, rollout: Rollout) -> torch.Tensor:
        if rollout.observed is None:
            raise PlanningError("the observed-safety term needs rollout.observed (a model that plans from occupancy)")
        oc, w = self.occupancy_cost, self.occupancy_cost.w
        occ = rollout.observed.long()
        obstacle_col = oc.obstacle_lut.to(occ.device)[occ].any(-1)  # [X, Y]
        road_col = oc.drivable_lut.to(occ.device)[occ].any(-1)
        agents = rollout.agents.double() if (self.use_agents and rollout.agents is not None) else None
        if agents is not None and len(agents):
            # The movers leave the held scene; they are checked where their velocity takes them.
            cells = self.cells.to(occ.device)
            obstacle_col = obstacle_col & ~self._in_agents(cells[..., 0], cells[..., 1], agents, None)
        poses = rollout.ego[:, : self.steps].double()  # [S, K, 3] in the current ego frame
        start = torch.cat([torch.zeros_like(poses[:, :1]), poses[:, :-1]], 1)  # where each step begins
        longest = float((poses[..., :2] - start[..., :2]).norm(dim=-1).max()) if poses.numel() else 0.0
        n = min(max(1, math.ceil(longest / oc.grid.voxel_size)), 64)
        frac = torch.arange(1, n + 1, dtype=poses.dtype, device=poses.device) / n  # ends on the planned pose
        swept = start[:, :, None] + (poses - start)[:, :, None] * frac[:, None]  # [S, K, n, 3]
        fx, fy = self._to_observed_frame(swept, self.footprint_xy.to(poses.device))  # [S, K, n, F]
        rx, ry = self._to_observed_frame(swept, self.ring_xy.to(poses.device))
        hit_fp, hit_ring = self._lookup(obstacle_col, fx, fy), self._lookup(obstacle_col, rx, ry)
        if agents is not None and len(agents):
            k = torch.arange(poses.shape[1], dtype=poses.dtype, device=poses.device)
            when = (k[:, None] + frac) * self.dt  # [K, n] seconds from now of each swept sample
            hit_fp = hit_fp | self._in_agents(fx, fy, agents, when)
            hit_ring = hit_ring | self._in_agents(rx, ry, agents, when)
        collision = hit_fp.any(-1).any(-1)  # [S, K]
        near = hit_ring.double().mean(-1).amax(-1)
        offroad = (1.0 - self._lookup(road_col, fx, fy).double().mean(-1)).amax(-1)
        cost = w.collision * collision.double() + w.near * near + w.offroad * offroad
        return cost.sum(1).to(rollout.ego.dtype)


class EmbeddingGoalCost:
    """V-JEPA 2-AC's energy: mean |z_pred(H) - z_goal| (arXiv 2506.09985), plus optional shaping and safety."""

    def __init__(self, weights: CostWeights | None = None, dt: float = 0.5, shaping: bool = False,
                 safety: ObservedSafety | None = None):
        self.w, self.dt, self.shaping, self.safety = weights or CostWeights(), dt, shaping, safety

    def __call__(self, rollout: Rollout, actions: torch.Tensor, goal: Any) -> torch.Tensor:
        if rollout.embeddings is None:
            raise PlanningError("EmbeddingGoalCost needs a model that predicts embeddings (a JEPA model)")
        if not isinstance(goal, EmbeddingGoal):
            raise PlanningError(f"embedding-space planning needs an EmbeddingGoal, got {type(goal).__name__}")
        z = rollout.embeddings  # [S, H, N, D]
        g = goal.embedding.to(z.device, z.dtype)
        if g.shape != z.shape[2:] and g.shape != z.shape[1:]:
            raise PlanningError(f"goal embedding shape {tuple(g.shape)} does not match the model's {tuple(z.shape[2:])} "
                                f"(one goal) or {tuple(z.shape[1:])} (one per step)")
        if not torch.isfinite(g).all():
            raise PlanningError("goal embedding has non-finite values")
        energy = (z - g).abs().mean(dim=(2, 3))  # [S, H]: against the one goal, or step k's own
        cost = self.w.goal_l1 * energy[:, -1]
        if self.w.goal_l1_intermediate:
            cost = cost + self.w.goal_l1_intermediate * energy[:, :-1].sum(1)
        if self.shaping:
            cost = cost + _route_terms(rollout, goal.route, self.w)
            cost = cost + comfort_cost(actions, self.dt, rollout, self.w)
        if self.safety is not None:
            cost = cost + self.safety(rollout)
        return cost
