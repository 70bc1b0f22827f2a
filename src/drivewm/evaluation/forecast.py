"""The forecasting tables: `eval forecast` (trained runs beside the baselines) and `eval baselines`.

OccWorld (arXiv 2311.16038): 2 Hz windows of 5 observed frames (-2 s .. 0 s) and 6 predicted (0.5 .. 3 s)
from every start index of the validation episodes; per horizon, IoU of occupied vs free and mIoU over
the semantic classes (free excluded), counts summed over the dataset, no visibility mask
(`OccupancyForecastMetric`, protocol "occworld"); the 1 s / 2 s / 3 s values and their mean. Every
table shows the same no-learning rows (`drivewm.baselines.baselines`) and, beside token world models,
the tokenizer's own reconstruction of the true future (`TokenizerBound`, the upper bound of any model on
that tokenizer). Occupancy tables add the constant-velocity agents row when the store tracks its road users,
then the ceiling of the copies (`OracleFill`: the copy where the last frame saw, the truth where it did not),
and report the dynamic-class mIoU (road users only) and per-class IoU beside the mIoU. Runs of the direct
voxel forecaster (`voxel_unet`) are rows like any other model.
World models on a LiDAR tokenizer make a LiDAR table instead: Chamfer distance (and NFCD, depth L1 /
AbsRel) at 1 s and 3 s on the returns inside the tokenizer's grid (drivewm's 'region' protocol), or
(`evaluate_lidar_4docc`) the 4D-Occ protocol as Copilot4D reports it, independent of the tokenizer: full
clouds, 1 s as 2 observed -> 2 predicted sweeps and 3 s as 6 -> 6, two separate runs.
World models that also plan the ego's path (OccWorld as published) add a planning table: L2 and collision
per step beside a constant-velocity plan (`drivewm.evaluation.plans`).
Camera world models make a camera table: PSNR and SSIM per future step (+1, +2 = 1 s at 2 Hz and the last
shown), beside copy-last and the last frame warped by the known ego motion through the road-plane homography
(when the store records the camera calibration and poses), the camera tokenizer's reconstruction bound, and
with `extractor` + `fd_protocol` the Frechet distance of the forecast clips under that named protocol.

Windows: every start index of the split's episodes; `end_margin=2` gives OccWorld's validation set
exactly (L - 12 windows of a scene of L frames); `splits` names the episodes of each split (a file, see
`DataConfig.splits`) instead of the last 10 % of the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Subset

from drivewm.baselines import baselines
from drivewm.data.config import DataConfig
from drivewm.data.manifest import StoreError
from drivewm.data.spec import GridSpec, bind_model_grids
from drivewm.data.store import EpisodeStore
from drivewm.data.windows import WindowDataset, build_dataset
from drivewm.errors import CheckpointError, DrivewmError
from drivewm.evaluation.camera import frechet_setup
from drivewm.evaluation.loop import CameraScoring, LidarScoring, OccupancyScoring, evaluate_forecasters
from drivewm.evaluation.plans import PlanScoring, plan_table_rows
from drivewm.evaluation.tables import (
    save_camera_forecast_pictures,
    save_forecast_pictures,
    save_lidar_forecast_picture,
    table_rows,
)
from drivewm.forecaster import STATIC_KEYS, Forecaster
from drivewm.metrics import OccupancyForecastMetric, PointCloudForecastMetric

LIDAR_METRICS = ("cd", "nfcd", "l1", "absrel")
CAMERA_PROTOCOL = ("{past} observed + {horizon} predicted camera frames at {hz:g} Hz from every start index of the "
                   "split's episodes; PSNR (dB, data range 255) and SSIM (Wang et al. 2004, 11 x 11 Gaussian, valid "
                   "windows) per image, averaged over windows at each step")
MODALITY_NAMES = {"occ": "occupancy", "lidar": "LiDAR", "camera": "camera"}
OCC_PROTOCOL = ("OccWorld arXiv 2311.16038: 5 observed + 6 predicted frames at 2 Hz, no visibility mask, "
                "mIoU over classes 0..16 (zero-GT class scores 1), IoU of occupied vs free, percent")
LIDAR_PROTOCOL = ("Copilot4D arXiv 2311.01017 / 4D-Occ arXiv 2302.13130: 5 observed + 6 predicted "
                  "sweeps at 2 Hz; tokens rendered along the true future rays; Chamfer distance and NFCD (m^2), depth "
                  "L1 (m) and AbsRel on the returns inside the tokenizer's grid; baselines have no per-ray depth")
LIDAR_4DOCC_PROTOCOL = ("4D-Occ arXiv 2302.13130 as Copilot4D arXiv 2311.01017 reports it: {past} observed -> {horizon} "
                        "predicted sweeps ({name}); Chamfer distance on the full clouds and NFCD in the +-70 m ROI (m^2), "
                        "per-ray depth L1 (m) and AbsRel from each sweep's sensor origin along every true ray; "
                        "baselines have no per-ray depth")


def load_forecaster(run_dir: str | Path, which: str = "best", device: str = "cpu") -> Forecaster:
    """A trained world-model run (token world model or direct voxel model) as a forecaster named for the table:
    "gpt_world [attention] (RUN)", "voxel_unet (RUN)"."""
    from drivewm.hub import from_pretrained
    from drivewm.registry import model_entry

    model = from_pretrained(run_dir, device, which)
    kind = model_entry(model.cfg.name).kind
    if kind != "world" or not hasattr(model, "forecast"):
        raise CheckpointError(f"{run_dir}: holds a {kind} model ({model.cfg.name}), not a world model")
    backbone = getattr(model.cfg, "backbone", None)  # token world models name their temporal mixer
    mixer = "unet" if getattr(model.cfg, "network", None) == "unet" else backbone.kind if backbone else ""
    model.name = f"{model.cfg.name}{f' [{mixer}]' if mixer else ''} ({Path(run_dir).name})"
    return model


def lidar_report_steps(horizon: int, hz: float) -> dict[str, int]:
    """{'1s': 2, '3s': 6} at 2 Hz: the 1 s / 3 s frames Copilot4D reports, those within the horizon."""
    steps = {f"{sec:g}s": round(sec * hz) for sec in (1.0, 3.0)}
    steps = {k: s for k, s in steps.items() if 1 <= s <= horizon}
    return steps or {f"{horizon / hz:g}s": horizon}


def summarize_lidar(metric: PointCloudForecastMetric, steps: dict[str, int]) -> dict:
    """Each LiDAR metric at the named steps and over all future frames ('all'), plus the pair counts."""
    r = metric.compute()
    out = {m: {**{name: r[f"{m}_per_step"][s - 1] for name, s in steps.items()}, "all": r[m]} for m in LIDAR_METRICS}
    return {**out, **{k: r[k] for k in ("pairs", "skipped_cd", "protocol")},
            "units": {m: r[f"{m}_unit"] for m in LIDAR_METRICS}}


@dataclass
class ForecastTable:
    """A forecasting table: results by row name (metric reports), and what its pictures and JSON need."""

    modality: str
    results: dict[str, dict]
    example: dict
    grid: GridSpec
    steps: list[str]
    data: str
    split: str
    windows: int
    lidar_protocol: str = "region"
    past: int = 5
    horizon: int = 6
    planning: dict[str, dict] | None = None
    """Planning metric reports by planner name (constant velocity first), for world models that plan."""
    hz: float = 2.0
    """Frame rate of the store (the pictures' time labels, the protocol text)."""
    notes: str = ""
    """What the table leaves out and why (a camera store without calibration has no warped-copy row)."""

    def save_pictures(self, results_dir: str | Path) -> list[str]:
        """forecast.png + forecast.gif (LiDAR: forecast_lidar.png, camera: forecast_camera.png + .gif) of the first
        window; names relative to results_dir."""
        if self.modality == "lidar":
            return save_lidar_forecast_picture(self.example, self.steps, Path(results_dir))
        if self.modality == "camera":
            return save_camera_forecast_pictures(self.example, Path(results_dir), self.hz)
        return save_forecast_pictures(self.example, self.grid, Path(results_dir))

    def document(self, images: Sequence[str]) -> dict:
        """The keyword arguments of `report.results.write_result` for results/forecast.json (LiDAR: forecast_lidar.json)."""
        columns, rows = table_rows(self.results)
        extra = {"metrics": self.results, "data": self.data, "split": self.split, "windows": self.windows}
        if self.planning:
            plan_columns, plan_rows = plan_table_rows(self.planning)
            extra["planning"] = {"metrics": self.planning, "columns": plan_columns, "rows": plan_rows}
        if self.modality == "lidar" and self.lidar_protocol == "4d-occ":
            name = self.steps[0] if self.steps else f"{self.horizon}f"
            return dict(name=f"forecast_lidar_4docc_{name}", title=f"LiDAR forecasting at {name} (4D-Occ protocol)",
                        columns=columns, rows=rows, images=list(images), extra=extra,
                        protocol=LIDAR_4DOCC_PROTOCOL.format(past=self.past, horizon=self.horizon, name=name))
        if self.modality == "camera":
            return dict(name="forecast_camera", title="Camera forecasting (PSNR / SSIM per step)", columns=columns,
                        rows=rows, protocol=CAMERA_PROTOCOL.format(past=self.past, horizon=self.horizon, hz=self.hz),
                        images=list(images), notes=self.notes, extra=extra)
        if self.modality == "lidar":
            return dict(name="forecast_lidar", title="LiDAR forecasting (Copilot4D, 4D-Occ metrics)", columns=columns,
                        rows=rows, protocol=LIDAR_PROTOCOL, images=list(images), extra=extra)
        return dict(name="forecast", title="Occupancy forecasting (OccWorld protocol)", columns=columns, rows=rows,
                    protocol=OCC_PROTOCOL, images=list(images), extra=extra)


def _agent_keys(data_path: str) -> list[str]:
    """['agents', 'agents_valid'] (+ 'agents_velocity' where recorded) when every episode of the store tracks its
    road users (the constant-velocity agents row and the collisions of plans need them), else []."""
    keys = EpisodeStore(data_path).keys()
    if not {"agents", "agents_valid"} <= keys:
        return []
    return ["agents", "agents_valid"] + (["agents_velocity"] if "agents_velocity" in keys else [])


def _camera_keys(data_path: str) -> list[str]:
    """The keys of camera windows: the frames, the poses and actions when every episode has them (an unposed video
    has none), and the calibration the homography-warped copy needs when every episode records it."""
    available = EpisodeStore(data_path).keys()
    if "camera" not in available:
        raise StoreError(f"{data_path}: camera world models are scored on the key 'camera', which not every episode "
                         f"of the store has (every episode has {sorted(available)})")
    return ["camera", *(k for k in ("action", "ego_pose", *STATIC_KEYS) if k in available)]


def _windows(data_path: str, past: int, horizon: int, split: str, max_windows: int, frames_key: str,
             splits: str = "", end_margin: int = 0):
    keys = [frames_key, "action", "ego_pose", *(_agent_keys(data_path) if frames_key == "occ" else [])]
    if frames_key == "lidar" and "lidar_origin" in EpisodeStore(data_path).keys():
        keys.append("lidar_origin")  # rays from each sweep's sensor
    if frames_key == "camera":
        keys = _camera_keys(data_path)
    ds = build_dataset(DataConfig(path=str(data_path), past=past, future=horizon, keys=keys, splits=splits,
                                  end_margin=end_margin), split)
    if len(ds) == 0:
        longest = max((ds.store.episodes[e]["frames"] for e in ds.episode_ids), default=0)
        raise StoreError(f"{data_path}: no {split} window of {past} + {horizon} frames; the longest {split} episode "
                         f"has {longest} frames (lower --past / --horizon, or generate longer episodes)")
    if max_windows and len(ds) > max_windows:  # evenly spaced, deterministic subset
        idx = torch.linspace(0, len(ds) - 1, max_windows).round().long().unique().tolist()
        return ds, Subset(ds, idx)
    return ds, ds


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
    lidar_protocol: str = "region",
    splits: str = "",
    end_margin: int = 0,
    extractor: str = "",
    fd_protocol: str = "",
    modality: str = "",
    forecasters: Sequence[Forecaster] = (),
) -> ForecastTable:
    """Score world-model runs (all of one modality) beside the baselines and each distinct tokenizer's bound;
    LiDAR runs under `lidar_protocol` ('region' or '4d-occ', `LidarScoring`); `splits`, `end_margin`: as
    `DataConfig`'s. Camera runs with `extractor` (a feature network file) and `fd_protocol` (a protocol name,
    `drivewm.evaluation.camera`) also get that protocol's Frechet distance. `forecasters` are further model rows
    given directly; `modality` names the table when there is no model (the baselines alone)."""
    if past < 1 or horizon < 1:
        raise DrivewmError(f"past and horizon must be >= 1, got {past}, {horizon}")
    runs = [load_forecaster(r, which, device) for r in run_dirs]
    models = runs + list(forecasters)
    modality = run_modality(models, modality)
    if extractor and modality != "camera":
        raise DrivewmError(f"extractor={extractor}: the Frechet distance scores camera forecasts; these runs "
                           f"forecast {MODALITY_NAMES[modality]}")
    plans = any(hasattr(m, "forecast_plan") for m in models)
    full, ds = _windows(str(data_path), past, horizon, split, max_windows, modality, splits, end_margin)
    for model in runs:  # a model trained on another grid is refused before any window is scored
        bind_model_grids(model.cfg, full.grid, str(data_path), compare=modality == "occ")
    if modality == "camera":
        return _camera_table(models, full, ds, str(data_path), past=past, horizon=horizon, split=split,
                             batch_size=batch_size, device=device, seed=seed, extractor=extractor,
                             fd_protocol=fd_protocol)
    bounds = tokenizer_bounds(models)
    occ = modality == "occ"
    forecasters = [*baselines(full.grid, modality, agents=occ and "agents" in full.keys, ceiling=occ),
                   *bounds, *models]
    if modality == "lidar":
        steps = lidar_report_steps(horizon, full.store.hz)
        if lidar_protocol == "4d-occ":  # one run per reported time: its last frame
            steps = {f"{horizon / full.store.hz:g}s": horizon}
        scoring = LidarScoring(region=models[0].tokenizer, steps=steps, protocol=lidar_protocol)
    else:
        report_steps = tuple(s for s in (2, 4, 6) if s <= horizon) or (horizon,)
        scoring = OccupancyScoring(lambda: OccupancyForecastMetric(
            num_classes=full.grid.num_classes, free_id=full.grid.free_id, report_steps=report_steps))
    planning = PlanScoring(full.store.hz) if plans else None
    ev = evaluate_forecasters(forecasters, DataLoader(ds, batch_size=batch_size, shuffle=False), scoring,
                              past=past, horizon=horizon, device=device, seed=seed, planning=planning)
    if modality == "lidar":
        results = {n: summarize_lidar(m, steps) for n, m in ev.metrics.items()}
        shown = list(steps)
    else:
        results = {n: m.compute() for n, m in ev.metrics.items()}
        shown = []
    planned = {n: m.compute() for n, m in ev.plans.items()} or None
    return ForecastTable(modality, results, ev.example, full.grid, shown, str(data_path), split, len(ds),
                         lidar_protocol=lidar_protocol, past=past, horizon=horizon, planning=planned)


