"""SE(2) poses and voxel warping: the geometry every layer shares (sim, data, baselines, models, planning).

Poses are (x, y, yaw) [..., 3], x forward, y left, yaw counter-clockwise. A warp resamples an
occupancy grid into other ego frames by nearest-voxel lookup (`column_index`), the one rule every
warp of an observation into another pose uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # any grid with lower, voxel_size, voxel_centers and free_id will do
    from drivewm.data.spec import GridSpec


def se2_compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pose b (given in a's frame) expressed in a's parent frame: a o b, both [..., 3] (x, y, yaw)."""
    c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    x = a[..., 0] + c * b[..., 0] - s * b[..., 1]
    y = a[..., 1] + s * b[..., 0] + c * b[..., 1]
    return torch.stack([x, y, a[..., 2] + b[..., 2]], -1)


def se2_inverse(a: torch.Tensor) -> torch.Tensor:
    """Inverse pose of a [..., 3]: the parent frame seen from a."""
    c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = -(-s * a[..., 0] + c * a[..., 1])
    return torch.stack([x, y, -a[..., 2]], -1)


WARP_OUTSIDE = ("free", "border")  # what a warp gives voxels its source never saw (warp_occupancy)


def column_index(px: torch.Tensor, py: torch.Tensor, grid: GridSpec, nx: int, ny: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (x, y) column of the grid each point (px, py) falls in, clamped into the grid, and whether it
    lies inside: the nearest-voxel rule every warp of an observation into another pose uses."""
    ix = torch.floor((px - grid.lower[0]) / grid.voxel_size).long()
    iy = torch.floor((py - grid.lower[1]) / grid.voxel_size).long()
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return ix.clamp(0, nx - 1), iy.clamp(0, ny - 1), inside


def source_columns(poses: torch.Tensor, grid: GridSpec, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For poses [B, H, 3] (target frames in the source's ego frame): the source column (ix, iy) each
    target voxel centre lands in, clamped, and whether it lies inside the source grid, each [B, H, X, Y]."""
    g = grid
    poses = poses.double()
    xs = torch.as_tensor(g.voxel_centers(0), dtype=torch.float64, device=device)
    ys = torch.as_tensor(g.voxel_centers(1), dtype=torch.float64, device=device)
    qx, qy = torch.meshgrid(xs, ys, indexing="ij")  # [X, Y] centres in the target frame
    c, s = torch.cos(poses[..., 2])[..., None, None], torch.sin(poses[..., 2])[..., None, None]
    # Target-frame centre -> source frame: p = R(yaw) q + t.
    px = c * qx - s * qy + poses[..., 0, None, None]  # [B, H, X, Y]
    py = s * qx + c * qy + poses[..., 1, None, None]
    return column_index(px, py, g, len(xs), len(ys))


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
