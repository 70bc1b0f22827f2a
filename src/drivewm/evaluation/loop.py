"""The one evaluation loop behind every forecasting table, occupancy and LiDAR.

Each window batch [B, past + future, ...] is split (`drivewm.forecaster.split_window`) into the context a
forecaster may see and the future it is scored on; every forecaster of the table (baselines, world models,
the direct voxel model, the tokenizer's bound) forecasts each batch in turn from one seeded generator, and
a modality's `Scoring` turns its output and the future into a streaming metric's update:

* `OccupancyScoring`: `OccupancyForecastMetric` under the named protocol (occ3d: with the camera mask);
* `LidarScoring`: `PointCloudForecastMetric` (4D-Occ); points are cropped to the returns a LiDAR token
  model can render (`region`, its tokenizer) when the table holds one, and a field forecast
  (`{"render": fn}`) is rendered along the true future rays, which also gives per-ray depth errors;
* `CameraScoring`: PSNR and SSIM of each future step (`ImageQualityMetric`), and optionally the Frechet
  distance of the forecast clips against the true clips under a named protocol (`ProtocolFrechetDistance`
  with the user's extractor file).

With `planning` (`drivewm.evaluation.plans.PlanScoring`), forecasters that also plan the ego's path
(`forecast_plan`) give their forecast and their waypoints from one call, scored beside a constant-velocity row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from drivewm.evaluation.camera import is_clip_protocol
from drivewm.evaluation.plans import CONSTANT_VELOCITY, PlanScoring, constant_velocity_plan
from drivewm.forecaster import EGO_KEYS, STATIC_KEYS, Forecaster, split_window
from drivewm.metrics import (
    FeatureExtractor,
    FrechetProtocol,
    ImageQualityMetric,
    OccupancyForecastMetric,
    PointCloudForecastMetric,
    ProtocolFrechetDistance,
    clouds_from_padded,
)


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    """Streaming metric of each forecaster, by name, in table order."""
    example: dict[str, Any]
    """The first window's context, truth and every forecast (for pictures)."""
    windows: int
    """Windows scored."""
    plans: dict[str, Any] = field(default_factory=dict)
    """Planning metric of each planner (constant velocity first), by name; empty without `planning`."""


class OccupancyScoring:
    """Class ids [B, H, X, Y, Z] against the future occupancy; `mask` scores only the camera-visible voxels."""

    modality = "occ"

    def __init__(self, make_metric: Callable[[], OccupancyForecastMetric], *, mask: bool = False) -> None:
        self.make_metric, self.mask = make_metric, mask

    def metric(self) -> OccupancyForecastMetric:
        return self.make_metric()

    def truth(self, future: dict[str, torch.Tensor], horizon: int) -> dict[str, torch.Tensor]:
        if "occ" not in future:
            raise KeyError(f"batches need 'occ' to score occupancy forecasts (keys {sorted(future)})")
        if future["occ"].shape[1] < horizon:
            raise ValueError(f"windows have {future['occ'].shape[1]} future frames, fewer than horizon = {horizon}")
        truth = {"occ": future["occ"][:, :horizon].long()}
        if self.mask:
            if "occ_mask" not in future:
                raise KeyError("protocol 'occ3d' needs 'occ_mask' in the batches (add it to data.keys)")
            truth["mask"] = future["occ_mask"][:, :horizon]
        return truth

    def update(self, metric: OccupancyForecastMetric, name: str, out: torch.Tensor, truth: dict) -> torch.Tensor:
        if out.shape != truth["occ"].shape:
            raise ValueError(f"{name}: forecast shape {tuple(out.shape)} does not match the future {tuple(truth['occ'].shape)}")
        metric.update(out.long(), truth["occ"], truth.get("mask"))
        return out

    def example(self, context: dict, truth: dict, shown: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"context": context["occ"][0].long().cpu(), "truth": truth["occ"][0].cpu(),
                **{n: p[0].cpu() for n, p in shown.items()}}


LIDAR_PROTOCOLS = ("region", "4d-occ")


