"""`drivewm eval forecast`: OccWorld's occupancy forecasting protocol for token world models and baselines.

OccWorld (arXiv 2311.16038): 2 Hz windows of 5 observed frames (-2 s .. 0 s) and 6 predicted (0.5 .. 3 s)
from every start index of the validation episodes; per horizon, IoU of occupied vs free and mIoU over
the semantic classes (free excluded), counts summed over the dataset, no visibility mask
(`drivewm.metrics.OccupancyForecastMetric`, protocol "occworld"); the 1 s / 2 s / 3 s values and
their mean. The same table shows copy-last, the ego-warped copy (known ego motion; also with the
unseen area filled from the grid's edge, `EgoWarpCopyLast(outside="border")`) and the tokenizer's
own reconstruction of the true future (the upper bound of any model on that tokenizer). Runs of the
direct voxel forecaster (`voxel_unet`, no tokens) are scored in the same table, as the learned reference.
World models on a LiDAR tokenizer are scored instead by `lidar_forecast.evaluate_lidar_runs`:
Chamfer distance (and NFCD, depth L1 / AbsRel) at 1 s and 3 s, written to results/forecast_lidar.json.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Subset

from drivewm.baselines import CopyLast, EgoWarpCopyLast
from drivewm.data.config import DataConfig
from drivewm.data.windows import build_dataset
from drivewm.dynamics.base import TokenWorldModel
from drivewm.dynamics.forecast import forecast_occupancy, reconstruct_occupancy
from drivewm.dynamics.voxel_unet import VoxelUNetForecaster
from drivewm.metrics import OccupancyForecastMetric


def load_world_model(run_dir: str | Path, which: str = "best", device: str = "cpu",
                     direct: bool = False) -> tuple[str, TokenWorldModel | VoxelUNetForecaster]:
    """(display name, model) of a world-model run; a clear error for any other kind of run. `direct`
    also accepts the direct voxel forecaster (`voxel_unet`), which has no tokens."""
    from drivewm.registry import model_entry
    from drivewm.train.checkpoint import load_run

    cfg, model = load_run(run_dir, which, device)
    kind = model_entry(cfg.model.name).kind
    if direct and isinstance(model, VoxelUNetForecaster):
        return f"{cfg.model.name} ({Path(run_dir).name})", model
    if kind != "world" or not isinstance(model, TokenWorldModel):
        raise ValueError(f"{run_dir}: holds a {kind} model ({cfg.model.name}), not a token world model")
    if model.tokenizer is None:
        raise ValueError(f"{run_dir}: the world model has no tokenizer (model.tokenizer_run was empty)")
    return f"{cfg.model.name} [{cfg.model.backbone.kind}] ({Path(run_dir).name})", model


def _windows(data_path: str, past: int, horizon: int, split: str, max_windows: int, frames_key: str = "occ"):
    cfg = DataConfig(path=str(data_path), past=past, future=horizon, keys=[frames_key, "action", "ego_pose"])
    ds = build_dataset(cfg, split)
    if len(ds) == 0:
        raise ValueError(f"{data_path}: no {split} windows of {past} + {horizon} frames")
    if max_windows and len(ds) > max_windows:  # evenly spaced, deterministic subset
        idx = torch.linspace(0, len(ds) - 1, max_windows).round().long().unique().tolist()
        return ds, Subset(ds, idx)
    return ds, ds


@torch.no_grad()
def evaluate_forecast(
    run_dirs: Sequence[str | Path],
    data_path: str | Path,
    *,
    past: int = 5,
    horizon: int = 6,
    split: str = "val",
    batch_size: int = 4,
    max_windows: int = 0,
    which: str = "best",
    device: str = "cpu",
    seed: int = 0,
    out_dir: str | Path | None = None,
    rollout_kw: dict | None = None,
) -> dict[str, dict]:
    """Score each world-model run and the baselines; returns {name: OccupancyForecastMetric.compute()}, or for
    LiDAR world models {name: lidar_forecast.summarize(...)} (all runs must share one modality).

    With `out_dir`, also writes results/forecast.json (the report's convention) and a PNG + GIF of one
    window: context, ground truth and every forecaster side by side (LiDAR: results/forecast_lidar.json
    and forecast_lidar.png).
    """
    if past < 1 or horizon < 1:
        raise ValueError(f"past and horizon must be >= 1, got {past}, {horizon}")
    models = [load_world_model(r, which, device, direct=True) for r in run_dirs]
    modalities = {getattr(m, "modality", "occ") for _, m in models}
    if len(modalities) > 1:
        raise ValueError(f"run_dirs: mix occupancy and LiDAR world models ({', '.join(n for n, _ in models)}); "
                         f"evaluate each modality in its own call")
    if modalities == {"lidar"}:
        return _evaluate_lidar(models, data_path, past=past, horizon=horizon, split=split, batch_size=batch_size,
                               max_windows=max_windows, device=device, seed=seed, out_dir=out_dir, rollout_kw=rollout_kw)
    full, ds = _windows(str(data_path), past, horizon, split, max_windows)
    grid = full.grid
    forecasters: dict[str, object] = {"copy_last": CopyLast(), "ego_warp_copy_last": EgoWarpCopyLast(grid),
                                      "ego_warp_copy_last_border": EgoWarpCopyLast(grid, outside="border")}
    tokenizers: dict[str, TokenWorldModel] = {}
    for name, model in models:  # one upper-bound row per distinct tokenizer run
        if isinstance(model, TokenWorldModel):
            tokenizers.setdefault(f"tokenizer_recon ({Path(model.cfg.tokenizer_run).name})", model)
    steps = tuple(s for s in (2, 4, 6) if s <= horizon) or (horizon,)

    def metric() -> OccupancyForecastMetric:
        return OccupancyForecastMetric(num_classes=grid.num_classes, free_id=grid.free_id, report_steps=steps)

    names = list(forecasters) + list(tokenizers) + [n for n, _ in models]
    metrics = {n: metric() for n in names}
    example: dict[str, torch.Tensor] = {}
    gen = torch.Generator(device=device).manual_seed(seed)
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        occ = batch["occ"].long()
        gt = occ[:, past : past + horizon]
        context = {"occ": occ[:, :past], "rel_pose": batch["rel_pose"]}
        preds = {n: f.forecast(context, horizon) for n, f in forecasters.items()}
        preds.update({n: reconstruct_occupancy(m, gt) for n, m in tokenizers.items()})
        for name, model in models:
            if isinstance(model, VoxelUNetForecaster):
                preds[name] = model.forecast(batch, past, horizon)
            else:
                preds[name] = forecast_occupancy(model, batch, past, horizon, generator=gen, **(rollout_kw or {}))
        for n in names:
            metrics[n].update(preds[n].long(), gt)
        if not example:
            example = {"context": occ[0, :past].cpu(), "truth": gt[0].cpu(), **{n: p[0].cpu() for n, p in preds.items()}}
    results = {n: m.compute() for n, m in metrics.items()}
    if out_dir is not None:
        from drivewm.report.forecast import save_forecast_pictures, write_forecast_result

        images = save_forecast_pictures(example, grid, Path(out_dir) / "results")
        write_forecast_result(results, out_dir, images=images, data=str(data_path), split=split, windows=len(ds))
    return results


def _evaluate_lidar(models, data_path, *, past, horizon, split, batch_size, max_windows, device, seed, out_dir,
                    rollout_kw) -> dict[str, dict]:
    from drivewm.dynamics.lidar_forecast import evaluate_lidar_runs

    full, ds = _windows(str(data_path), past, horizon, split, max_windows, frames_key="lidar")
    results, example = evaluate_lidar_runs(models, ds, past=past, horizon=horizon, hz=full.store.hz,
                                           batch_size=batch_size, device=device, seed=seed, rollout_kw=rollout_kw)
    if out_dir is not None:
        from drivewm.report.forecast import save_lidar_forecast_picture, write_forecast_result

        steps = [k for k in next(iter(results.values()))["cd"] if k != "all"]
        images = save_lidar_forecast_picture(example, steps, Path(out_dir) / "results")
        write_forecast_result(results, out_dir, images=images, data=str(data_path), split=split, windows=len(ds))
    return results
