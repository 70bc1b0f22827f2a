"""Tiny stores and world-model runs to drive in: a simulated micro store (occupancy and camera), a calibrated
camera-only store, an untrained voxel U-Net run (deterministic) and an untrained GPT run (it samples)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """The micro simulator preset: 1 episode x 10 frames with occupancy, camera 16 x 32 and the generator's settings."""
    from drivewm.sim.generate import generate_store

    path = tmp_path_factory.mktemp("play") / "store"
    generate_store(path, preset="micro", episodes=1, frames=10, seed=0)
    return path


@pytest.fixture(scope="session")
def camera_store(tmp_path_factory) -> Path:
    """One simulated episode with the camera and its calibration but no occupancy (as a converted video's store)."""
    from drivewm.data.store import write_episode
    from drivewm.sim import sim_preset, simulate_episode

    cfg = sim_preset("micro", camera_calibration=True, lidar=False, visibility=False)
    ep = simulate_episode(cfg, seed=3, frames=8)
    keys = ("camera", "camera_intrinsics", "camera_extrinsics", "ego_pose", "action", "ego_speed")
    path = tmp_path_factory.mktemp("play") / "camera_store"
    write_episode(path, {k: ep[k] for k in keys}, grid=cfg.grid_spec, hz=cfg.hz)
    return path


@pytest.fixture(scope="session")
def voxel_run(tmp_path_factory) -> Path:
    from drivewm.dynamics import VoxelUNetConfig, VoxelUNetForecaster
    from drivewm.hub import save_pretrained

    torch.manual_seed(0)
    model = VoxelUNetForecaster(VoxelUNetConfig(grid="micro", width=8, levels=2, max_horizon=1))
    return save_pretrained(model, tmp_path_factory.mktemp("play") / "voxel_unet")


@pytest.fixture(scope="session")
def gpt_run(tmp_path_factory) -> Path:
    """A GPT world model over an untrained micro occupancy tokenizer (8 x 8 tokens, 64 codes), nested in the run."""
    from drivewm.dynamics import GPTWorldConfig
    from drivewm.hub import save_pretrained
    from drivewm.registry import build_model
    from drivewm.tokenizers.occ import OccTokenizerConfig
    from drivewm.train.checkpoint import build_model_from_sources

    root = tmp_path_factory.mktemp("play")
    cfg = OccTokenizerConfig(grid="micro", class_dim=4, z_channels=16)
    cfg.cnn.channels, cfg.cnn.channel_mult, cfg.cnn.attention = 8, [1, 2, 2], False
    cfg.quantizer.codebook_size = 64
    torch.manual_seed(0)
    save_pretrained(build_model(cfg), root / "tok")
    world = build_model_from_sources(GPTWorldConfig(tokenizer_run=str(root / "tok"), vocab_size=64, token_shape=[8, 8],
                                                    dim=16, depth=1, heads=2, max_frames=6))
    return save_pretrained(world, root / "gpt")
