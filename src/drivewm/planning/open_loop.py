"""Open-loop planning evaluation: at each start frame of held-out episodes, plan from the past and
compare the planned trajectory with the expert's logged one.

Planned actions are turned into waypoints with the simulator's bicycle model from the logged speed;
the expert's future poses are expressed in the start frame; both are the ego box centres (the pose
is the rear axle, the box centre 1.342 m ahead). L2 at 1/2/3 s and the BEV collision rate of the
planned box against the logged road users come from `drivewm.metrics.planning.PlanningMetric`,
in both the ST-P3 ("average over the first k s") and UniAD ("at k s") conventions.

Episodes come from a store (`data=DIR`, its validation split) or are simulated from held-out seeds;
only simulated episodes carry the live simulator, so the simulator-as-model planner runs on those.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch

from drivewm.metrics.planning import PlanningMetric
from drivewm.planning.config import PlanningError
from drivewm.planning.kinematics import rollout_bicycle
from drivewm.planning.observation import PlanningObservation
from drivewm.sim.config import EGO_BOX_OFFSET_X, SimConfig
from drivewm.geometry import ego_to_world, to_frame, world_to_ego
from drivewm.sim.scenario import Scenario

GoalFn = Callable[[dict, int, int, PlanningObservation], Any]


@dataclass
class HeldOutEpisode:
    """One evaluation episode: arrays of the data contract, and how to rebuild the live simulator."""

    arrays: dict[str, np.ndarray]
    name: str
    sim_cfg: SimConfig | None = None
    seed: int | None = None

    def scenario_at(self, t: int) -> Scenario | None:
        """The simulator at frame t, replayed from the seed with the logged actions (deterministic)."""
        if self.sim_cfg is None or self.seed is None:
            return None
        sc = Scenario(self.sim_cfg, self.seed, len(self.arrays["ego_pose"]))
        for k in range(t):
            sc.step(self.arrays["action"][k])
        return sc


def simulated_episodes(cfg: SimConfig, seeds: Iterable[int], frames: int) -> list[HeldOutEpisode]:
    """Held-out episodes simulated by the expert from seeds (use seeds outside the training range)."""
    from drivewm.sim import simulate_episode

    return [HeldOutEpisode(simulate_episode(cfg, int(s), frames), f"sim-seed-{s}", cfg, int(s)) for s in seeds]


def store_episodes(path: str, val_fraction: float = 0.1, limit: int | None = None) -> list[HeldOutEpisode]:
    """The validation split of an episode store (the same split training held out)."""
    from drivewm.data.store import EpisodeStore
    from drivewm.data.windows import split_episodes

    store = EpisodeStore(path)
    idx = list(split_episodes(len(store), val_fraction, "val"))[: limit or None]
    eps = []
    for i in idx:
        arr = store.read_episode(i)
        for key in ("occ", "ego_pose", "action"):
            if key not in arr:
                raise KeyError(f"{path}: episode {i} has no {key!r}, needed for open-loop planning")
        eps.append(HeldOutEpisode(arr, f"{path}#{i}"))
    return eps


def _speed(arr: dict, t: int) -> float:
    if "ego_speed" in arr:
        return float(arr["ego_speed"][t])
    p = arr["ego_pose"]
    return float(np.hypot(*(p[t + 1, :2] - p[t, :2]))) if t + 1 < len(p) else 0.0


def _centres(poses: np.ndarray) -> np.ndarray:
    """Rear-axle poses [H, 3] -> box centres [H, 2]."""
    return ego_to_world(np.array([EGO_BOX_OFFSET_X, 0.0], poses.dtype), poses)


def _obstacles(arr: dict, t: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Road-user boxes [H, K, 5] (x, y, length, width, yaw) of frames t+1..t+H in frame t's ego frame."""
    agents, valid = arr["agents"], arr["agents_valid"]
    pose_t = arr["ego_pose"][t]
    out = np.zeros((h, agents.shape[1], 5), np.float32)
    for k in range(h):
        pk = arr["ego_pose"][t + 1 + k]
        a = agents[t + 1 + k]
        out[k, :, :2] = world_to_ego(ego_to_world(a[:, :2], pk), pose_t)  # ego frame of t+k -> world -> of t
        out[k, :, 2], out[k, :, 3] = a[:, 3], a[:, 4]
        out[k, :, 4] = a[:, 6] + pk[2] - pose_t[2]
    return out, valid[t + 1 : t + 1 + h]


