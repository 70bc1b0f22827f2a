"""Semantic occupancy in the ego frame: one gather from a precomputed static voxel-column table plus agent boxes.

Each world raster cell is encoded once per (map, grid) as `class * (Z + 1) + n_voxels`, and a
lookup table turns a code into its full voxel column. A frame is then: transform the grid's
column centres into the world (one rotation), gather codes, gather columns, stamp agent boxes.
"""

from __future__ import annotations

import numpy as np

from drivewm.data.spec import GridSpec
from drivewm.sim.maps import RoadMap


def ground_voxel(grid: GridSpec) -> int:
    """Index of the voxel layer holding the ground surface (the one just below z = 0)."""
    return int(np.clip(np.floor((-0.01 - grid.lower[2]) / grid.voxel_size), 0, grid.shape[2] - 1))


def voxels_below(grid: GridSpec, height: np.ndarray) -> np.ndarray:
    """Number of voxels, from the ground layer up, that an object standing on the ground of `height` fills."""
    g = ground_voxel(grid)
    z_lo = grid.lower[2] + np.arange(g, grid.shape[2]) * grid.voxel_size
    return np.maximum(1, (z_lo[None] < np.asarray(height, dtype=np.float64).reshape(-1, 1)).sum(1)).reshape(np.shape(height))


def stamp_boxes(occ: np.ndarray, boxes: np.ndarray, valid: np.ndarray, grid: GridSpec) -> None:
    """Write boxes [K, 8] (ego frame x, y, z, l, w, h, yaw, class) into occ [X, Y, Z] in place, all at once: the
    columns whose centre lies in a box (and the column of its centre) from the ground layer up to its height."""
    b = boxes[valid].astype(np.float64)
    if len(b) == 0:
        return
    vs = grid.voxel_size
    nx, ny, nz = grid.shape
    x, y, ln, wd, yaw = b[:, 0], b[:, 1], b[:, 3], b[:, 4], b[:, 6]
    r = 0.5 * np.hypot(ln, wd)
    m = int(np.ceil(2 * r.max() / vs)) + 2  # candidate cells per side of each box's square
    i0 = np.floor((x - r - grid.lower[0]) / vs).astype(np.int64)
    j0 = np.floor((y - r - grid.lower[1]) / vs).astype(np.int64)
    ci = i0[:, None] + np.arange(m)[None]  # [K, m]
    cj = j0[:, None] + np.arange(m)[None]
    px = grid.lower[0] + (ci + 0.5) * vs - x[:, None]
    py = grid.lower[1] + (cj + 0.5) * vs - y[:, None]
    c, s = np.cos(yaw)[:, None, None], np.sin(yaw)[:, None, None]
    lx = c * px[:, :, None] + s * py[:, None, :]  # [K, m, m] cell centres in each box frame
    ly = -s * px[:, :, None] + c * py[:, None, :]
    inside = (np.abs(lx) <= ln[:, None, None] / 2) & (np.abs(ly) <= wd[:, None, None] / 2)
    # A box smaller than a voxel still marks the voxel holding its centre.
    ki = np.floor((x - grid.lower[0]) / vs).astype(np.int64) - i0
    kj = np.floor((y - grid.lower[1]) / vs).astype(np.int64) - j0
    inside[np.arange(len(b)), ki, kj] = True
    inside &= ((ci >= 0) & (ci < nx))[:, :, None] & ((cj >= 0) & (cj < ny))[:, None, :]
    k, a, bb = np.nonzero(inside)
    n = voxels_below(grid, b[:, 5])  # [K] voxels each box fills from the ground layer up
    z = np.arange(nz)[None]
    g = ground_voxel(grid)
    fill = (z >= g) & (z < g + n[k][:, None])  # [P, Z]
    ii, jj = ci[k, a], cj[k, bb]
    occ[ii, jj] = np.where(fill, b[k, 7].astype(np.uint8)[:, None], occ[ii, jj])


class OccupancyRenderer:
    """Renders uint8 [X, Y, Z] semantic occupancy of a RoadMap plus agent boxes at an ego pose."""

    def __init__(self, road: RoadMap, grid: GridSpec) -> None:
        self.road, self.grid = road, grid
        nx, ny, nz = grid.shape
        self.g = ground_voxel(grid)
        counts = voxels_below(grid, road.height.ravel()).reshape(road.height.shape)
        counts = np.where(road.height > 0, counts, 1)
        self.codes = (road.cls.astype(np.int32) * (nz + 1) + counts).astype(np.int32).ravel()  # flat map
        self.lut = np.full((grid.num_classes * (nz + 1), nz), grid.free_id, np.uint8)
        for c in range(grid.num_classes):
            for n in range(1, nz + 1):
                self.lut[c * (nz + 1) + n, self.g : self.g + n] = c
        cx, cy = grid.voxel_centers(0), grid.voxel_centers(1)
        gx, gy = np.meshgrid(cx, cy, indexing="ij")
        self.centres = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)  # [X*Y, 2] ego frame

    def static(self, pose: np.ndarray) -> np.ndarray:
        """Occupancy [X, Y, Z] of the static world seen from pose (x, y, yaw)."""
        nx, ny, nz = self.grid.shape
        road = self.road
        c, s = np.cos(pose[2]), np.sin(pose[2])
        gx, gy = self.centres[:, 0], self.centres[:, 1]  # float32 [X*Y]
        fx = (c / road.res) * gx - (s / road.res) * gy + np.float32((pose[0] - road.origin[0]) / road.res)
        fy = (s / road.res) * gx + (c / road.res) * gy + np.float32((pose[1] - road.origin[1]) / road.res)
        codes = self.codes.take(road.flat_index(fx, fy))  # [X*Y]
        return self.lut.take(codes, axis=0).reshape(nx, ny, nz)  # [X*Y] codes -> [X, Y, Z]

    def stamp(self, occ: np.ndarray, boxes: np.ndarray, valid: np.ndarray) -> None:
        """Write agent boxes [K, 8] (ego frame x, y, z, l, w, h, yaw, class) into occ in place, all at once."""
        stamp_boxes(occ, boxes, valid, self.grid)

    def render(self, pose: np.ndarray, boxes: np.ndarray, valid: np.ndarray) -> np.ndarray:
        occ = self.static(pose)
        self.stamp(occ, boxes, valid)
        return occ
