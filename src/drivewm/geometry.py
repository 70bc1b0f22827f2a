"""SE(2) poses and voxel warping: the geometry every layer shares (sim, data, baselines, models, planning).

Poses are (x, y, yaw) [..., 3], x forward, y left, yaw counter-clockwise; points are (x, y) [..., 2].
The pose functions take numpy arrays or torch tensors alike and compute in the caller's library and
dtype (numpy and torch round sin and cos differently, so each caller keeps its own). torch is imported
only by the warps, so the simulator's worker processes use the pose math without loading it.
A warp resamples an occupancy grid into other ego frames by nearest-voxel lookup (`column_index`),
the one rule every warp of an observation into another pose uses.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # any grid with lower, voxel_size, voxel_centers and free_id will do
    import torch

    from drivewm.data.spec import GridSpec


def _xp(*arrays: Any):
    """torch if any of the arrays is a tensor, else numpy (then the arrays are numpy arrays)."""
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(a, torch.Tensor) for a in arrays):
        return torch
    return np


def wrap_angle(a):
    """Angles wrapped to [-pi, pi)."""
    if _xp(a) is np:
        a = np.asarray(a)
    return (a + math.pi) % (2 * math.pi) - math.pi


def rotate(xy, yaw):
    """Points xy [..., 2] turned by yaw [...] (counter-clockwise) about the origin.

    `rotate(xy, pose_yaw) + pose_xy` is `ego_to_world` with the translation added last; the voxel warps,
    the LiDAR warp and the planner's footprint lookups round it that way, so they agree bit for bit."""
    xp = _xp(xy, yaw)
    c, s = xp.cos(yaw), xp.sin(yaw)
    return xp.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], -1)


def _points_and_pose(xy, pose):
    """(array library, xy, pose, cos yaw, sin yaw) of points xy [..., 2] and a pose [..., 3]."""
    xp = _xp(xy, pose)
    if xp is np:
        xy, pose = np.asarray(xy), np.asarray(pose)
    return xp, xy, pose, xp.cos(pose[..., 2]), xp.sin(pose[..., 2])


def ego_to_world(xy, pose):
    """Points xy [..., 2] given in the frame of pose [..., 3] -> the parent frame: t + R(yaw) xy."""
    xp, xy, pose, c, s = _points_and_pose(xy, pose)
    return xp.stack([pose[..., 0] + c * xy[..., 0] - s * xy[..., 1], pose[..., 1] + s * xy[..., 0] + c * xy[..., 1]], -1)


def world_to_ego(xy, pose):
    """Points xy [..., 2] of the parent frame -> the frame of pose [..., 3]: R(-yaw) (xy - t)."""
    xp, xy, pose, c, s = _points_and_pose(xy, pose)
    dx, dy = xy[..., 0] - pose[..., 0], xy[..., 1] - pose[..., 1]
    return xp.stack([c * dx + s * dy, -s * dx + c * dy], -1)


def se2_compose(a, b):
    """Pose b (given in a's frame) expressed in a's parent frame: a o b, both [..., 3] (x, y, yaw)."""
    xp = _xp(a, b)
    xy = ego_to_world(b[..., :2], a)
    return xp.stack([xy[..., 0], xy[..., 1], a[..., 2] + b[..., 2]], -1)


def se2_inverse(a):
    """Inverse pose of a [..., 3]: the parent frame seen from a."""
    xp = _xp(a)
    c, s = xp.cos(a[..., 2]), xp.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = -(-s * a[..., 0] + c * a[..., 1])
    return xp.stack([x, y, -a[..., 2]], -1)


def to_frame(poses, origin):
    """Poses [..., 3] of the parent frame expressed in the frame of origin [..., 3], yaw wrapped to [-pi, pi)."""
    xp = _xp(poses, origin)
    if xp is np:
        poses, origin = np.asarray(poses), np.asarray(origin)
    xy = world_to_ego(poses[..., :2], origin)
    return xp.stack([xy[..., 0], xy[..., 1], wrap_angle(poses[..., 2] - origin[..., 2])], -1)


