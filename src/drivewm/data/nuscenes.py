"""Reader of nuScenes LiDAR sweeps (Caesar et al., 2020, arXiv:1903.11027).

A ``.pcd.bin`` file is a flat little-endian float32 array of N x 5 values per point: x, y, z (m, in
the LIDAR_TOP sensor frame), intensity (0..255) and ring index. ``read_pcd_bin`` returns [N, 5];
``lidar_points`` turns it into the data contract's x, y, z, intensity [N, 4] in the ego frame given the
sensor-to-ego transform (nuScenes calibrated_sensor translation + rotation as a 4 x 4 matrix).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivewm.errors import DrivewmError

PCD_BIN_FIELDS = 5


def read_pcd_bin(path: str | Path) -> np.ndarray:
    """float32 [N, 5] (x, y, z, intensity, ring) of a nuScenes .pcd.bin; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LiDAR sweep not found")
    size = path.stat().st_size
    if size % (4 * PCD_BIN_FIELDS):
        raise DrivewmError(
            f"{path}: {size} bytes is not a whole number of points (5 float32 = 20 bytes each); truncated file?"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, PCD_BIN_FIELDS)


def lidar_points(raw: np.ndarray, sensor_to_ego: np.ndarray | None = None, source: str = "sweep") -> np.ndarray:
    """x, y, z, intensity float32 [N, 4] in the ego frame from raw [N, 5] sensor-frame points."""
    if sensor_to_ego is not None:
        m = np.asarray(sensor_to_ego, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise DrivewmError(f"{source}: lidar_to_ego must be a finite 4 x 4 matrix, got shape {list(m.shape)}")
    points = raw[:, :4].astype(np.float32)
    if sensor_to_ego is not None:
        points[:, :3] = (raw[:, :3].astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    return points