class LidarScoring:
    """Sweeps against the future sweeps, 4D-Occ metrics. `protocol`:
    - 'region' (drivewm's): with `region` (a LiDAR tokenizer) every cloud, the truth included, is cut to the
      returns that tokenizer can render (inside its grid, beyond its near plane);
    - '4d-occ' (4D-Occ arXiv 2302.13130, as Copilot4D reports it): independent of any tokenizer, Chamfer on the
      full clouds (every real return; with a region, beyond its near plane, where rendering starts), NFCD in the
      +-70 m ROI, and field forecasts rendered along every true ray.
    Field forecasts need `region` and are rendered from each frame's sensor origin (the batch's `lidar_origin`,
    else the tokenizer's mount), from which the per-ray depth errors are measured too; `steps` names the frames
    the example keeps ({'1s': 2, '3s': 6})."""

    modality = "lidar"

    def __init__(self, region=None, steps: dict[str, int] | None = None, protocol: str = "region") -> None:
        if protocol not in LIDAR_PROTOCOLS:
            raise ValueError(f"LiDAR protocol must be one of {', '.join(LIDAR_PROTOCOLS)}, got {protocol!r}")
        self.region, self.steps, self.protocol = region, steps or {}, protocol
        self.inside = protocol == "region"

    def metric(self) -> PointCloudForecastMetric:
        return PointCloudForecastMetric()

    def _clouds(self, points: torch.Tensor, count: torch.Tensor, origin: torch.Tensor | None = None
                ) -> list[list[torch.Tensor]]:
        """Padded sweeps [B, H, P, C] (sensor origins [B, H, 3]) -> [B][H] clouds: the real rows, or (with a
        region) their xyz inside it."""
        if self.region is None:
            return clouds_from_padded(points, count)
        from drivewm.dynamics.lidar_forecast import returns_mask

        flat_origin = origin.flatten(0, 1) if origin is not None else None
        keep = returns_mask(self.region, points.flatten(0, 1), count.flatten(0, 1), flat_origin,
                            self.inside).view(*points.shape[:3])
        return [[points[i, t][keep[i, t], :3].cpu() for t in range(points.shape[1])] for i in range(points.shape[0])]

    def truth(self, future: dict[str, torch.Tensor], horizon: int) -> dict:
        if "lidar" not in future or "lidar_count" not in future:
            raise KeyError("batches need 'lidar' and 'lidar_count' (add 'lidar' to data.keys)")
        if future["lidar"].shape[1] < horizon:
            raise ValueError(f"windows have {future['lidar'].shape[1]} future frames, fewer than horizon = {horizon}")
        points, count = future["lidar"][:, :horizon], future["lidar_count"][:, :horizon]
        origin = future["lidar_origin"][:, :horizon].float() if "lidar_origin" in future else None  # [B, H, 3]
        return {"points": points, "count": count, "origin": origin, "clouds": self._clouds(points, count, origin)}

    def update(self, metric: PointCloudForecastMetric, name: str, out: dict, truth: dict) -> list[list[torch.Tensor]]:
        if "render" not in out:
            clouds = self._clouds(out["lidar"], out["lidar_count"], truth["origin"])
            metric.update(clouds, truth["clouds"])
            return clouds
        if self.region is None:
            raise ValueError(f"{name}: a field forecast is rendered along the true rays of a LiDAR tokenizer's region; "
                             f"give LidarScoring(region=tokenizer)")
        frames = out["render"](truth["points"], truth["count"], truth["origin"], self.inside)
        pred = [[f["points"].cpu() for f in fs] for fs in frames]
        # Ground truth in the rays' order, so per-ray depth errors pair up; the same set of returns as truth["clouds"].
        b, horizon = truth["points"].shape[:2]
        metric.update(pred, [[f["points_gt"].cpu() for f in fs] for fs in frames],
                      pred_depth=[[f["depth"].cpu() for f in fs] for fs in frames],
                      origin=truth["origin"] if truth["origin"] is not None else self.region.origin.expand(b, horizon, 3))
        return pred

    def example(self, context: dict, truth: dict, shown: dict[str, list]) -> dict[str, list]:
        steps = self.steps.values()
        return {"truth": [truth["clouds"][0][s - 1].numpy() for s in steps],
                **{n: [c[0][s - 1].numpy() for s in steps] for n, c in shown.items()}}


class CameraForecastMetric:
    """PSNR / SSIM per future step, and the Frechet distance of each block of frames when a protocol is given."""

    def __init__(self, steps: int, frechet: list[ProtocolFrechetDistance]) -> None:
        self.image = ImageQualityMetric(data_range=255.0, steps=steps)
        self.frechet = frechet

    def compute(self) -> dict:
        out = self.image.compute()
        if self.frechet:
            fd = [m.compute() for m in self.frechet]
            out["fd"] = fd[-1]
            if len(fd) > 1:  # a rollout: one distance per block of frames, the last one as "fd"
                out["fd_per_block"] = fd
        return out