def relative_steps(poses):
    """Poses [..., T, 3] -> per-step motion [..., T-1, 3]: frame t+1 in frame t (yaw wrapped)."""
    if poses.shape[-1] != 3 or poses.ndim < 2:
        raise ValueError(f"poses must be [..., T, 3] (x, y, yaw), got {tuple(poses.shape)}")
    return to_frame(poses[..., 1:, :], poses[..., :-1, :])


def integrate_steps(steps, start=None):
    """Inverse of `relative_steps`: per-step motion [..., S, 3] -> poses [..., S+1, 3] from start [..., 3]
    (default: the origin)."""
    xp = _xp(steps, start)
    pose = xp.zeros(tuple(steps.shape[:-2]) + (3,), dtype=steps.dtype) if start is None else start
    out = [pose]
    for t in range(steps.shape[-2]):
        pose = se2_compose(pose, steps[..., t, :])
        pose = xp.stack([pose[..., 0], pose[..., 1], wrap_angle(pose[..., 2])], -1)
        out.append(pose)
    return xp.stack(out, -2)


WARP_OUTSIDE = ("free", "border")  # what a warp gives voxels its source never saw (warp_occupancy)


def column_index(px: torch.Tensor, py: torch.Tensor, grid: GridSpec, nx: int, ny: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (x, y) column of the grid each point (px, py) falls in, clamped into the grid, and whether it
    lies inside: the nearest-voxel rule every warp of an observation into another pose uses."""
    import torch

    ix = torch.floor((px - grid.lower[0]) / grid.voxel_size).long()
    iy = torch.floor((py - grid.lower[1]) / grid.voxel_size).long()
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return ix.clamp(0, nx - 1), iy.clamp(0, ny - 1), inside


def source_columns(poses: torch.Tensor, grid: GridSpec, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For poses [B, H, 3] (target frames in the source's ego frame): the source column (ix, iy) each
    target voxel centre lands in, clamped, and whether it lies inside the source grid, each [B, H, X, Y]."""
    import torch

    g = grid
    poses = poses.double()
    xs = torch.as_tensor(g.voxel_centers(0), dtype=torch.float64, device=device)
    ys = torch.as_tensor(g.voxel_centers(1), dtype=torch.float64, device=device)
    q = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)  # [X, Y, 2] centres in the target frame
    # Target-frame centre -> source frame: p = R(yaw) q + t.
    p = rotate(q, poses[..., 2, None, None]) + poses[..., None, None, :2]  # [B, H, X, Y, 2]
    return column_index(p[..., 0], p[..., 1], g, len(xs), len(ys))


def warp_seen(poses: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """bool [B, H, X, Y]: which columns of each target frame (poses [B, H, 3] in the source's ego frame)
    the source grid saw; `warp_occupancy` fills the others."""
    return source_columns(poses, grid, poses.device)[2]


def warp_occupancy(occ: torch.Tensor, poses: torch.Tensor, grid: GridSpec, outside: str = "free") -> torch.Tensor:
    """Occupancy occ [B, X, Y, Z] resampled into H other ego frames -> [B, H, X, Y, Z].

    poses [B, H, 3]: each target frame's (x, y, yaw) in occ's ego frame. Every target voxel centre is
    mapped into occ's frame and takes the class of the voxel it lands in (nearest neighbour, static
    world). Centres that land outside the grid become ``free`` (outside="free"), or take the nearest
    edge column (outside="border", grid_sample's border padding): the road and roadside at the edge
    extended into the area the source never saw.
    """
    if outside not in WARP_OUTSIDE:
        raise ValueError(f"outside must be 'free' or 'border', got {outside!r}")
    import torch

    b, nx, ny, nz = occ.shape
    horizon = poses.shape[1]
    ix, iy, inside = source_columns(poses, grid, occ.device)
    src = (ix * ny + iy).reshape(b, -1)  # [B, H*X*Y]
    flat = occ.reshape(b, nx * ny, nz)
    out = torch.gather(flat, 1, src[..., None].expand(-1, -1, nz))  # [B, H*X*Y, Z]
    out = out.view(b, horizon, nx, ny, nz)
    if outside == "border":
        return out
    return torch.where(inside[..., None], out, torch.full_like(out, grid.free_id))
