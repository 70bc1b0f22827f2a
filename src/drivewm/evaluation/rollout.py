"""Long rollouts: how far a world model drifts when it rolls its own forecast out for many frames.

`evaluate_rollout` forecasts `horizon` frames (40 = 20 s at 2 Hz) from `past` observed ones (8 = 4 s) on every
window of the split, through the same loop as the forecasting tables (`evaluate_forecasters`), and measures each
step, for every model beside the copy-last baselines:

* camera: PSNR and SSIM at every step (`CameraScoring`); with `extractor` + `fd_protocol` the Frechet distance of
  each consecutive block of the protocol's clip length (an image protocol: of every frame), one sample per window;
* occupancy: mIoU (OccWorld protocol) at every step, and the drift of the class histogram: the total-variation
  distance 0.5 * sum_c |p_c - q_c| between the class frequencies of all forecast voxels and of all true voxels
  at that step (0: the forecast keeps the scene's class mix; a model that washes the scene out to free space
  or smears one class grows it step by step).

`save_rollout` writes results/rollout.json (per-step values of each row) and results/rollout.png (one panel per
measure, one curve per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from drivewm.baselines import baselines
from drivewm.errors import DrivewmError
from drivewm.evaluation.camera import frechet_setup
from drivewm.evaluation.forecast import MODALITY_NAMES, _windows, camera_baselines, load_forecaster, run_modality
from drivewm.evaluation.loop import CameraScoring, OccupancyScoring, evaluate_forecasters
from drivewm.metrics import OccupancyForecastMetric

# Measures plotted per modality: (key in a row's result, axis label).
CURVES = {
    "camera": [("psnr_per_step", "PSNR (dB)"), ("ssim_per_step", "SSIM")],
    "occ": [("miou_per_step", "mIoU (%)"), ("class_tv_per_step", "class histogram TV distance")],
}


class OccupancyDriftMetric(OccupancyForecastMetric):
    """`OccupancyForecastMetric` plus, per step, the forecast's and the truth's class frequencies and their
    total-variation distance, read off the same confusion counts (rows: truth, columns: forecast)."""

    def compute(self) -> dict:
        result = super().compute()
        conf = self._reduced()["confusion"].double()  # [H, C, C]
        truth = conf.sum(2) / conf.sum((1, 2))[:, None]  # [H, C]
        forecast = conf.sum(1) / conf.sum((1, 2))[:, None]
        result["class_freq_truth"] = truth.tolist()
        result["class_freq_forecast"] = forecast.tolist()
        result["class_tv_per_step"] = (0.5 * (forecast - truth).abs().sum(1)).tolist()
        result["class_names"] = list(self.class_names)
        return result


@dataclass
class RolloutResult:
    """Per-step drift of each row (baselines first, then the models) over `windows` rollouts."""

    modality: str
    results: dict[str, dict]
    """Each row's metric report; its `*_per_step` lists have `horizon` entries."""
    past: int
    horizon: int
    hz: float
    data: str
    split: str
    windows: int
    fd_name: str = ""
    extra: dict = field(default_factory=dict)

    def curves(self) -> dict[str, dict[str, list[float]]]:
        """{measure: {row: per-step values}} of the plotted measures."""
        return {key: {n: list(r[key]) for n, r in self.results.items()} for key, _ in CURVES[self.modality]}

    def document(self) -> dict:
        """The JSON of results/rollout.json."""
        doc = {"title": f"{MODALITY_NAMES[self.modality].capitalize()} rollouts: {self.horizon} frames "
                        f"({self.horizon / self.hz:g} s) from {self.past} observed",
               "modality": self.modality, "past": self.past, "horizon": self.horizon, "hz": self.hz,
               "data": self.data, "split": self.split, "windows": self.windows,
               "per_step": self.curves(), "metrics": self.results}
        if self.fd_name:
            doc["fd_name"] = self.fd_name
            doc["fd_per_block"] = {n: [b["value"] for b in r.get("fd_per_block", [r["fd"]])]
                                   for n, r in self.results.items()}
        return doc