def run_modality(models: Sequence[Forecaster], modality: str = "") -> str:
    """The one modality of a table's world models (`modality`, default 'occ', when there is none); a mix, or
    models of another modality than a given `modality`, is one error."""
    if modality and modality not in MODALITY_NAMES:
        raise DrivewmError(f"modality must be one of {', '.join(MODALITY_NAMES)}, got {modality!r}")
    modalities = {m.modality for m in models}
    if len(modalities) > 1:
        kinds = " and ".join(MODALITY_NAMES.get(k, k) for k in sorted(modalities))
        raise DrivewmError(f"run_dirs: mix {kinds} world models ({', '.join(f'{m.name}: {m.modality}' for m in models)}); "
                           f"evaluate each modality in its own call")
    if modality and modalities and modalities != {modality}:
        raise DrivewmError(f"modality={modality}: the runs forecast {MODALITY_NAMES.get(*modalities, *modalities)}")
    return modalities.pop() if modalities else modality or "occ"


def tokenizer_bounds(models: Sequence[Forecaster]) -> list[Forecaster]:
    """One upper-bound row per distinct tokenizer of the models (direct models such as the voxel U-Net or an
    EDM model on pixels have none): its reconstruction of the true future."""
    from drivewm.dynamics.forecast import TokenizerBound

    bounds: dict[str, Forecaster] = {}
    for model in models:
        if getattr(model, "tokenizer", None) is not None:
            bound = TokenizerBound(model)
            bounds.setdefault(bound.name, bound)
    return list(bounds.values())


