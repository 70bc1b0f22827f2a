"""`drivewm eval forecast RUN_DIR [RUN_DIR...] data=DIR`: the OccWorld forecasting table and pictures
(LiDAR world models: Chamfer distance at 1 s / 3 s, Copilot4D)."""

from __future__ import annotations

import json
from typing import Optional

import typer


def eval_forecast(
    targets: list[str] = typer.Argument(
        ..., help="World-model run directories (token world models, or the direct voxel forecaster voxel_unet), "
        "then data=DIR (the episode store to evaluate on)."
    ),
    past: int = typer.Option(5, "--past", help="Observed frames incl. the current one (OccWorld: 5 = 2 s at 2 Hz)."),
    horizon: int = typer.Option(6, "--horizon", help="Forecast frames (OccWorld: 6 = 3 s at 2 Hz)."),
    split: str = typer.Option("val", "--split", help="Episode split to evaluate: 'val' or 'train'."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per batch."),
    max_windows: int = typer.Option(0, "--max-windows", help="Evaluate an evenly spaced subset of this many windows (0: all)."),
    which: str = typer.Option("best", "--which", help="Checkpoint of each run: 'best' or 'latest'."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rollouts' token sampling."),
    out: Optional[str] = typer.Option(
        None, "--out", help="Directory for results/forecast.json, forecast.png and forecast.gif "
        "(LiDAR runs: forecast_lidar.json / .png) (default: the first run)."
    ),
) -> None:
    """Forecast with world models beside copy-last, the ego-warped copy and the tokenizer bound: occupancy
    runs give IoU / mIoU at 1 s, 2 s, 3 s; LiDAR runs Chamfer distance, NFCD, depth L1 / AbsRel at 1 s and 3 s."""
    from drivewm.evaluation import evaluate_forecast
    from drivewm.evaluation.tables import print_table
    from drivewm.report.forecast import write_forecast_table

    data = [t.split("=", 1)[1] for t in targets if t.startswith("data=")]
    runs = [t for t in targets if "=" not in t]
    if not data:
        raise typer.BadParameter("give the episode store as data=DIR")
    if not runs:
        raise typer.BadParameter("give at least one world-model run directory")
    table = evaluate_forecast(
        runs, data[-1], past=past, horizon=horizon, split=split, batch_size=batch_size, max_windows=max_windows,
        which=which, device=device, seed=seed,
    )
    write_forecast_table(table, out or runs[0])
    results = table.results
    if table.modality == "lidar":
        print_table(results, f"LiDAR forecasting, Copilot4D / 4D-Occ metrics ({data[-1]}, {split})")
        typer.echo(json.dumps({n: {"cd": r["cd"], "l1": r["l1"]} for n, r in results.items()}))
    else:
        print_table(results, f"Occupancy forecasting, OccWorld protocol ({data[-1]}, {split})")
        typer.echo(json.dumps({n: {"miou": r["miou"], "iou": r["iou"]} for n, r in results.items()}))
