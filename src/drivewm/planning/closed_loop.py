"""Closed-loop driving: a planner drives the ego in the simulator from seeded start states.

Each drive: `Scenario(cfg, seed)` (the simulator's state; `DrivingEnv` wraps the same object),
occupancy rendered every frame for models that plan from observations, the planner's first
action executed, the simulator stepped, until the time is up, the route is done or (as the
simulator's environment does by default) the first collision. Statistics per drive go through
`score.py` (route completion, collisions per km, off-road rate, progress, comfort, a PDMS-like
score); the expert's progress from the same seed is the EP reference.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from drivewm.planning.kinematics import rollout_bicycle
from drivewm.planning.observation import PlanningObservation
from drivewm.planning.score import DriveStats, comfort_extremes, pdm_score, summarize
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, SimConfig
from drivewm.geometry import world_to_ego
from drivewm.sim.scenario import Scenario
from drivewm.sim.sensors.occupancy import OccupancyRenderer

TTC_SECONDS = 1.5
CORRIDOR_HALF_WIDTH = 1.5

GoalFn = Callable[[Scenario, PlanningObservation], Any]


@dataclass
class DriveTrace:
    """What the GIF needs from one drive: per frame the BEV occupancy, the executed and planned paths."""

    occ: list[np.ndarray] = field(default_factory=list)
    plans: list[np.ndarray] = field(default_factory=list)
    """[H, 2] planned ego positions in the frame's ego frame."""
    poses: list[np.ndarray] = field(default_factory=list)


def _route_ego_frame(sc: Scenario, ahead: float = 60.0) -> np.ndarray:
    pts = sc.route_points()
    s = sc.route_s0 + 2.0 * np.arange(len(pts))
    keep = (s >= sc.ego_s - 2.0) & (s <= sc.ego_s + ahead)
    sel = pts[keep] if keep.sum() >= 2 else pts[-2:]
    return world_to_ego(sel, sc.ego.pose()).astype(np.float32)


def _ttc_violation(sc: Scenario) -> bool:
    """Another road user inside the ego's straight corridor within TTC_SECONDS at the current speed."""
    boxes, valid = sc.agents_ego_frame()
    b = boxes[valid]
    if len(b) == 0:
        return False
    front = EGO_BOX_OFFSET_X + EGO_LENGTH / 2
    reach = front + max(sc.ego.v * TTC_SECONDS, 1.0)
    near_x = b[:, 0] - b[:, 3] / 2
    return bool(np.any((near_x > front - 0.5) & (near_x < reach) & (np.abs(b[:, 1]) < CORRIDOR_HALF_WIDTH + b[:, 4] / 2)))


def tracked_agents(sc: Scenario) -> np.ndarray:
    """float32 [K, 7] the active road users inside the grid, in the ego frame: x, y, yaw, length, width and
    their ground velocity (vx, vy) along the ego's axes; what a tracker would give the planner."""
    boxes, valid = sc.agents_ego_frame()
    b = boxes[valid]
    out = np.zeros((len(b), 7), np.float32)
    out[:, 0:2], out[:, 2], out[:, 3:5] = b[:, 0:2], b[:, 6], b[:, 3:5]
    out[:, 5:7] = sc.agents_velocity_ego_frame()[valid]
    return out


def _planned_path(planner: Any, plan: torch.Tensor, speed: float, dt: float, vmax: float) -> np.ndarray:
    rollout = getattr(planner, "last_rollout", None)
    if rollout is not None:
        return rollout.ego[0, :, :2].cpu().numpy()
    poses, _ = rollout_bicycle(torch.tensor([0.0, 0.0, 0.0, speed]), plan[None].float(), dt, vmax)
    return poses[0, :, :2].numpy()


def _pose_before(pose: np.ndarray, step: float) -> np.ndarray:
    """The unknown past of a drive's start: the ego came `step` metres straight along its heading (its start
    speed, no acceleration or steering: the zero action), so a model that reads its past motion sees the ego
    moving as it is, not standing; the scene before the start is unknown and stays the start frame."""
    x, y, yaw = (float(v) for v in pose)
    return np.array([x - step * np.cos(yaw), y - step * np.sin(yaw), yaw], np.float32)


