"""Synthetic episodes that follow the data contract (the simulator's keys), small and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from drivewm.data.spec import grid_preset


def make_episode(T: int, grid, seed: int = 0, *, camera: bool = True, lidar: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, Y, Z = grid.shape
    ep = {
        "occ": rng.integers(0, grid.num_classes, (T, X, Y, Z)).astype(np.uint8),
        "occ_mask": rng.random((T, X, Y, Z)) < 0.5,
        "ego_pose": np.cumsum(rng.normal(size=(T, 3)), axis=0).astype(np.float32),
        "action": rng.normal(size=(T, 2)).astype(np.float32),
        "agents": rng.normal(size=(T, 3, 8)).astype(np.float32),
        "agents_valid": rng.random((T, 3)) < 0.7,
        "ego_speed": rng.random(T).astype(np.float32),
        "collision": np.zeros(T, bool),
        "offroad": np.zeros(T, bool),
        "route": rng.normal(size=(5, 2)).astype(np.float32),
    }
    ep["agents"][..., 7] = 4.0  # car
    if camera:
        ep["camera"] = rng.integers(0, 256, (T, 8, 16, 3)).astype(np.uint8)
    if lidar:
        counts = rng.integers(3, 30, T)
        ep["lidar_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        ep["lidar"] = rng.normal(size=(int(counts.sum()), 4)).astype(np.float32)
    return ep


@pytest.fixture(name="make_episode", scope="session")
def make_episode_fixture():
    return make_episode


@pytest.fixture
def grid():
    return grid_preset("micro")