def camera_baselines(grid: GridSpec, keys: Sequence[str]) -> list[Forecaster]:
    """The camera table's no-learning rows the windows allow: copy-last always, the homography-warped copy when
    they carry the calibration and the ego poses."""
    rows = baselines(grid, "camera")
    if not {"ego_pose", *STATIC_KEYS} <= set(keys):
        rows = [r for r in rows if r.name != "ego_warp_camera"]
    return rows


def _camera_table(models, full: WindowDataset, ds, data_path: str, *, past: int, horizon: int, split: str,
                  batch_size: int, device: str, seed: int, extractor: str, fd_protocol: str) -> ForecastTable:
    frechet = frechet_setup(extractor, fd_protocol, len(ds), horizon, device=device) if extractor else None
    rows = camera_baselines(full.grid, full.keys)
    notes = "" if len(rows) > 1 else ("no ego_warp_camera row: the store does not record camera_intrinsics / "
                                      "camera_extrinsics and ego poses for every episode")
    forecasters = [*rows, *tokenizer_bounds(models), *models]
    ev = evaluate_forecasters(forecasters, DataLoader(ds, batch_size=batch_size, shuffle=False),
                              CameraScoring(horizon, frechet), past=past, horizon=horizon, device=device, seed=seed)
    results = {n: m.compute() for n, m in ev.metrics.items()}
    return ForecastTable("camera", results, ev.example, full.grid, [], data_path, split, len(ds), past=past,
                         horizon=horizon, hz=full.store.hz, notes=notes)