class CameraScoring:
    """uint8 images [B, H, h, w, 3] against the future camera frames: PSNR (data range 255) and SSIM of every
    step, averaged over windows. With `frechet` = (protocol, extractor) also the protocol's Frechet distance of
    the forecast clips vs the true clips of the same windows: a video protocol (fvd, fd) takes the first
    `protocol.frames` frames of each forecast, an image protocol (fid) every forecast frame. `blocks` (rollouts)
    instead gives one distance per consecutive block of `protocol.frames` frames (fid: per frame), each block's
    protocol.samples being its clip count. The truth's features are extracted once per batch for all rows."""

    modality = "camera"

    def __init__(self, horizon: int, frechet: tuple[FrechetProtocol, FeatureExtractor] | None = None, *,
                 blocks: bool = False) -> None:
        self.horizon, self.frechet = horizon, frechet
        self.spans = [(0, horizon)]
        if frechet is not None:
            protocol = frechet[0]
            width = protocol.frames if is_clip_protocol(protocol) else 1
            if width > horizon:
                raise ValueError(f"{protocol.name} needs clips of {width} frames; the horizon is {horizon}")
            if blocks:
                self.spans = [(s, s + width) for s in range(0, horizon - width + 1, width)]
            else:
                self.spans = [(0, width if is_clip_protocol(protocol) else horizon)]

    def metric(self) -> CameraForecastMetric:
        frechet = [ProtocolFrechetDistance(*self.frechet) for _ in self.spans] if self.frechet else []
        return CameraForecastMetric(self.horizon, frechet)

    def _features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Extractor features of each span's frames [B, H, h, w, 3]: [N, D] per span."""
        protocol, extractor = self.frechet
        out = []
        for start, stop in self.spans:
            clips = frames[:, start:stop].movedim(-1, -3)  # [B, S, 3, h, w]
            x = clips if is_clip_protocol(protocol) else clips.flatten(0, 1)
            out.append(extractor(protocol.preprocess(x)))
        return out

    def truth(self, future: dict[str, torch.Tensor], horizon: int) -> dict[str, Any]:
        if "camera" not in future:
            raise KeyError(f"batches need 'camera' to score camera forecasts (keys {sorted(future)})")
        if future["camera"].shape[1] < horizon:
            raise ValueError(f"windows have {future['camera'].shape[1]} future frames, fewer than horizon = {horizon}")
        camera = future["camera"][:, :horizon]
        return {"camera": camera, "features": self._features(camera) if self.frechet else []}

    def update(self, metric: CameraForecastMetric, name: str, out: torch.Tensor, truth: dict) -> torch.Tensor:
        if out.shape != truth["camera"].shape:
            raise ValueError(f"{name}: forecast shape {tuple(out.shape)} does not match the future "
                             f"{tuple(truth['camera'].shape)}")
        if out.dtype != torch.uint8:
            raise ValueError(f"{name}: a camera forecast must be uint8 images, got dtype {out.dtype}")
        metric.image.update(out.movedim(-1, -3).double(), truth["camera"].movedim(-1, -3).double())
        if metric.frechet:
            for m, real, fake in zip(metric.frechet, truth["features"], self._features(out)):
                m.update_features(real=real, fake=fake)
        return out

    def example(self, context: dict, truth: dict, shown: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"context": context["camera"][0].cpu(), "truth": truth["camera"][0].cpu(),
                **{n: p[0].cpu() for n, p in shown.items()}}


@torch.no_grad()
def evaluate_forecasters(
    forecasters: Sequence[Forecaster],
    batches: Iterable[dict[str, torch.Tensor]],
    scoring: OccupancyScoring | LidarScoring | CameraScoring,
    *,
    past: int,
    horizon: int,
    device: str = "cpu",
    seed: int = 0,
    max_batches: int | None = None,
    planning: PlanScoring | None = None,
) -> Evaluation:
    """Score every forecaster on the same window batches; forecasters that sample share one generator seeded
    with `seed`, called in table order on each batch. With `planning`, the forecasters that plan
    (`forecast_plan`) are scored on their waypoints too, beside a constant-velocity row."""
    names = [f.name for f in forecasters]
    if len(set(names)) != len(names):
        raise ValueError(f"forecaster names must be unique, got {names}")
    for f in forecasters:
        if f.modality != scoring.modality:
            raise ValueError(f"{f.name} forecasts {f.modality!r}, but this table scores {scoring.modality!r}; "
                             f"evaluate each modality in its own table")
    metrics = {f.name: scoring.metric() for f in forecasters}
    planners = [f.name for f in forecasters if hasattr(f, "forecast_plan") and not f.sees_future] if planning else []
    plans = {n: planning.metric() for n in [CONSTANT_VELOCITY, *planners]} if planners else {}
    generator = torch.Generator(device=device).manual_seed(seed)
    example: dict[str, Any] = {}
    windows = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        context, future = split_window(batch, past)
        truth = scoring.truth(future, horizon)
        # Upper bounds see the future frames; the context's frames ride along as past_<key> (the oracle fill
        # keeps the copy where the last frame saw).
        ceiling_view = {**future, **{f"past_{k}": v for k, v in context.items() if k not in EGO_KEYS + STATIC_KEYS}}
        if plans:
            plan_truth = planning.truth(batch, past, horizon)
            planning.update(plans[CONSTANT_VELOCITY], CONSTANT_VELOCITY,
                            constant_velocity_plan(context, past, horizon), plan_truth)
        shown = {}
        for f in forecasters:
            if f.name in planners:
                out, waypoints = f.forecast_plan(context, horizon, generator=generator)
                planning.update(plans[f.name], f.name, waypoints, plan_truth)
            else:
                out = f.forecast(ceiling_view if f.sees_future else context, horizon, generator=generator)
            shown[f.name] = scoring.update(metrics[f.name], f.name, out, truth)
        if not example:
            example = scoring.example(context, truth, shown)
        windows += next(iter(batch.values())).shape[0]
    if windows == 0:
        raise ValueError("no batches to evaluate")
    return Evaluation(metrics, example, windows, plans)
