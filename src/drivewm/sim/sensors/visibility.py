"""Visibility mask of an occupancy grid from the roof sensor, by 2.5D ray casting (like Occ3D mask_lidar).

Columns are binned by azimuth around the sensor and sorted by range; along each azimuth a running
maximum of the occluders' elevation slope (top height - sensor height) / range is the horizon
that earlier columns cast. A voxel is observed when the top of the voxel rises above the horizon
of the columns in front of it and it is not below its column's lowest occupied voxel (under the
ground). One sort is precomputed per grid; a frame is a segmented cumulative maximum.
"""

from __future__ import annotations

import numpy as np

from drivewm.data.spec import GridSpec

SLOPE_CLIP = 50.0


class VisibilityCaster:
    def __init__(self, grid: GridSpec, sensor_height: float) -> None:
        self.grid, self.sz = grid, sensor_height
        nx, ny, nz = grid.shape
        gx, gy = np.meshgrid(grid.voxel_centers(0), grid.voxel_centers(1), indexing="ij")
        r = np.hypot(gx, gy).ravel()
        max_r = float(r.max())
        bins = int(np.ceil(2 * np.pi * max_r / (0.5 * grid.voxel_size)))
        az = ((np.arctan2(gy, gx).ravel() + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
        self.order = np.lexsort((r, az))  # columns sorted by azimuth bin, then range
        az_sorted = az[self.order]
        self.seg_start = np.concatenate([[True], az_sorted[1:] != az_sorted[:-1]])
        self.offset = az_sorted * (4 * SLOPE_CLIP)
        self.r = np.maximum(r, 1e-3)
        self.z_hi = grid.lower[2] + (np.arange(nz) + 1) * grid.voxel_size

    def mask(self, occ: np.ndarray) -> np.ndarray:
        """bool [X, Y, Z] of voxels seen from the sensor at (0, 0, sensor_height)."""
        nx, ny, nz = self.grid.shape
        occupied = (occ != self.grid.free_id).reshape(nx * ny, nz)
        any_occ = occupied.any(1)
        top_idx = nz - 1 - np.argmax(occupied[:, ::-1], axis=1)
        low_idx = np.where(any_occ, np.argmax(occupied, axis=1), nz)
        top_z = np.where(any_occ, self.z_hi[top_idx], -1e3)
        slope = np.clip((top_z - self.sz) / self.r, -SLOPE_CLIP, SLOPE_CLIP)[self.order]
        run = np.maximum.accumulate(slope + self.offset) - self.offset  # segmented running max
        prev = np.concatenate([[-SLOPE_CLIP], run[:-1]])
        prev[self.seg_start] = -SLOPE_CLIP  # nothing in front of the first column of an azimuth
        horizon = np.empty_like(prev)
        horizon[self.order] = prev
        seen = (self.z_hi[None] - self.sz) >= self.r[:, None] * horizon[:, None]  # [X*Y, Z]
        seen &= np.arange(nz)[None] >= low_idx[:, None]
        return seen.reshape(nx, ny, nz)