def evaluate_rollout(
    run_dirs: Sequence[str | Path],
    data_path: str | Path,
    *,
    past: int = 8,
    horizon: int = 40,
    split: str = "val",
    batch_size: int = 4,
    max_windows: int = 0,
    which: str = "best",
    device: str = "cpu",
    seed: int = 0,
    splits: str = "",
    end_margin: int = 0,
    extractor: str = "",
    fd_protocol: str = "",
    forecasters: Sequence = (),
    modality: str = "",
) -> RolloutResult:
    """Roll world-model runs (all of one modality, camera or occupancy) out for `horizon` frames from `past`
    observed ones beside the copy-last baselines and measure each step (module docstring). `forecasters` are
    further rows given directly (any `Forecaster` of the runs' modality); `modality` names it when there is no
    model (the baselines alone)."""
    if past < 1 or horizon < 1:
        raise DrivewmError(f"past and horizon must be >= 1, got {past}, {horizon}")
    models = [load_forecaster(r, which, device) for r in run_dirs] + list(forecasters)
    modality = run_modality(models, modality)
    if modality == "lidar":
        raise DrivewmError("rollouts measure camera and occupancy world models; evaluate LiDAR runs with "
                           "`drivewm eval forecast`")
    if extractor and modality != "camera":
        raise DrivewmError(f"extractor={extractor}: the Frechet distance scores camera rollouts; these runs "
                           f"forecast {MODALITY_NAMES[modality]}")
    full, ds = _windows(str(data_path), past, horizon, split, max_windows, modality, splits, end_margin)
    fd_name = ""
    if modality == "camera":
        rows = camera_baselines(full.grid, full.keys)
        frechet = frechet_setup(extractor, fd_protocol, len(ds), horizon, blocks=True, device=device) if extractor else None
        scoring = CameraScoring(horizon, frechet, blocks=True)
        fd_name = frechet[0].name if frechet else ""
    else:
        rows = baselines(full.grid, "occ")[:2]  # copy-last and the ego-warped copy
        grid = full.grid
        scoring = OccupancyScoring(lambda: OccupancyDriftMetric(
            num_classes=grid.num_classes, free_id=grid.free_id, report_steps=tuple(range(1, horizon + 1)),
            hz=full.store.hz, class_names=grid.classes))
    ev = evaluate_forecasters([*rows, *models], DataLoader(ds, batch_size=batch_size, shuffle=False), scoring,
                              past=past, horizon=horizon, device=device, seed=seed)
    results = {n: m.compute() for n, m in ev.metrics.items()}
    return RolloutResult(modality, results, past, horizon, full.store.hz, str(data_path), split, len(ds), fd_name)


def _json_safe(v):
    """Non-finite floats as strings ('inf': an exact copy's PSNR), as the results convention writes them."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def save_rollout(result: RolloutResult, out_dir: str | Path) -> Path:
    """results/rollout.json and results/rollout.png under out_dir (atomic JSON write); returns the JSON's path."""
    import json
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) / "results"
    out.mkdir(parents=True, exist_ok=True)
    panels = list(CURVES[result.modality]) + ([("fd", result.fd_name)] if result.fd_name else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    seconds = [(s + 1) / result.hz for s in range(result.horizon)]
    doc = result.document()
    for ax, (key, label) in zip(axes[0], panels):
        for name in result.results:
            if key == "fd":
                values = doc["fd_per_block"][name]
                width = result.horizon // len(values)
                ax.plot([(i + 1) * width / result.hz for i in range(len(values))], values, marker="o", label=name)
            else:
                ax.plot(seconds, [v if v != float("inf") else float("nan") for v in result.results[name][key]],
                        label=name)
        ax.set_xlabel("seconds ahead")
        ax.set_ylabel(label, fontsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "rollout.png", dpi=110)
    plt.close(fig)
    doc["images"] = ["rollout.png"]
    path = out / "rollout.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(doc), indent=1))
    os.replace(tmp, path)
    return path
