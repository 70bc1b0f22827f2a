"""Planning evaluations as library calls: open loop against the expert's log, closed loop in the simulator.

Each returns the result table (the keyword arguments of `drivewm.report.results.write_result`), so the
CLI prints it and the demo and `--out` write it, from one definition of its columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from drivewm.planning.factory import PlanConfig, build_planner, load_planning_model
from drivewm.planning.goals import ExpertGoal, embedding_goal
from drivewm.sim.config import SimConfig

OPEN_LOOP_COLUMNS = (["planner"] + [f"L2 {k} (m)" for k in ("1s", "2s", "3s", "avg")]
                     + [f"coll {k} (%)" for k in ("1s", "2s", "3s", "avg")] + ["L2@3s uniad", "ms/plan"])
CLOSED_LOOP_COLUMNS = ["planner", "route completion", "progress (m)", "collisions/km", "collision rate", "off-road rate",
                       "max jerk", "max steer rate", "EP", "score", "ms/step"]


def _planners_for_runs(runs, names, sim, cfg):
    planners, goal_fns = {}, {}
    for run in runs:
        kind, model = load_planning_model(run, cfg, sim)
        for n in names:
            label = f"{n}-{kind}:{str(run).rstrip('/').split('/')[-1]}"
            planners[label] = build_planner(n, sim, cfg, model, kind, label)
            if kind == "jepa":  # the goal: what the expert saw H steps later, encoded
                goal_fns[label] = (lambda m: lambda arr, t, h, obs: embedding_goal(m, arr["occ"][t + h], obs))(model)
    return planners, goal_fns


def evaluate_open_loop_runs(runs: list[str], cfg: PlanConfig, sim: SimConfig, *, planners: list[str],
                            data: Optional[str] = None, seeds: list[int] = (9001, 9002), frames: int = 16,
                            stride: int = 3, plan_with_sim: bool = True,
                            progress: Callable[[str], None] | None = None) -> tuple[dict, int]:
    """Open-loop planning of every run (with each of `planners`) beside constant-velocity and random, on the store
    `data` or on simulated held-out episodes: L2 to the expert at 1/2/3 s and collision rate (ST-P3, UniAD).
    Returns the result table and the number of episodes."""
    from drivewm.planning.open_loop import evaluate_open_loop, simulated_episodes, store_episodes

    chosen, goal_fns = _planners_for_runs(runs, planners, sim, cfg)
    episodes = store_episodes(data) if data else simulated_episodes(sim, list(seeds), frames)
    chosen["constant-velocity"] = build_planner("constant-velocity", sim, cfg)
    chosen["random"] = build_planner("random", sim, cfg)
    needs_sim = set()
    if plan_with_sim and not data:
        for n in planners:
            if n == "gpt":  # plans from its own predicted actions: the simulator cannot stand in for it
                continue
            chosen[f"{n}-sim"] = build_planner(n, sim, cfg)
            needs_sim.add(f"{n}-sim")
    res = evaluate_open_loop(chosen, episodes, horizon=cfg.cem.horizon, hz=sim.hz, max_speed=sim.max_speed,
                             context_frames=cfg.context_frames, stride=stride, goal_fns=goal_fns, needs_sim=needs_sim,
                             progress=progress)
    rows = []
    for name, r in res.items():
        row = [name] + [r["l2_stp3"].get(k, float("nan")) for k in ("1s", "2s", "3s", "avg")]
        row += [r["collision_stp3"].get(k, float("nan")) for k in ("1s", "2s", "3s", "avg")]
        row += [r["l2_uniad"].get("3s", float("nan")), 1000 * r["plan_time_s"]]
        rows.append(row)
    return dict(name="plan_open_loop", title="Open-loop planning", columns=list(OPEN_LOOP_COLUMNS), rows=rows,
                protocol="L2 / collision: ST-P3 (avg over first k s); 'L2@3s uniad' at 3 s"), len(episodes)


def drive_closed_loop_run(cfg: PlanConfig, sim: SimConfig, *, planner: str = "cem", model: Optional[str] = None,
                          seeds: list[int] = (1, 2, 3), seconds: float = 15.0, gif: Optional[str | Path] = None,
                          compare: bool = True, progress: Callable[[str], None] | None = None) -> tuple[dict, Path | None]:
    """Closed loop: `planner` drives the simulator (through the run `model`, or the simulator itself), beside
    constant-velocity and random when `compare`; route completion, collisions/km, off-road, comfort, PDMS-like
    score. Saves a GIF of the planner's first drive to `gif` when given; returns the result table and the GIF's
    path (None when none was written)."""
    from drivewm.planning.closed_loop import drive_closed_loop

    kind, pmodel, goal_fns, needs_occ = "sim", None, {}, set()
    if model:
        kind, pmodel = load_planning_model(model, cfg, sim)
    name = planner if planner not in ("cem", "mppi") else f"{planner}-{kind}"
    planners = {name: build_planner(planner, sim, cfg, pmodel, kind, name)}
    if kind != "sim" and planner in ("cem", "mppi", "gpt"):
        needs_occ.add(name)
        if kind == "jepa":
            goal_fns[name] = ExpertGoal(pmodel, cfg.cem.horizon if planner == "cem" else cfg.mppi.horizon,
                                        every_step=cfg.goal_every_step)
    if compare:
        for base in ("constant-velocity", "random"):
            planners.setdefault(base, build_planner(base, sim, cfg))
    res = drive_closed_loop(planners, sim, list(seeds), seconds, context_frames=cfg.context_frames,
                            goal_fns=goal_fns, needs_occ=needs_occ, trace_planner=name if gif else None,
                            progress=progress)
    rows = []
    for n, s in res["summary"].items():
        rows.append([n, s["route_completion"], s["progress_m"], s["collisions_per_km"], s["collision_rate"],
                     s["offroad_rate"], s["max_jerk"], s["max_steer_rate"], s["ep"], s["score"], 1000 * s["plan_time_s"]])
    written = None
    if gif and res["trace"] is not None:
        from drivewm.planning.gif import save_drive_gif

        save_drive_gif(res["trace"], sim.grid_spec, gif, title=name)
        written = Path(gif)
    return dict(name="drive", title="Closed-loop driving", columns=list(CLOSED_LOOP_COLUMNS), rows=rows,
                protocol="score = NC*DAC*(5*EP+5*TTC+2*C)/12 (drivewm.planning.score)"), written
