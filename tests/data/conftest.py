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


# Camera frames for the converter tests: smooth, textured, moving, like a road seen from a car.
def road_frames(T: int, H: int, W: int, seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: sky gradient, a road with lane dashes moving towards the camera, a drifting car."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    horizon = 0.45 * H
    frames = np.empty((T, H, W, 3), np.uint8)
    colour = rng.uniform(60, 200, 3)
    for t in range(T):
        img = np.empty((H, W, 3))
        sky = np.clip((horizon - y) / horizon, 0, 1)[..., None]
        img[:] = sky * np.array([120, 170, 235]) + (1 - sky) * np.array([90, 95, 100])
        depth = np.maximum(y - horizon, 1e-3) / (H - horizon)  # 0 at the horizon, 1 at the bottom
        on_road = (np.abs(x - W / 2) < (0.05 + 0.45 * depth) * W) & (y > horizon)
        img[on_road] = [70, 70, 75]
        dash = (np.abs(x - W / 2) < 0.02 * W * (1 + 3 * depth)) & on_road & (np.sin(12 / depth + 0.9 * t) > 0.3)
        img[dash] = [235, 235, 225]
        cx, cy = W * (0.35 + 0.02 * t), horizon + 0.25 * H
        car = np.exp(-(((x - cx) / (0.08 * W)) ** 8 + ((y - cy) / (0.06 * H)) ** 8))[..., None]
        img = img * (1 - car) + car * colour
        frames[t] = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images (over all pixels and channels)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


@pytest.fixture(name="road_frames", scope="session")
def road_frames_fixture():
    return road_frames


@pytest.fixture(name="psnr", scope="session")
def psnr_fixture():
    return psnr
