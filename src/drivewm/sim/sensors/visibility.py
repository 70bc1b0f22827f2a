"""Visibility mask of an occupancy grid from the roof sensor, by 2.5D ray casting (like Occ3D mask_lidar).

The top height of every occupied column is resampled onto a polar grid around the sensor
(azimuth bins x range steps). Along each azimuth a running maximum of the elevation slope
(top - sensor height) / range is the horizon that nearer columns cast. A voxel is observed when
its top rises above the horizon just in front of it and it is not below its column's lowest
occupied voxel (under the ground). Per frame: one gather onto the polar grid, one cumulative
maximum, one gather back.
"""

from __future__ import annotations

import numpy as np

from drivewm.data.spec import GridSpec


class VisibilityCaster:
    def __init__(self, grid: GridSpec, sensor_height: float) -> None:
        self.grid, self.sz = grid, sensor_height
        nx, ny, nz = grid.shape
        vs = grid.voxel_size
        gx, gy = np.meshgrid(grid.voxel_centers(0), grid.voxel_centers(1), indexing="ij")
        r = np.hypot(gx, gy).ravel()
        max_r = float(r.max()) + vs
        self.dr = vs / 2
        n_r = int(np.ceil(max_r / self.dr))
        n_a = int(np.ceil(2 * np.pi * max_r / vs))
        az = np.arange(n_a) * (2 * np.pi / n_a) - np.pi
        rs = (np.arange(n_r) + 0.5) * self.dr
        px, py = np.cos(az)[:, None] * rs[None], np.sin(az)[:, None] * rs[None]  # [A, R] polar samples
        ix = np.floor((px - grid.lower[0]) / vs).astype(np.int64)
        iy = np.floor((py - grid.lower[1]) / vs).astype(np.int64)
        self.polar_in = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        self.polar_cell = np.where(self.polar_in, np.clip(ix, 0, nx - 1) * ny + np.clip(iy, 0, ny - 1), 0)
        self.polar_r = rs[None].repeat(n_a, 0)
        # Each column reads the horizon at the polar sample just in front of its own near edge.
        col_a = np.round((np.arctan2(gy, gx).ravel() + np.pi) / (2 * np.pi) * n_a).astype(np.int64) % n_a
        col_r = np.floor((r - 0.75 * vs) / self.dr).astype(np.int64)
        self.col_flat = np.where(col_r >= 0, col_a * n_r + np.maximum(col_r, 0), -1)
        self.r = np.maximum(r, 1e-3)
        self.z_hi = grid.lower[2] + (np.arange(nz) + 1) * vs

    def mask(self, occ: np.ndarray) -> np.ndarray:
        """bool [X, Y, Z] of voxels seen from the sensor at (0, 0, sensor_height)."""
        nx, ny, nz = self.grid.shape
        occupied = (occ != self.grid.free_id).reshape(nx * ny, nz)
        any_occ = occupied.any(1)
        top_idx = nz - 1 - np.argmax(occupied[:, ::-1], axis=1)
        low_idx = np.where(any_occ, np.argmax(occupied, axis=1), nz)
        top_z = np.where(any_occ, self.z_hi[top_idx], -1e3)
        slope = np.where(self.polar_in, (top_z[self.polar_cell] - self.sz) / self.polar_r, -1e3)  # [A, R]
        horizon = np.maximum.accumulate(slope, axis=1).ravel()
        col_h = np.where(self.col_flat >= 0, horizon[np.maximum(self.col_flat, 0)], -1e3)  # [X*Y]
        seen = (self.z_hi[None] - self.sz) >= self.r[:, None] * col_h[:, None]  # [X*Y, Z]
        seen &= np.arange(nz)[None] >= low_idx[:, None]
        return seen.reshape(nx, ny, nz)