def drive_one(planner: Any, cfg: SimConfig, seed: int, seconds: float, *, context_frames: int = 2,
              goal_fn: GoalFn | None = None, needs_occ: bool = False, trace: DriveTrace | None = None,
              name: str | None = None) -> DriveStats:
    """One drive of `seconds` from the seeded start state; returns its statistics (score filled later)."""
    steps = max(1, int(round(seconds * cfg.hz)))
    sc = Scenario(cfg, seed, steps)
    render = OccupancyRenderer(sc.road, sc.grid) if (needs_occ or trace is not None) else None
    hist: deque = deque(maxlen=context_frames)
    if hasattr(planner, "reset"):
        planner.reset(seed)
    actions, plan_times = [], []
    collisions = offroad = ttc = 0
    distance, start_s, prev_a = 0.0, sc.ego_s, np.zeros(2, np.float32)
    t_done = 0
    for t in range(steps):
        occ = None
        if render is not None:
            boxes, valid = sc.agents_ego_frame()
            occ = render.render(sc.ego.pose(), boxes, valid)
        # Each entry: [occupancy, pose, action applied from this frame]; the current frame's action is
        # not chosen yet, so it holds the previous one (the observation's convention).
        hist.append([occ, sc.ego.pose().astype(np.float32), prev_a])
        while len(hist) < context_frames:
            hist.appendleft([hist[0][0], _pose_before(hist[0][1], sc.ego.v / cfg.hz), np.zeros(2, np.float32)])
        occ_hist = np.stack([h[0] for h in hist]) if render is not None else np.zeros((len(hist), 1, 1, 1), np.uint8)
        obs = PlanningObservation(occ=occ_hist, ego_pose=np.stack([h[1] for h in hist]),
                                  action=np.stack([h[2] for h in hist]), speed=float(sc.ego.v),
                                  route=_route_ego_frame(sc), env=sc, agents=tracked_agents(sc))
        goal = goal_fn(sc, obs) if goal_fn is not None else obs.route
        t0 = time.perf_counter()
        a = np.asarray(planner.act(obs, goal), np.float32)
        plan_times.append(time.perf_counter() - t0)
        if trace is not None:
            plan = getattr(planner, "last", None)
            plan = plan.actions if plan is not None else planner.plan(obs, goal)
            trace.occ.append(occ)
            trace.plans.append(_planned_path(planner, plan.cpu(), sc.ego.v, 1 / cfg.hz, cfg.max_speed))
            trace.poses.append(sc.ego.pose())
        hist[-1][2] = a
        x0, y0 = sc.ego.x, sc.ego.y
        sc.step(a)
        actions.append(a)
        prev_a = a
        distance += float(np.hypot(sc.ego.x - x0, sc.ego.y - y0))
        collisions += int(sc.collided)
        offroad += int(sc.offroad_now)
        ttc += int(_ttc_violation(sc))
        t_done = t + 1
        if (sc.collided and cfg.terminate_on_collision) or sc.ego_s >= sc.route_s1 - 1.0:
            break
    jerk, steer_rate = comfort_extremes(np.stack(actions), 1.0 / cfg.hz)
    route_len = max(sc.route_s1 - sc.route_s0, 1e-6)
    return DriveStats(
        planner=name or getattr(planner, "name", type(planner).__name__), seed=seed, steps=t_done,
        seconds=t_done / cfg.hz, distance_m=distance,
        route_completion=float(np.clip((sc.ego_s - sc.route_s0) / route_len, 0, 1)),
        progress_m=float(sc.ego_s - start_s), collisions=collisions, offroad_steps=offroad, ttc_violations=ttc,
        max_jerk=jerk, max_steer_rate=steer_rate, plan_time_s=float(np.mean(plan_times)),
    )


def drive_closed_loop(planners: dict[str, Any], cfg: SimConfig, seeds: list[int], seconds: float = 15.0, *,
                      context_frames: int = 2, goal_fns: dict[str, GoalFn] | None = None,
                      needs_occ: set[str] | None = None, expert: Any = None,
                      trace_planner: str | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Drive every planner from every seed; returns {'summary': {name: {...}}, 'drives': [...], 'trace': DriveTrace}.

    `expert` (an ExpertPlanner) sets the EP reference; it is driven too and reported as 'expert'.
    """
    from drivewm.planning.baselines import ExpertPlanner
    from drivewm.planning.sim_model import bounds_of

    if not seeds:
        raise ValueError("drive_closed_loop: give at least one seed")
    goal_fns, needs_occ = goal_fns or {}, needs_occ or set()
    expert = expert or ExpertPlanner(bounds_of(cfg), horizon=6)
    all_planners = {"expert": expert, **{k: v for k, v in planners.items() if k != "expert"}}
    expert_progress: dict[int, float] = {}
    drives: list[DriveStats] = []
    trace = DriveTrace() if trace_planner else None
    for name, planner in all_planners.items():
        for i, seed in enumerate(seeds):
            tr = trace if (name == trace_planner and i == 0) else None
            st = drive_one(planner, cfg, seed, seconds, context_frames=context_frames, goal_fn=goal_fns.get(name),
                           needs_occ=name in needs_occ, trace=tr, name=name)
            if name == "expert":
                expert_progress[seed] = st.progress_m
            drives.append(pdm_score(st, expert_progress[seed]))
            if progress is not None:
                progress(f"{name} seed {seed}: completion {st.route_completion:.2f}, collisions {st.collisions}, "
                         f"score {st.score:.3f}, {st.plan_time_s * 1000:.0f} ms/step")
    summary = {name: summarize([d for d in drives if d.planner == name]) for name in all_planners}
    return {"summary": summary, "drives": [d.to_dict() for d in drives], "trace": trace}
