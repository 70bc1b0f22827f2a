"""The published AD-L-JEPA and Occupancy-MAE presets train end to end: on simulator occupancy and LiDAR, and on
nuScenes LiDAR sweeps through the converter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drivewm.config import preset_path
from drivewm.data.convert import convert_nuscenes_lidar
from drivewm.report.results import read_metrics
from drivewm.sim.generate import generate_store
from drivewm.train.config import load_run_config
from drivewm.train.run import run_training

# Micro grid (32 x 32 x 4 voxels of 1.6 m), a small network, 2 steps.
SMALL = ["model.encoder.grid_shape=[32,32,4]", "model.encoder.voxel_size=[1.6,1.6,1.6]", "model.encoder.channels=[4,8,8,8]",
         "model.encoder.out_channels=8", "model.encoder.blocks=1", "train.steps=2", "train.batch_size=2",
         "train.warmup_steps=1", "train.log_every=1", "train.ckpt_every=2", "train.progress=false", "train.device=cpu",
         "train.eval_batches=1"]


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "store"
    generate_store(out, preset="micro", episodes=2, frames=6, seed=0)
    return out


@pytest.mark.parametrize("preset, extra", [
    ("jepa/adl_jepa.yaml", []),
    ("jepa/adl_jepa_lidar.yaml", ["data.lidar_max_points=256"]),
    ("jepa/occupancy_mae.yaml", ["model.decoder_channels=[8,4]"]),
])
def test_published_presets_train_on_simulator_data(preset, extra, sim_store, tmp_path):
    cfg = load_run_config(preset_path(preset), [*SMALL, *extra, f"data.path={sim_store}", f"run_dir={tmp_path / 'run'}"])
    run_training(cfg)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run") if "loss" in m]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_adl_jepa_trains_on_converted_nuscenes_sweeps(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for t in range(4):
        pts = np.zeros((300, 5), np.float32)
        pts[:, :2] = rng.uniform(-20, 20, (300, 2))
        pts[:, 2] = rng.uniform(-1.5, 3.0, 300)
        pts[:, 3] = rng.uniform(0, 255, 300)
        (tmp_path / "sweeps").mkdir(exist_ok=True)
        pts.tofile(tmp_path / "sweeps" / f"s{t}.pcd.bin")
        frames.append({"lidar": f"sweeps/s{t}.pcd.bin", "ego_pose": [2.0 * t, 0, 0]})
    (tmp_path / "samples.json").write_text(json.dumps({"scenes": {"scene-0001": frames, "scene-0002": frames}}))
    convert_nuscenes_lidar(tmp_path / "samples.json", tmp_path / "store")
    cfg = load_run_config(preset_path("jepa/adl_jepa_lidar.yaml"),
                          [*SMALL, f"data.path={tmp_path / 'store'}", "data.val_fraction=0.5", f"run_dir={tmp_path / 'run'}"])
    run_training(cfg)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run") if "loss" in m]
    assert len(losses) == 2 and all(np.isfinite(losses))
