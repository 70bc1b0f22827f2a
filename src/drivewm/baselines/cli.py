"""`drivewm eval baselines`: the no-learning rows of an occupancy forecasting table, on any store."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def baselines(
    data: Path = typer.Option(..., "--data", "-d", help="Episode store directory (from `drivewm data generate` or a converter)."),
    split: str = typer.Option("val", "--split", help="Episode split to score: train or val."),
    past: int = typer.Option(5, "--past", help="Observed frames per window (OccWorld: 5 = -2 s .. 0 s at 2 Hz)."),
    horizon: int = typer.Option(6, "--horizon", help="Forecast frames scored (OccWorld: 6 = 0.5 .. 3 s at 2 Hz)."),
    protocol: str = typer.Option("occworld", "--protocol", help="occworld (no mask, empty class = 1) or occ3d (mask_camera, nan-mean)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per batch."),
    max_batches: int = typer.Option(0, "--max-batches", help="Stop after this many batches (0 = all windows)."),
    lidar: bool = typer.Option(False, "--lidar", help="Also score the LiDAR baselines (4D-Occ CD / NFCD); needs lidar in the store."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the full results (per class, per step) as JSON here."),
) -> None:
    """Score the no-learning forecasters every table shows (copy-last, ego-motion-warped copies) with the named protocol."""
    from drivewm.evaluation import evaluate_baselines

    if protocol not in ("occworld", "occ3d"):
        raise typer.BadParameter(f"must be occworld or occ3d, got {protocol!r}", param_hint="--protocol")
    try:
        results = evaluate_baselines(data, split=split, past=past, horizon=horizon, protocol=protocol,
                                     batch_size=batch_size, max_batches=max_batches or None, lidar=lidar)
    except (FileNotFoundError, KeyError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    occupancy = [r for r in results if "miou" in r]
    names = list(occupancy[0]["miou"])
    typer.echo(f"protocol {protocol}, {occupancy[0]['windows']} windows, values in %")
    typer.echo(f"{'forecaster':<24}" + "".join(f"{'mIoU ' + n:>12}" for n in names) + "".join(f"{'IoU ' + n:>12}" for n in names))
    for r in occupancy:
        row = "".join(f"{r['miou'][n]:>12.2f}" for n in names) + "".join(f"{r['iou'][n]:>12.2f}" for n in names)
        typer.echo(f"{r['forecaster']:<24}{row}")
    for r in results:
        if "cd" in r:
            typer.echo(f"{r['forecaster']:<24}  CD {r['cd']:.3f} m^2   NFCD {r['nfcd']:.3f} m^2   ({r['pairs']} cloud pairs, 4D-Occ protocol)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(out)
        typer.echo(f"wrote {out}")