def evaluate_lidar_4docc(run_dirs: Sequence[str | Path], data_path: str | Path, **options) -> dict[str, ForecastTable]:
    """The 4D-Occ protocol as Copilot4D reports it, as separate runs: {'1s': 1 s of observed sweeps -> 1 s
    predicted, '3s': 3 s -> 3 s} (2 -> 2 and 6 -> 6 sweeps at 2 Hz), each `evaluate_forecast` with
    lidar_protocol '4d-occ'; `options` are its other keywords (split, batch_size, max_windows, ...)."""
    hz = EpisodeStore(data_path).hz
    tables = {}
    for sec in (1.0, 3.0):
        frames = max(1, round(sec * hz))
        tables[f"{sec:g}s"] = evaluate_forecast(run_dirs, data_path, past=frames, horizon=frames,
                                                lidar_protocol="4d-occ", **options)
    return tables


def evaluate_baselines(
    data_path: str | Path,
    *,
    split: str = "val",
    past: int = 5,
    horizon: int = 6,
    protocol: str = "occworld",
    batch_size: int = 4,
    max_batches: int | None = None,
    lidar: bool = False,
) -> list[dict]:
    """The no-learning rows of the forecasting tables on any store: each baseline's metric report with its
    `forecaster` name and the `windows` scored (occupancy under `protocol`; with `lidar`, also the LiDAR
    baselines on whole sweeps)."""
    if protocol not in ("occworld", "occ3d"):
        raise DrivewmError(f"protocol must be occworld or occ3d, got {protocol!r}")
    keys = ["occ", "ego_pose"] + (["occ_mask"] if protocol == "occ3d" else []) + (["lidar"] if lidar else [])
    keys += _agent_keys(str(data_path))
    dataset = WindowDataset(DataConfig(path=str(data_path), past=past, future=horizon, keys=keys), split)
    if len(dataset) == 0:
        raise StoreError(f"{data_path} has no {split} window of {past + horizon} frames")
    hz, grid = dataset.store.hz, dataset.grid
    report_steps = tuple(max(1, round(sec * hz)) for sec in (1.0, 2.0, 3.0))  # the 1 s / 2 s / 3 s frames
    tables = [("occ", OccupancyScoring(lambda: OccupancyForecastMetric(
        num_classes=grid.num_classes, free_id=grid.free_id, protocol=protocol, report_steps=report_steps, hz=hz,
        class_names=grid.classes), mask=protocol == "occ3d"))]
    if lidar:
        tables.append(("lidar", LidarScoring()))
    rows = []
    for modality, scoring in tables:
        rows_of = baselines(grid, modality, agents="agents" in keys, ceiling=modality == "occ")
        ev = evaluate_forecasters(rows_of, DataLoader(dataset, batch_size=batch_size, shuffle=False),
                                  scoring, past=past, horizon=horizon, max_batches=max_batches)
        rows += [{**m.compute(), "forecaster": n, "windows": ev.windows} for n, m in ev.metrics.items()]
    return rows
