"""`drivewm eval forecast | rollout | baselines | tokenizer | probe`: every command reads `RUN... data=DIR`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from drivewm.data.config import DataConfig


def _store(args, command: str) -> str:
    """The episode store of `data=DIR`, checked to be a directory."""
    from drivewm.data.manifest import StoreError

    if args.data is None:
        raise StoreError(f"`drivewm eval {command}`: give the episode store as data=DIR")
    if not Path(args.data).is_dir():
        raise StoreError(f"data={args.data}: no such store directory")
    return args.data


_EXTRACTOR_HELP = "Feature network file (TorchScript or torch.export) of the Frechet distance; never downloaded."
_FD_PROTOCOL_HELP = "The Frechet protocol's name, e.g. fvd_i3d400_16f_224 (drivewm.evaluation.camera)."
_MODALITY_HELP = "The table's modality when no run is given (camera | occ: the baselines alone); else the runs'."


def eval_forecast(
    ctx: typer.Context,
    past: int = typer.Option(5, "--past", help="Observed frames incl. the current one (OccWorld: 5 = 2 s at 2 Hz)."),
    horizon: int = typer.Option(6, "--horizon", help="Forecast frames (OccWorld: 6 = 3 s at 2 Hz)."),
    split: str = typer.Option("val", "--split", help="Episode split to evaluate: 'val' or 'train'."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per batch."),
    max_windows: int = typer.Option(0, "--max-windows", help="Evaluate an evenly spaced subset of this many windows (0: all)."),
    which: str = typer.Option("best", "--which", help="Checkpoint of each run: 'best' or 'latest'."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rollouts' token sampling."),
    splits: str = typer.Option("", "--splits", help="YAML of episode names per split (data.splits); default: the last 10 % are val."),
    end_margin: int = typer.Option(0, "--end-margin", help="Frames each window leaves after it (OccWorld's validation set: 2, L - 12 windows per scene)."),
    out: Optional[str] = typer.Option(
        None, "--out", help="Directory for results/forecast.json, forecast.png and forecast.gif "
        "(LiDAR runs: forecast_lidar.json / .png) (default: the first run)."
    ),
    extractor: str = typer.Option("", "--extractor", help=_EXTRACTOR_HELP),
    fd_protocol: str = typer.Option("", "--fd-protocol", help=_FD_PROTOCOL_HELP),
    modality: str = typer.Option("", "--modality", help=_MODALITY_HELP),
) -> None:
    """Forecast with world models (token world models, the direct voxel forecaster, camera world models) beside
    copy-last, the ego-warped copy and the tokenizer bound: occupancy runs give IoU / mIoU at 1 s, 2 s, 3 s; LiDAR
    runs Chamfer distance, NFCD, depth L1 / AbsRel at 1 s and 3 s; camera runs PSNR / SSIM per step (and with
    --extractor PATH --fd-protocol NAME a Frechet distance); --modality camera with no run scores the baselines
    alone."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.evaluation import evaluate_forecast
    from drivewm.evaluation.tables import print_table
    from drivewm.report.forecast import write_forecast_table

    args = parse_run_args(ctx.args)
    data = _store(args, "forecast")
    if not args.paths and not modality:
        raise ConfigError("`drivewm eval forecast`: give at least one world-model run directory (or --modality camera "
                          "for the baselines alone)")
    if not args.paths and out is None:
        raise ConfigError("`drivewm eval forecast` without a run: give --out DIR for the results")
    table = evaluate_forecast(
        args.paths, data, past=past, horizon=horizon, split=split, batch_size=batch_size, max_windows=max_windows,
        which=which, device=device, seed=seed, splits=splits, end_margin=end_margin, extractor=extractor,
        fd_protocol=fd_protocol, modality=modality,
    )
    written = write_forecast_table(table, out or args.paths[0])
    results = table.results
    if table.modality == "camera":
        print_table(results, f"Camera forecasting, PSNR (dB) / SSIM per step ({data}, {split}, {table.windows} windows)")
        if table.notes:
            typer.echo(table.notes)
        typer.echo(json.dumps({n: {k: r[k] for k in ("psnr_per_step", "ssim_per_step")} for n, r in results.items()}))
        typer.echo(f"wrote {written}")
    elif table.modality == "lidar":
        print_table(results, f"LiDAR forecasting, Copilot4D / 4D-Occ metrics ({data}, {split})")
        typer.echo(json.dumps({n: {"cd": r["cd"], "l1": r["l1"]} for n, r in results.items()}))
    else:
        print_table(results, f"Occupancy forecasting, OccWorld protocol ({data}, {split})")
        typer.echo(json.dumps({n: {"miou": r["miou"], "iou": r["iou"]} for n, r in results.items()}))
    if table.planning:
        from drivewm.evaluation.plans import plan_table_rows

        columns, rows = plan_table_rows(table.planning)
        typer.echo(" | ".join(columns))
        for row in rows:
            typer.echo(" | ".join(str(v) for v in row))


