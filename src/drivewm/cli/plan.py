"""`drivewm eval plan` (open loop) and `drivewm drive` (closed loop): planners against the expert and baselines."""

from __future__ import annotations

from typing import Optional

import typer

DEFAULT_PRESET = "configs/planning/tiny.yaml"


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v == v else "-"


def _split(args: list[str]) -> tuple[list[str], Optional[str], list[str]]:
    """RUN_DIR... data=DIR key=value... -> run dirs, the data path, PlanConfig overrides."""
    runs, data, overrides = [], None, []
    for a in args:
        if a.startswith("data="):
            data = a.split("=", 1)[1]
        elif "=" in a:
            overrides.append(a)
        else:
            runs.append(a)
    return runs, data, overrides


def _planners_for_runs(runs, names, sim, cfg):
    from drivewm.planning.factory import build_planner, load_planning_model
    from drivewm.planning.goals import embedding_goal

    planners, goal_fns = {}, {}
    for run in runs:
        kind, model = load_planning_model(run, cfg, sim)
        for n in names:
            label = f"{n}-{kind}:{run.rstrip('/').split('/')[-1]}"
            planners[label] = build_planner(n, sim, cfg, model, kind, label)
            if kind == "jepa":  # the goal: what the expert saw H steps later, encoded
                goal_fns[label] = (lambda m: lambda arr, t, h, obs: embedding_goal(m, arr["occ"][t + h], obs))(model)
    return planners, goal_fns


