"""`drivewm demo` and `drivewm scaling`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Output directory: data, runs, results and report.html."),
    minutes: float = typer.Option(10.0, "--minutes", help="Training budget; every stage's steps scale with it (10 = the default sizes)."),
    preset: str = typer.Option("tiny", "--preset", help="Demo preset: 'tiny' (the CPU demo) or 'micro' (a smoke run)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete earlier results in --out and start over."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, initialisation and sampling."),
    configs: Optional[Path] = typer.Option(None, "--configs", help="Directory of YAML presets (default: the presets packaged with drivewm)."),
) -> None:
    """The whole pipeline: simulate, train tokenizer + world models + JEPA, forecast, plan, report. Re-runs reuse finished stages."""
    from drivewm.demo.pipeline import run_demo

    run_demo(out, minutes=minutes, preset=preset, fresh=fresh, seed=seed, configs=configs, echo=typer.echo)


def scaling(
    ctx: typer.Context,
    out: Path = typer.Option(Path("scaling_out"), "--out", help="Output directory of the sweep (one run per size, results, plot)."),
    demo_dir: Path = typer.Option(Path("demo_out"), "--from-demo", help="Reuse the data and tokenizer of this demo output."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer run directory (default: the demo's)."),
    config: str = typer.Option("world/gpt_tiny.yaml", "--config", help="World-model config swept over widths (a file or packaged preset)."),
    widths: str = typer.Option("16,32,48,64", "--widths", help="Comma list of model widths (>= 4 for an uncertainty)."),
    steps: int = typer.Option(150, "--steps", help="Training steps per size."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
) -> None:
    """Model-size sweep of a world model (data=DIR: the episode store, default the demo's;
    key=value: config overrides of every run) and the power-law fit L(N) = a N^-b + c of its validation CE (GAIA-1)."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.train.config import run_config_schema
    from drivewm.report.results import write_result
    from drivewm.scaling import run_scaling

    extra = list(ctx.args)
    args = parse_run_args(extra, run_config_schema(config, [a for a in extra if "=" in a and not a.startswith("data=")]))
    if args.paths:
        raise ConfigError(f"unexpected argument {args.paths[0]!r}; scaling takes data=DIR and key=value only")
    try:
        ws = [int(w) for w in widths.split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"--widths must be a comma list of integers, got {widths!r}") from None
    rows, fit, table = run_scaling(config=config, data=args.data or demo_dir / "data" / "store",
                                   tokenizer=tokenizer or demo_dir / "tokenizer", out=out, widths=ws, steps=steps,
                                   seed=seed, overrides=args.overrides)
    write_result(out, **table)
    typer.echo(f"exponent b = {fit.b:.3f} +- {fit.b_err:.3f} (a = {fit.a:.3g}, c = {fit.c:.3f}); "
               f"plot {out / 'results' / table['images'][0]}")