def eval_rollout(
    ctx: typer.Context,
    past: int = typer.Option(8, "--past", help="Observed frames (8 = 4 s at 2 Hz)."),
    horizon: int = typer.Option(40, "--horizon", help="Frames rolled out (40 = 20 s at 2 Hz); episodes need past + horizon frames."),
    split: str = typer.Option("val", "--split", help="Episode split: 'val' or 'train'."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per batch."),
    max_windows: int = typer.Option(0, "--max-windows", help="An evenly spaced subset of this many windows (0: all)."),
    which: str = typer.Option("best", "--which", help="Checkpoint of each run: 'best' or 'latest'."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rollouts' sampling."),
    out: Optional[str] = typer.Option(None, "--out", help="Directory for results/rollout.json and rollout.png (default: the first run)."),
    extractor: str = typer.Option("", "--extractor", help=_EXTRACTOR_HELP),
    fd_protocol: str = typer.Option("", "--fd-protocol", help=_FD_PROTOCOL_HELP),
    modality: str = typer.Option("", "--modality", help=_MODALITY_HELP),
) -> None:
    """Long rollouts: each world model rolls `horizon` frames out from `past` observed ones beside copy-last;
    drift per step (camera: PSNR, SSIM, and with --extractor --fd-protocol the Frechet distance per block;
    occupancy: mIoU and the class histogram's total-variation distance)."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.evaluation.rollout import evaluate_rollout, save_rollout

    args = parse_run_args(ctx.args)
    data = _store(args, "rollout")
    if not args.paths and not modality:
        raise ConfigError("`drivewm eval rollout`: give at least one world-model run directory (or --modality camera|occ "
                          "for the baselines alone)")
    if not args.paths and out is None:
        raise ConfigError("`drivewm eval rollout` without a run: give --out DIR for the results")
    result = evaluate_rollout(args.paths, data, past=past, horizon=horizon, split=split, batch_size=batch_size,
                              max_windows=max_windows, which=which, device=device, seed=seed, extractor=extractor,
                              fd_protocol=fd_protocol, modality=modality)
    path = save_rollout(result, out or args.paths[0])
    shown = sorted({0, min(1, result.horizon - 1), result.horizon // 2, result.horizon - 1})
    for key, values in result.curves().items():
        typer.echo(f"{key}: " + "   ".join(f"+{(s + 1) / result.hz:g} s" for s in shown))
        for name, v in values.items():
            typer.echo(f"  {name:<44}" + "".join(f"{v[s]:>10.3f}" for s in shown))
    typer.echo(f"wrote {path} ({result.windows} windows)")


def eval_baselines(
    ctx: typer.Context,
    split: str = typer.Option("val", "--split", help="Episode split to score: train or val."),
    past: int = typer.Option(5, "--past", help="Observed frames per window (OccWorld: 5 = -2 s .. 0 s at 2 Hz)."),
    horizon: int = typer.Option(6, "--horizon", help="Forecast frames scored (OccWorld: 6 = 0.5 .. 3 s at 2 Hz)."),
    protocol: str = typer.Option("occworld", "--protocol", help="occworld (no mask, empty class = 1) or occ3d (mask_camera, nan-mean)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Windows per batch."),
    max_batches: int = typer.Option(0, "--max-batches", help="Stop after this many batches (0 = all windows)."),
    lidar: bool = typer.Option(False, "--lidar", help="Also score the LiDAR baselines (4D-Occ CD / NFCD); needs lidar in the store."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the full results (per class, per step) as JSON here."),
) -> None:
    """Score the no-learning forecasters every table shows (copy-last, ego-motion-warped copies) on an episode
    store with the named occupancy protocol."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.evaluation import evaluate_baselines

    args = parse_run_args(ctx.args)
    data = _store(args, "baselines")
    if args.paths:
        raise ConfigError(f"`drivewm eval baselines` takes no run directory (got {args.paths[0]}), only data=DIR")
    if protocol not in ("occworld", "occ3d"):
        raise ConfigError(f"--protocol must be occworld or occ3d, got {protocol!r}")
    results = evaluate_baselines(data, split=split, past=past, horizon=horizon, protocol=protocol,
                                 batch_size=batch_size, max_batches=max_batches or None, lidar=lidar)
    occ = [r for r in results if "miou" in r]
    names = list(occ[0]["miou"])
    typer.echo(f"protocol {protocol}, {occ[0]['windows']} windows, values in %")
    last = names[-2] if len(names) > 1 else names[0]
    typer.echo(f"{'forecaster':<46}" + "".join(f"{'mIoU ' + n:>12}" for n in names) + "".join(f"{'IoU ' + n:>12}" for n in names)
               + "".join(f"{'dyn mIoU ' + n:>14}" for n in names) + f"{'mIoU present ' + last:>18}")
    for r in occ:
        row = "".join(f"{r['miou'][n]:>12.2f}" for n in names) + "".join(f"{r['iou'][n]:>12.2f}" for n in names)
        row += "".join(f"{r['dynamic_miou'][n]:>14.2f}" for n in names) + f"{r['miou_present'][last]:>18.2f}"
        typer.echo(f"{r['forecaster']:<46}{row}")
    typer.echo(f"{occ[0]['classes_absent'][last]:.0f}% of the semantic classes are absent from the ground truth at "
               f"{last}; the protocol's mIoU scores each of them 100, the present-class mIoU leaves them out")
    for r in results:
        if "cd" in r:
            typer.echo(f"{r['forecaster']:<24}  CD {r['cd']:.3f} m^2   NFCD {r['nfcd']:.3f} m^2   ({r['pairs']} cloud pairs, 4D-Occ protocol)")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(out)
        typer.echo(f"wrote {out}")


_CODE_ROWS = (("codebook usage", "usage"), ("codes used", "codes_used"), ("perplexity", "perplexity"),
              ("tokens per frame", "tokens_per_frame"), ("bits per frame", "bits_per_frame"),
              ("entropy bits per frame", "entropy_bits_per_frame"))


def _print_tokenizer_table(title: str, result: dict, modality: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if modality == "camera":
        rows = [("PSNR (dB, mean over the clip's frames)", result["psnr"]), ("SSIM", result["ssim"])]
        if "fd" in result:
            lo, hi = result["fd_interval"]["low"], result["fd_interval"]["high"]
            rows.append((f"{result['fd_name']} (95 % interval {lo:.4g} to {hi:.4g})", result["fd"]))
        levels = [p for p in ("top_", "bottom_") if f"{p}usage" in result] or ([""] if "usage" in result else [])
        rows += [(f"{p}{label}", result[p + key]) for p in levels for label, key in _CODE_ROWS]
        if len(levels) > 1:
            rows.append(("bits per frame, both levels", result["bits_per_frame"]))
        rows += [("clips x frames", f"{result['clips']} x {result['clip_frames']}")]
    elif modality == "lidar":
        rows = [("depth L1 (m)", result["l1"]), ("depth AbsRel", result["absrel"]), ("Chamfer (m^2)", result["cd"]),
                ("near-field Chamfer (m^2)", result["nfcd"])]
    else:
        rows = [("IoU (%)", result["iou"]), ("mIoU (%, OccWorld: absent class = 100)", result["miou"]),
                (f"mIoU over the {result['classes_present']} classes present (%)", result["miou_present"])]
        rows += [(f"  IoU {name} (%)", v) for name, v in result["per_class_iou"].items()]
    if modality != "camera":
        rows += [(label, result[key]) for label, key in _CODE_ROWS]
        rows += [("compression ratio", result["compression_ratio"]), ("frames", result["frames"])]
    for name, v in rows:
        table.add_row(name, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)


def eval_tokenizer(
    ctx: typer.Context,
    split: str = typer.Option("val", "--split", help="Episode split to evaluate: 'val' or 'train'."),
    batch_size: int = typer.Option(8, "--batch-size", help="Frames per batch."),
    max_frames: int = typer.Option(0, "--max-frames", help="Evaluate an evenly spaced subset of this many frames (0: all)."),
    which: str = typer.Option("best", "--which", help="Checkpoint: 'best' or 'latest'."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    out: Optional[str] = typer.Option(None, "--out", help="Directory for results/tokenizer.json and tokenizer.png (default: the run)."),
    clip_frames: int = typer.Option(8, "--clip-frames", help="Camera: frames per reconstructed clip (a temporal tokenizer's context; the Frechet protocol's clip length)."),
    extractor: str = typer.Option("", "--extractor", help=_EXTRACTOR_HELP),
    fd_protocol: str = typer.Option("", "--fd-protocol", help=_FD_PROTOCOL_HELP),
) -> None:
    """Reconstruct every frame through the tokens: IoU / mIoU / per-class IoU (occupancy, OccWorld
    protocol), depth L1 / Chamfer (LiDAR) or PSNR / SSIM and, with --extractor and --fd-protocol, a named Frechet
    distance (camera, clips of --clip-frames); codebook usage, perplexity, bits per frame; saves input vs
    reconstruction."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.report.results import write_result
    from drivewm.tokenizers.camera import CameraAutoencoder
    from drivewm.tokenizers.evaluate_run import evaluate_tokenizer
    from drivewm.tokenizers.vqvae2 import VQVAE2
    from drivewm.train.checkpoint import load_run

    CAMERA_TOKENIZERS = (CameraAutoencoder, VQVAE2)
    args = parse_run_args(ctx.args)
    data = _store(args, "tokenizer")
    if len(args.paths) != 1:
        raise ConfigError(f"`drivewm eval tokenizer`: give exactly one tokenizer run directory, got {args.paths}")
    run = args.paths[0]
    cfg, model = load_run(run, which=which, device=device)
    out_dir = Path(out or run)
    if isinstance(model, CAMERA_TOKENIZERS):
        from drivewm.evaluation.camera_tokenizer import evaluate_camera_tokenizer

        ev = evaluate_camera_tokenizer(model, f"{cfg.model.name} ({Path(run).name})", data, out_dir, split=split,
                                       batch_size=batch_size, clip_frames=clip_frames,
                                       max_clips=-(-max_frames // clip_frames), device=device, extractor=extractor,
                                       fd_protocol=fd_protocol)
    elif extractor or fd_protocol:
        raise ConfigError(f"--extractor / --fd-protocol score camera tokenizers; {run} is a {cfg.model.name}")
    else:
        ev = evaluate_tokenizer(model, cfg, data, out_dir, split=split, batch_size=batch_size, max_frames=max_frames,
                                device=device)
    title = f"Tokenizer {cfg.model.name} reconstruction ({data}, {split})"
    _print_tokenizer_table(title, ev.result, ev.modality)
    write_result(out_dir, **ev.result_table(title))
    typer.echo(f"picture: {ev.picture}")
    typer.echo(json.dumps({k: v for k, v in ev.result.items() if not isinstance(v, dict)}))


@dataclass
class _DataKeys:
    """The schema of `eval probe`'s overrides: data.KEY=VALUE."""

    data: DataConfig = field(default_factory=DataConfig)


def eval_probe(
    ctx: typer.Context,
    offset: int = typer.Option(2, "--offset", help="Frames ahead for the future agent-occupancy probe."),
    batches: int = typer.Option(16, "--batches", help="Batches of windows per split to fit / score the probes on."),
    batch_size: int = typer.Option(8, "--batch-size", help="Windows per batch."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: 'best' or 'latest'."),
    ridge: float = typer.Option(1e-2, "--ridge", help="Ridge penalty of the linear probes (relative to the token count)."),
) -> None:
    """Linear probes on the frozen features of a JEPA-kind run (jepa_bev,
    mae_bev, contrastive_bev, jepa_ac): BEV segmentation mIoU (current frame) and future agent occupancy R^2."""
    from drivewm.config import ConfigError, merge_into, parse_run_args
    from drivewm.jepa.probe import probe_encoder
    from drivewm.train.checkpoint import load_run

    args = parse_run_args(ctx.args, _DataKeys())
    if len(args.paths) != 1:
        raise ConfigError(f"`drivewm eval probe`: give exactly one JEPA run directory, got {args.paths}")
    run = args.paths[0]
    cfg, model = load_run(run, which)
    dots = [o.removeprefix("data.") for o in args.overrides] + ([f"path={args.data}"] if args.data is not None else [])
    data = merge_into(cfg.data, [("command line", dots)])
    res = probe_encoder(model, data, offset=offset, batches=batches, batch_size=batch_size, ridge=ridge)
    res.update(run_dir=str(run), model=cfg.model.name)
    path = Path(run, "probe.json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(path)
    typer.echo(json.dumps(res))
