"""Tiny seeded synthetic occupancy scenes for the JEPA tests (no simulator needed, milliseconds each).

A scene on an X x Y x Z grid: a straight road (driveable_surface) with sidewalks, terrain elsewhere,
buildings (manmade) and trees (vegetation) beside the road, and cars driving along it at constant
speed. Windows of T frames: occ uint8 [T, X, Y, Z], action [T, 2] (zeros), rel_pose [T, 3].
"""

from __future__ import annotations

import numpy as np
import torch

FREE, CAR, ROAD, SIDEWALK, TERRAIN, MANMADE, VEG = 17, 4, 11, 13, 14, 15, 16


def scene_window(rng: np.random.Generator, frames: int, grid=(32, 32, 4)) -> dict[str, np.ndarray]:
    X, Y, Z = grid
    base = np.full((X, Y, Z), FREE, np.uint8)
    base[:, :, 0] = TERRAIN
    road_w = int(rng.integers(6, 11))
    y0 = int(rng.integers(2, Y - road_w - 2))
    base[:, y0 : y0 + road_w, 0] = ROAD
    base[:, max(0, y0 - 2) : y0, 0] = SIDEWALK
    base[:, y0 + road_w : y0 + road_w + 2, 0] = SIDEWALK
    for _ in range(int(rng.integers(2, 6))):  # buildings and trees off the road
        side = [(0, max(0, y0 - 2)), (min(Y, y0 + road_w + 2), Y)][int(rng.integers(0, 2))]
        if side[1] - side[0] < 3:
            continue
        bx, by = int(rng.integers(0, X - 4)), int(rng.integers(side[0], side[1] - 2))
        h = int(rng.integers(2, Z + 1))
        cls = MANMADE if rng.random() < 0.6 else VEG
        base[bx : bx + 4, by : by + 3, 1:h] = cls
    cars = [(float(rng.uniform(0, X)), int(rng.integers(y0, y0 + road_w - 2)), float(rng.choice([-2.0, -1.0, 1.0, 2.0])))
            for _ in range(int(rng.integers(1, 4)))]
    occ = np.repeat(base[None], frames, axis=0)
    for t in range(frames):
        for x, y, v in cars:
            cx = int(round(x + v * t)) % X
            xs = [(cx + i) % X for i in range(3)]
            occ[t][np.ix_(xs, [y, y + 1], [1])] = CAR
    return {
        "occ": occ,
        "action": np.zeros((frames, 2), np.float32),
        "rel_pose": np.zeros((frames, 3), np.float32),
    }


def scene_batch(n: int, frames: int, seed: int, grid=(32, 32, 4)) -> dict[str, torch.Tensor]:
    """n windows stacked: occ uint8 [n, T, X, Y, Z], action [n, T, 2], rel_pose [n, T, 3]."""
    rng = np.random.default_rng(seed)
    ws = [scene_window(rng, frames, grid) for _ in range(n)]
    return {k: torch.from_numpy(np.stack([w[k] for w in ws])) for k in ws[0]}