def eval_plan(
    ctx: typer.Context,
    args: list[str] = typer.Argument(None, help="RUN_DIR... of jepa_ac / token world models, then data=DIR and PlanConfig overrides (cem.samples=64)."),
    preset: str = typer.Option("tiny", help="Simulator preset of the held-out episodes (and of the action limits)."),
    config: str = typer.Option(DEFAULT_PRESET, help="Planning preset YAML (configs/planning/)."),
    seeds: list[int] = typer.Option([9001, 9002], "--seeds", help="Held-out simulator seeds (when no data=DIR is given)."),
    frames: int = typer.Option(16, help="Frames per simulated held-out episode."),
    stride: int = typer.Option(3, help="Frames between evaluated start frames."),
    planners: str = typer.Option("cem,mppi", help="Comma list of model-based planners to run per model (cem, mppi)."),
    sim: bool = typer.Option(True, "--sim/--no-sim", help="Also plan with the simulator itself as the model (simulated episodes only)."),
    out: Optional[str] = typer.Option(None, help="Directory to write results/plan_open_loop.json for the report."),
) -> None:
    """Open-loop planning: L2 to the expert at 1/2/3 s and collision rate (ST-P3 and UniAD conventions)."""
    from rich.console import Console
    from rich.table import Table

    from drivewm.planning.factory import build_planner, load_plan_config
    from drivewm.planning.open_loop import evaluate_open_loop, simulated_episodes, store_episodes
    from drivewm.sim import sim_preset

    console = Console()
    runs, data, overrides = _split(list(args or []) + list(ctx.args))
    cfg = load_plan_config(config, overrides)
    simcfg = sim_preset(preset, lidar=False, camera=False, visibility=False)
    names = [p.strip() for p in planners.split(",") if p.strip()]
    episodes = store_episodes(data) if data else simulated_episodes(simcfg, seeds, frames)
    chosen, goal_fns = _planners_for_runs(runs, names, simcfg, cfg)
    chosen["constant-velocity"] = build_planner("constant-velocity", simcfg, cfg)
    chosen["random"] = build_planner("random", simcfg, cfg)
    needs_sim = set()
    if sim and not data:
        for n in names:
            chosen[f"{n}-sim"] = build_planner(n, simcfg, cfg)
            needs_sim.add(f"{n}-sim")
    res = evaluate_open_loop(chosen, episodes, horizon=cfg.cem.horizon, hz=simcfg.hz, max_speed=simcfg.max_speed,
                             context_frames=cfg.context_frames, stride=stride, goal_fns=goal_fns, needs_sim=needs_sim,
                             progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    table = Table(title=f"Open-loop planning ({len(episodes)} episodes; ST-P3 avg-over-first-k-s / UniAD at-k-s)")
    cols = ["planner"] + [f"L2 {k} (m)" for k in ("1s", "2s", "3s", "avg")] + [f"coll {k} (%)" for k in ("1s", "2s", "3s", "avg")] + ["L2@3s uniad", "ms/plan"]
    for c in cols:
        table.add_column(c)
    rows = []
    for name, r in res.items():
        row = [name] + [r["l2_stp3"].get(k, float("nan")) for k in ("1s", "2s", "3s", "avg")]
        row += [r["collision_stp3"].get(k, float("nan")) for k in ("1s", "2s", "3s", "avg")]
        row += [r["l2_uniad"].get("3s", float("nan")), 1000 * r["plan_time_s"]]
        rows.append(row)
        table.add_row(name, *[_fmt(v) for v in row[1:]])
    console.print(table)
    if out:
        from drivewm.report.results import write_result

        write_result(out, "plan_open_loop", title="Open-loop planning", columns=cols, rows=rows,
                     protocol="L2 / collision: ST-P3 (avg over first k s); 'L2@3s uniad' at 3 s")


def drive(
    overrides: Optional[list[str]] = typer.Argument(None, help="PlanConfig overrides of the preset, e.g. weights.goal_l1=20 shaping=false cem.samples=64."),
    planner: str = typer.Option("cem", "--planner", help="cem, mppi, expert, constant-velocity or random."),
    model: Optional[str] = typer.Option(None, "--model", help="Run directory of a jepa_ac or token world model; without it CEM/MPPI plan through the simulator itself."),
    seeds: list[int] = typer.Option([1, 2, 3], "--seeds", help="Start states (simulator seeds); repeat the option for several."),
    seconds: float = typer.Option(15.0, "--seconds", help="Length of each drive (s)."),
    gif: Optional[str] = typer.Option(None, "--gif", help="Save a GIF of the first drive of the chosen planner, plan drawn on it."),
    preset: str = typer.Option("tiny", help="Simulator preset."),
    config: str = typer.Option(DEFAULT_PRESET, help="Planning preset YAML (configs/planning/)."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also drive constant-velocity and random (the expert always drives: it sets EP)."),
    out: Optional[str] = typer.Option(None, help="Directory to write results/drive.json for the report."),
) -> None:
    """Closed loop: the planner drives the simulator; route completion, collisions/km, off-road, comfort, PDMS-like score."""
    from rich.console import Console
    from rich.table import Table

    from drivewm.planning.closed_loop import drive_closed_loop
    from drivewm.planning.factory import build_planner, load_plan_config, load_planning_model
    from drivewm.planning.goals import ExpertGoal
    from drivewm.sim import sim_preset

    console = Console()
    cfg = load_plan_config(config, list(overrides or []))
    simcfg = sim_preset(preset, lidar=False, camera=False, visibility=False)
    kind, pmodel, goal_fns, needs_occ = "sim", None, {}, set()
    if model:
        kind, pmodel = load_planning_model(model, cfg, simcfg)
    name = planner if planner not in ("cem", "mppi") else f"{planner}-{kind}"
    planners = {name: build_planner(planner, simcfg, cfg, pmodel, kind, name)}
    if kind != "sim" and planner in ("cem", "mppi"):
        needs_occ.add(name)
        if kind == "jepa":
            goal_fns[name] = ExpertGoal(pmodel, cfg.cem.horizon if planner == "cem" else cfg.mppi.horizon,
                                        every_step=cfg.goal_every_step)
    if compare:
        for base in ("constant-velocity", "random"):
            planners.setdefault(base, build_planner(base, simcfg, cfg))
    res = drive_closed_loop(planners, simcfg, list(seeds), seconds, context_frames=cfg.context_frames,
                            goal_fns=goal_fns, needs_occ=needs_occ, trace_planner=name if gif else None,
                            progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    cols = ["planner", "route completion", "progress (m)", "collisions/km", "collision rate", "off-road rate",
            "max jerk", "max steer rate", "EP", "score", "ms/step"]
    table = Table(title=f"Closed loop, {len(seeds)} seeds x {seconds:g} s (score = NC*DAC*(5EP+5TTC+2C)/12)")
    for c in cols:
        table.add_column(c)
    rows = []
    for n, s in res["summary"].items():
        row = [n, s["route_completion"], s["progress_m"], s["collisions_per_km"], s["collision_rate"], s["offroad_rate"],
               s["max_jerk"], s["max_steer_rate"], s["ep"], s["score"], 1000 * s["plan_time_s"]]
        rows.append(row)
        table.add_row(n, *[_fmt(v) for v in row[1:]])
    console.print(table)
    if gif and res["trace"] is not None:
        from drivewm.planning.gif import save_drive_gif

        save_drive_gif(res["trace"], simcfg.grid_spec, gif, title=name)
        console.print(f"GIF: {gif}")
    if out:
        from drivewm.report.results import write_result

        from pathlib import Path

        results = Path(out) / "results"
        images = [Path(gif).name] if gif and Path(gif).resolve().parent == results.resolve() and Path(gif).is_file() else []
        write_result(out, "drive", title="Closed-loop driving", columns=cols, rows=rows, images=images,
                     protocol="score = NC*DAC*(5*EP+5*TTC+2*C)/12 (drivewm.planning.score)")
