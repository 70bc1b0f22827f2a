"""`drivewm demo` and `drivewm scaling`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Output directory: data, runs, results and report.html."),
    minutes: float = typer.Option(10.0, "--minutes", help="Training budget; every stage's steps scale with it (10 = the default sizes)."),
    preset: str = typer.Option("tiny", "--preset", help="Demo preset: 'tiny' (the CPU demo) or 'micro' (a smoke run)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete earlier results in --out and start over."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, initialisation and sampling."),
    configs: Optional[Path] = typer.Option(None, "--configs", help="Directory of YAML presets (default: the repository's configs/)."),
) -> None:
    """The whole pipeline: simulate, train tokenizer + world models + JEPA, forecast, plan, report. Re-runs reuse finished stages."""
    from drivewm.demo.pipeline import run_demo

    try:
        run_demo(out, minutes=minutes, preset=preset, fresh=fresh, seed=seed, configs=configs, echo=typer.echo)
    except (PermissionError, FileNotFoundError, KeyError, ValueError) as e:
        typer.secho(f"demo error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None


def scaling(
    overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides applied to every run (model.depth=2 train.batch_size=4)."),
    out: Path = typer.Option(Path("scaling_out"), "--out", help="Output directory of the sweep (one run per size, results, plot)."),
    demo_dir: Path = typer.Option(Path("demo_out"), "--from-demo", help="Reuse the data and tokenizer of this demo output."),
    data: Optional[Path] = typer.Option(None, "--data", help="Episode store (default: the demo's)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer run directory (default: the demo's)."),
    config: Path = typer.Option(Path("configs/world/gpt_tiny.yaml"), "--config", help="World-model config swept over widths."),
    widths: str = typer.Option("16,32,48,64", "--widths", help="Comma list of model widths (>= 4 for an uncertainty)."),
    steps: int = typer.Option(150, "--steps", help="Training steps per size."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
) -> None:
    """Model-size sweep of a world model and the power-law fit L(N) = a N^-b + c of its validation CE (GAIA-1)."""
    from drivewm.report.results import write_result
    from drivewm.scaling import plot_fit, run_sweep

    store = data or demo_dir / "data" / "store"
    tok = tokenizer or demo_dir / "tokenizer"
    for what, path in (("--data", store), ("--tokenizer", tok)):
        if not Path(path).is_dir():
            typer.secho(f"scaling error: {what} {path} does not exist (run `make demo` first or pass {what})", fg="red", err=True)
            raise typer.Exit(2)
    ws = [int(w) for w in widths.split(",") if w.strip()]
    out.mkdir(parents=True, exist_ok=True)
    if len(ws) < 3:
        typer.secho(f"scaling error: --widths needs at least 3 sizes (4 for an uncertainty), got {ws}", fg="red", err=True)
        raise typer.Exit(2)
    rows, fit = run_sweep(config=str(config), data=str(store), tokenizer=str(tok), out=out, widths=ws, steps=steps,
                          seed=seed, overrides=list(overrides or []))
    (out / "results").mkdir(parents=True, exist_ok=True)
    png = plot_fit([r["params"] for r in rows], [r["val_ce"] for r in rows], fit, out / "results" / "scaling.png")
    write_result(out, "scaling", title="Scaling: validation cross-entropy vs world-model size",
                 columns=["width", "parameters", "validation CE (nats)"],
                 rows=[[r["dim"], r["params"], r["val_ce"]] for r in rows], images=[png.name],
                 protocol="L(N) = a N^-b + c fitted by least squares (GAIA-1)",
                 notes=f"b = {fit.b:.3f} +- {fit.b_err:.3f}, c = {fit.c:.3f}")
    typer.echo(f"exponent b = {fit.b:.3f} +- {fit.b_err:.3f} (a = {fit.a:.3g}, c = {fit.c:.3f}); plot {png}")
