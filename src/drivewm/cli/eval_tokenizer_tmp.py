"""`drivewm eval tokenizer RUN_DIR data=DIR`: reconstruction metrics, code statistics and a picture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _print_table(title: str, result: dict, lidar: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if lidar:
        rows = [("depth L1 (m)", result["l1"]), ("depth AbsRel", result["absrel"]), ("Chamfer (m^2)", result["cd"]),
                ("near-field Chamfer (m^2)", result["nfcd"])]
    else:
        rows = [("IoU (%)", result["iou"]), ("mIoU (%, OccWorld: absent class = 100)", result["miou"]),
                (f"mIoU over the {result['classes_present']} classes present (%)", result["miou_present"])]
        rows += [(f"  IoU {name} (%)", v) for name, v in result["per_class_iou"].items()]
    rows += [
        ("codebook usage", result["usage"]),
        ("codes used", result["codes_used"]),
        ("perplexity", result["perplexity"]),
        ("tokens per frame", result["tokens_per_frame"]),
        ("bits per frame", result["bits_per_frame"]),
        ("entropy bits per frame", result["entropy_bits_per_frame"]),
        ("compression ratio", result["compression_ratio"]),
        ("frames", result["frames"]),
    ]
    for name, v in rows:
        table.add_row(name, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)


def eval_tokenizer(
    targets: list[str] = typer.Argument(..., help="The tokenizer's run directory, then data=DIR (the episode store)."),
    split: str = typer.Option("val", "--split", help="Episode split to evaluate: 'val' or 'train'."),
    batch_size: int = typer.Option(8, "--batch-size", help="Frames per batch."),
    max_frames: int = typer.Option(0, "--max-frames", help="Evaluate an evenly spaced subset of this many frames (0: all)."),
    which: str = typer.Option("best", "--which", help="Checkpoint: 'best' or 'latest'."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    out: Optional[str] = typer.Option(None, "--out", help="Directory for results/tokenizer.json and tokenizer.png (default: the run)."),
) -> None:
    """Reconstruct every frame through the tokens: IoU / mIoU / per-class IoU (occupancy, OccWorld protocol) or
    depth L1 / Chamfer (LiDAR), codebook usage, perplexity, bits per frame, compression ratio; saves input vs reconstruction."""
    from drivewm.report.results import write_result
    from drivewm.tokenizers.evaluate import (
        evaluate_lidar,
        evaluate_occ,
        frame_dataset,
        save_lidar_comparison,
        save_occ_comparison,
    )
    from drivewm.tokenizers.lidar import LidarTokenizer
    from drivewm.tokenizers.occ import OccTokenizer
    from drivewm.train.checkpoint import load_run

    data = [t.split("=", 1)[1] for t in targets if t.startswith("data=")]
    runs = [t for t in targets if "=" not in t]
    if not data:
        raise typer.BadParameter("give the episode store as data=DIR")
    if len(runs) != 1:
        raise typer.BadParameter(f"give exactly one tokenizer run directory, got {runs}")
    if not Path(data[-1]).is_dir():
        raise typer.BadParameter(f"data={data[-1]}: no such directory")
    cfg, model = load_run(runs[0], which=which, device=device)
    out_dir = Path(out or runs[0])
    if isinstance(model, OccTokenizer):
        ds = frame_dataset(cfg, data[-1], split, "occ", max_frames)
        result, inputs, recs = evaluate_occ(model, ds, batch_size, device)
        png = save_occ_comparison(out_dir / "results" / "tokenizer.png", model, inputs, recs)
        from drivewm.report.figures import bar_chart

        counts = sorted(result.pop("code_counts"), reverse=True)
        hist = bar_chart(counts, out_dir / "results" / "codebook_usage.png", log=True, xlabel="code (sorted by use)",
                         ylabel="tokens", title=f"codebook usage: {result['codes_used']} / {result['vocab_size']} codes")
        lidar = False
    elif isinstance(model, LidarTokenizer):
        ds = frame_dataset(cfg, data[-1], split, "lidar", max_frames)
        result, inputs, recs = evaluate_lidar(model, ds, batch_size, device)
        png = save_lidar_comparison(out_dir / "results" / "tokenizer.png", inputs, recs)
        lidar = True
    else:
        raise typer.BadParameter(f"{runs[0]}: model {cfg.model.name!r} is not a tokenizer this command evaluates")
    title = f"Tokenizer {cfg.model.name} reconstruction ({data[-1]}, {split})"
    _print_table(title, result, lidar)
    scalar = {k: v for k, v in result.items() if not isinstance(v, dict)}
    write_result(out_dir, "tokenizer", title=title, columns=["metric", "value"],
                 rows=[[k, v] for k, v in scalar.items()], protocol="4d-occ" if lidar else "occworld",
                 images=[png.name] + ([] if lidar else [hist.name]),
                 extra={"per_class_iou": result.get("per_class_iou", {})})
    typer.echo(f"picture: {png}")
    typer.echo(json.dumps(scalar))