def observation_at(ep: HeldOutEpisode, t: int, context: int, with_sim: bool) -> PlanningObservation:
    arr = ep.arrays
    lo = max(0, t - context + 1)
    idx = [lo] * (context - (t - lo + 1)) + list(range(lo, t + 1))  # repeat the first frame at the start
    acts = arr["action"][idx].copy()
    acts[-1] = arr["action"][t - 1] if t > 0 else 0.0  # the action at t is what the planner must choose
    route = None
    if "route" in arr:
        route = world_to_ego(arr["route"], arr["ego_pose"][t]).astype(np.float32)
        route = route[route[:, 0] > -5.0] if (route[:, 0] > -5.0).sum() >= 2 else route[-2:]
    return PlanningObservation(occ=arr["occ"][idx], ego_pose=arr["ego_pose"][idx], action=acts, speed=_speed(arr, t),
                               route=route, env=ep.scenario_at(t) if with_sim else None)


def evaluate_open_loop(planners: dict[str, Any], episodes: list[HeldOutEpisode], *, horizon: int = 6,
                       hz: float = 2.0, max_speed: float = 20.0, context_frames: int = 2, stride: int = 2,
                       goal_fns: dict[str, GoalFn] | None = None, needs_sim: set[str] | None = None,
                       progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """L2 / collision per planner (PlanningMetric.compute() dicts, plus 'plan_time_s' and 'samples').

    'expert' is the logged trajectory itself (L2 = 0; its collision rate is the data's floor).
    """
    if not episodes:
        raise PlanningError("evaluate_open_loop: no episodes to evaluate")
    goal_fns, needs_sim = goal_fns or {}, needs_sim or set()
    results: dict[str, dict] = {}
    names = ["expert", *[n for n in planners if n != "expert"]]
    for name in names:
        metric = PlanningMetric(hz=hz)
        times: list[float] = []
        for ep in episodes:
            arr = ep.arrays
            n = len(arr["ego_pose"])
            if needs_sim & {name} and ep.sim_cfg is None:
                raise PlanningError(f"planner {name!r} needs the simulator; episode {ep.name} comes from a store")
            for t in range(context_frames - 1, n - horizon, stride):
                gt = _centres(_rel(arr["ego_pose"], t, horizon))
                if name == "expert":
                    pred = gt
                else:
                    obs = observation_at(ep, t, context_frames, name in needs_sim)
                    planner = planners[name]
                    goal = goal_fns[name](arr, t, horizon, obs) if name in goal_fns else obs.route
                    if hasattr(planner, "reset"):
                        planner.reset(t)
                    t0 = time.perf_counter()
                    plan = torch.as_tensor(planner.plan(obs, goal), dtype=torch.float32)[:horizon]
                    times.append(time.perf_counter() - t0)
                    poses, _ = rollout_bicycle(torch.tensor([0.0, 0.0, 0.0, obs.speed]), plan[None], 1 / hz, max_speed)
                    pred = _centres(poses[0].numpy())
                obstacles = valid = None
                if "agents" in arr:
                    obstacles, valid = _obstacles(arr, t, horizon)
                    obstacles, valid = torch.as_tensor(obstacles)[None], torch.as_tensor(valid)[None]
                metric.update(torch.as_tensor(pred, dtype=torch.float32)[None], torch.as_tensor(gt, dtype=torch.float32)[None],
                              obstacles=obstacles, obstacle_valid=valid)
        res = metric.compute()
        res["plan_time_s"] = float(np.mean(times)) if times else 0.0
        results[name] = res
        if progress is not None:
            progress(f"{name}: L2 avg {res['l2_stp3'].get('avg', float('nan')):.2f} m, "
                     f"collision avg {res['collision_stp3'].get('avg', float('nan')):.2f} %")
    return results


def _rel(ego_pose: np.ndarray, t: int, h: int) -> np.ndarray:
    """Poses of frames t+1..t+h in frame t's ego frame [h, 3]."""
    p = torch.as_tensor(np.asarray(ego_pose, np.float64))
    return to_frame(p[t + 1 : t + 1 + h], p[t]).numpy()
