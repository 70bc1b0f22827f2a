"""One evaluation loop for every occupancy forecaster: baselines and models go through the same code.

A forecaster is anything with ``forecast(context: dict[str, Tensor], horizon: int) -> occ
[B, H, X, Y, Z]`` (and a ``name``). Each window batch [B, past + future, ...] is split into the
context the forecaster may see (past frames of every key, poses of all frames so ego-motion
baselines can use the recorded motion, as OccWorld's ego-pose conditioning does) and the future
it is scored on, with ``OccupancyForecastMetric`` under the named protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from drivewm.baselines.forecasters import CopyLast, EgoWarpCopyLast
from drivewm.data.spec import GridSpec
from drivewm.metrics import OccupancyForecastMetric, PointCloudForecastMetric, clouds_from_padded

# Keys a forecaster may see for every frame (past and future): the ego's own recorded motion.
POSE_KEYS = ("rel_pose", "ego_pose")


class OccupancyForecaster(Protocol):
    name: str

    def forecast(self, context: dict[str, torch.Tensor], horizon: int) -> torch.Tensor: ...


def split_window(batch: dict[str, torch.Tensor], past: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(context, future) of a window batch: context = past frames of every key plus poses of all frames."""
    if "occ" in batch and batch["occ"].shape[1] <= past:
        raise ValueError(f"batch['occ'] has {batch['occ'].shape[1]} frames; past = {past} leaves no future to score")
    context, future = {}, {}
    for key, value in batch.items():
        if key in POSE_KEYS:
            context[key] = value
            future[key] = value[:, past:]
        else:
            context[key] = value[:, :past]
            future[key] = value[:, past:]
    return context, future


def evaluate_occupancy_forecast(
    forecaster: OccupancyForecaster,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    past: int,
    horizon: int,
    protocol: str = "occworld",
    grid: GridSpec | None = None,
    report_steps: tuple[int, ...] = (2, 4, 6),
    hz: float = 2.0,
    max_batches: int | None = None,
) -> dict:
    """Score ``forecaster`` on window batches; the result is the metric's report plus the forecaster's name."""
    grid = grid or GridSpec()
    metric = OccupancyForecastMetric(
        num_classes=grid.num_classes, free_id=grid.free_id, protocol=protocol, report_steps=report_steps, hz=hz, class_names=grid.classes
    )
    seen = 0
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            context, future = split_window(batch, past)
            gt = future["occ"][:, :horizon]
            if gt.shape[1] < horizon:
                raise ValueError(f"windows have {gt.shape[1]} future frames, fewer than horizon = {horizon}")
            pred = forecaster.forecast(context, horizon)
            if pred.shape != gt.shape:
                raise ValueError(f"{forecaster.name}: forecast shape {tuple(pred.shape)} does not match the future {tuple(gt.shape)}")
            mask = future["occ_mask"][:, :horizon] if protocol == "occ3d" else None
            if protocol == "occ3d" and "occ_mask" not in batch:
                raise KeyError("protocol 'occ3d' needs 'occ_mask' in the batches (add it to data.keys)")
            metric.update(pred, gt, mask)
            seen += gt.shape[0]
    return _report(metric, forecaster.name, seen)


def evaluate_lidar_forecast(
    forecaster,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    past: int,
    horizon: int,
    max_batches: int | None = None,
) -> dict:
    """Chamfer / NFCD (4D-Occ protocol) of a point-cloud forecaster whose ``forecast(context, horizon)``
    returns ``{"lidar": [B, H, N, C], "lidar_count": [B, H]}`` (the window layout), on window batches."""
    metric = PointCloudForecastMetric()
    seen = 0
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if "lidar" not in batch or "lidar_count" not in batch:
                raise KeyError("batches need 'lidar' and 'lidar_count' (add 'lidar' to data.keys)")
            context, future = split_window(batch, past)
            if future["lidar"].shape[1] < horizon:
                raise ValueError(f"windows have {future['lidar'].shape[1]} future frames, fewer than horizon = {horizon}")
            out = forecaster.forecast(context, horizon)
            pred = clouds_from_padded(out["lidar"], out["lidar_count"])
            gt = clouds_from_padded(future["lidar"][:, :horizon], future["lidar_count"][:, :horizon])
            metric.update(pred, gt)
            seen += len(gt)
    return _report(metric, forecaster.name, seen)


def _report(metric, name: str, windows: int) -> dict:
    """The metric's report with who was scored on how many windows."""
    if windows == 0:
        raise ValueError("no batches to evaluate")
    return {**metric.compute(), "forecaster": name, "windows": windows}


def occupancy_baselines(grid: GridSpec) -> list[OccupancyForecaster]:
    """The occupancy baselines every forecasting table shows."""
    return [CopyLast(), EgoWarpCopyLast(grid, motion="known"), EgoWarpCopyLast(grid, motion="constant_velocity"),
            EgoWarpCopyLast(grid, outside="border")]
