"""Pinned numerics: the first losses of two debug recipes, seeded on CPU, equal stored values.

A refactor that changes what the code computes (initialisation order, RNG draws, data windows, the
simulator, warping, the optimizer schedule) changes these numbers, so it shows here instead of as a
silent drift of BENCHMARKS.md. When a change of numerics is intended, re-record the values and say why
in the commit."""

from __future__ import annotations

import pytest

from drivewm.train.config import load_run_config
from drivewm.report.results import read_metrics
from drivewm.train.run import run_training

RUN = ["train.steps=3", "train.log_every=1", "train.device=cpu", "train.precision=fp32", "train.progress=false",
       "train.ckpt_every=3"]

# Recorded on CPU (one and two threads agree to 1e-7 relative).
TOY_LOSSES = [0.4808734059333801, 0.4945497214794159, 0.4913877844810486]
VOXEL_UNET_LOSSES = [2.8816497325897217, 2.886547803878784, 2.883984088897705]


def _losses(run_dir) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def test_toy_recipe_first_losses_are_pinned(tmp_path):
    run_training(load_run_config("toy.yaml", [*RUN, f"run_dir={tmp_path / 'toy'}"]))
    assert _losses(tmp_path / "toy") == pytest.approx(TOY_LOSSES, rel=1e-6)


def test_voxel_world_model_first_losses_are_pinned(tmp_path):
    """world/voxel_unet_tiny.yaml at micro size, on a store of two simulated micro episodes."""
    from drivewm.data.store import write_episode
    from drivewm.sim import sim_preset, simulate_episode

    sim = sim_preset("micro", lidar=False, camera=False, visibility=False)
    for seed in (0, 1):
        write_episode(tmp_path / "store", simulate_episode(sim, seed, 8), grid=sim.grid_spec, hz=sim.hz)
    cfg = load_run_config("world/voxel_unet_tiny.yaml", [
        *RUN, f"run_dir={tmp_path / 'unet'}", f"data.path={tmp_path / 'store'}", "data.past=2", "data.future=2",
        "data.val_fraction=0.5", "train.batch_size=2", "model.grid=micro", "model.width=8", "model.levels=2",
        "model.max_horizon=2"])
    run_training(cfg)
    assert _losses(tmp_path / "unet") == pytest.approx(VOXEL_UNET_LOSSES, rel=1e-6)
