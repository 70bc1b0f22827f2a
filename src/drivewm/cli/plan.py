"""`drivewm eval plan` (open loop) and `drivewm drive` (closed loop): planners against the expert and baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from drivewm.cli.common import sim_config

DEFAULT_PRESET = "planning/tiny.yaml"


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v == v else "-"


def _print(table: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in table["columns"]:
        t.add_column(c)
    for row in table["rows"]:
        t.add_row(row[0], *[_fmt(v) for v in row[1:]])
    Console().print(t)


def _progress(message: str) -> None:
    from rich.console import Console

    Console().print(f"[dim]{message}[/dim]")


def _plan_args(args: list[str], config: str):
    """RUN... data=DIR key=value against the planning preset `config` (a file or packaged preset)."""
    from drivewm.config import parse_run_args, resolve_config_path
    from drivewm.planning.factory import load_plan_config

    path = resolve_config_path(config)
    parsed = parse_run_args(args, load_plan_config(path))
    return parsed, load_plan_config(path, parsed.overrides)


def eval_plan(
    ctx: typer.Context,
    preset: str = typer.Option("tiny", help="Simulator preset of the held-out episodes (and of the action limits)."),
    config: str = typer.Option(DEFAULT_PRESET, help="Planning preset: a YAML file or a packaged preset (planning/tiny.yaml)."),
    seeds: list[int] = typer.Option([9001, 9002], "--seeds", help="Held-out simulator seeds (when no data=DIR is given)."),
    frames: int = typer.Option(16, help="Frames per simulated held-out episode."),
    stride: int = typer.Option(3, help="Frames between evaluated start frames."),
    planners: str = typer.Option("cem,mppi", help="Comma list of model-based planners to run per model (cem, mppi; gpt: a GPT run's own predicted actions)."),
    sim: bool = typer.Option(True, "--sim/--no-sim", help="Also plan with the simulator itself as the model (simulated episodes only)."),
    out: Optional[str] = typer.Option(None, help="Directory to write results/plan_open_loop.json for the report."),
) -> None:
    """Open-loop planning of jepa_ac / token world-model runs (key=value:
    PlanConfig overrides, cem.samples=64): L2 to the expert at 1/2/3 s and collision rate (ST-P3, UniAD)."""
    from drivewm.planning.tasks import evaluate_open_loop_runs

    args, cfg = _plan_args(list(ctx.args), config)
    simcfg = sim_config(preset, lidar=False, camera=False, visibility=False)
    names = [p.strip() for p in planners.split(",") if p.strip()]
    table, episodes = evaluate_open_loop_runs(args.paths, cfg, simcfg, planners=names, data=args.data, seeds=seeds,
                                              frames=frames, stride=stride, plan_with_sim=sim, progress=_progress)
    _print(table, f"Open-loop planning ({episodes} episodes; ST-P3 avg-over-first-k-s / UniAD at-k-s)")
    if out:
        from drivewm.report.results import write_result

        write_result(out, **table)


def drive(
    ctx: typer.Context,
    planner: str = typer.Option("cem", "--planner", help="cem, mppi, gpt (a GPT run's own predicted actions), expert, constant-velocity or random."),
    seeds: list[int] = typer.Option([1, 2, 3], "--seeds", help="Start states (simulator seeds); repeat the option for several."),
    seconds: float = typer.Option(15.0, "--seconds", help="Length of each drive (s)."),
    gif: Optional[str] = typer.Option(None, "--gif", help="Save a GIF of the first drive of the chosen planner, plan drawn on it."),
    preset: str = typer.Option("tiny", help="Simulator preset."),
    config: str = typer.Option(DEFAULT_PRESET, help="Planning preset: a YAML file or a packaged preset (planning/tiny.yaml)."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also drive constant-velocity and random (the expert always drives: it sets EP)."),
    out: Optional[str] = typer.Option(None, help="Directory to write results/drive.json for the report."),
) -> None:
    """Closed loop: the planner drives the simulator through a jepa_ac or token world-model
    run (without one, CEM / MPPI plan through the simulator itself); key=value: PlanConfig overrides
    (weights.goal_l1=20 shaping=false cem.samples=64). Route completion, collisions/km, off-road, comfort, score."""
    from drivewm.config import ConfigError
    from drivewm.planning.tasks import drive_closed_loop_run

    args, cfg = _plan_args(list(ctx.args), config)
    if len(args.paths) > 1 or args.data is not None:
        raise ConfigError("`drivewm drive` takes at most one run directory and no data=DIR (it drives the simulator)")
    simcfg = sim_config(preset, lidar=False, camera=False, visibility=False)
    table, written = drive_closed_loop_run(cfg, simcfg, planner=planner, model=args.paths[0] if args.paths else None,
                                           seeds=list(seeds), seconds=seconds, gif=gif, compare=compare,
                                           progress=_progress)
    _print(table, f"Closed loop, {len(seeds)} seeds x {seconds:g} s (score = NC*DAC*(5EP+5TTC+2C)/12)")
    if written is not None:
        typer.echo(f"GIF: {written}")
    if out:
        from drivewm.report.results import write_result

        results = Path(out) / "results"
        in_results = written is not None and written.resolve().parent == results.resolve()
        write_result(out, **table, images=[written.name] if in_results else [])
