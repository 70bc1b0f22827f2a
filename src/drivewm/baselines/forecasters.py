"""Forecasters that need no learning, behind the one `drivewm.forecaster.Forecaster` interface, so every
forecasting table shows them (`baselines(grid, modality)` is that one list).

Each baseline has ``forecast(context, horizon)`` where ``context`` is a window batch cut to its
past frames plus poses (the data contract of ``drivewm.data.windows``):
  * ``occ`` uint8 [B, Tp, X, Y, Z] (occupancy baselines), or ``lidar`` float32 [B, Tp, N, 4]
    with ``lidar_count`` int64 [B, Tp] (point-cloud baseline);
  * ``rel_pose`` float32 [B, T, 3]: (x, y, yaw) of each frame in the current frame's ego frame
    (x forward, y left); T >= Tp (+ horizon when the baseline uses the known future motion).
    Poses are re-expressed relative to frame Tp - 1, so world poses (``ego_pose``) work too.

* ``CopyLast``: the last observed occupancy repeated (OccWorld's "copy & paste" row, arXiv 2311.16038).
* ``EgoWarpCopyLast``: the last occupancy resampled into each future ego frame by nearest-neighbour
  lookup of the future voxel centres in the current grid (static-world assumption); voxels seen
  from outside the current grid become ``free``. ``motion="known"`` uses the recorded future
  poses (the usual oracle-ego-motion baseline), ``"constant_velocity"`` extrapolates the last step.
  ``outside="border"`` gives those voxels the nearest edge column instead (grid_sample's border
  padding): the road and roadside extended into the area entering the view, a fill that needs no
  learning and that a world model's fill should beat.
* ``CopyLastLidar``: the last LiDAR sweep repeated, in the current ego frame (no motion compensation).
* ``EgoWarpLidar``: the last sweep re-expressed in each future ego frame, by the recorded poses
  (``motion="known"``) or constant-velocity extrapolation of the last two (``ConstantVelocityLidar``);
  the world is assumed static, as in the ray-based baselines of 4D-Occ, arXiv 2302.13130.
"""

from __future__ import annotations

import torch

from drivewm.data.spec import GridSpec
from drivewm.forecaster import Forecaster
from drivewm.geometry import WARP_OUTSIDE, rotate, se2_compose, se2_inverse, warp_occupancy


def _poses(context: dict, past: int, name: str = "rel_pose") -> torch.Tensor:
    """Poses [B, T, 3] of all frames relative to the current frame (index past - 1), float64."""
    key = name if name in context else "ego_pose"
    if key not in context:
        raise KeyError("context needs 'rel_pose' (or 'ego_pose') [B, T, 3] for an ego-motion baseline")
    pose = context[key].double()
    if pose.ndim != 3 or pose.shape[-1] != 3:
        raise ValueError(f"context[{key!r}] must be [B, T, 3], got shape {tuple(pose.shape)}")
    if pose.shape[1] < past:
        raise ValueError(f"context[{key!r}] has {pose.shape[1]} frames, fewer than the {past} past frames")
    ref = se2_inverse(pose[:, past - 1 : past])  # [B, 1, 3]
    return se2_compose(ref.expand_as(pose), pose)


def future_poses(context: dict, past: int, horizon: int, motion: str) -> torch.Tensor:
    """Poses [B, H, 3] of the future frames in the current frame: recorded ("known") or constant velocity."""
    pose = _poses(context, past)
    if motion == "known":
        if pose.shape[1] < past + horizon:
            raise ValueError(f"rel_pose has {pose.shape[1]} frames; motion='known' needs past + horizon = {past + horizon}")
        return pose[:, past : past + horizon]
    if motion != "constant_velocity":
        raise ValueError(f"motion must be 'known' or 'constant_velocity', got {motion!r}")
    if past < 2:
        raise ValueError("motion='constant_velocity' needs at least 2 past frames")
    # Last step as seen from the previous frame; repeating it k times gives frame c + k.
    step = se2_compose(se2_inverse(pose[:, past - 2]), pose[:, past - 1])  # [B, 3]
    out, cur = [], torch.zeros_like(step)
    for _ in range(horizon):
        cur = se2_compose(cur, step)
        out.append(cur)
    return torch.stack(out, 1)


def _past_occ(context: dict) -> torch.Tensor:
    if "occ" not in context:
        raise KeyError("context needs 'occ' [B, Tp, X, Y, Z] for an occupancy baseline")
    occ = context["occ"]
    if occ.ndim != 5:
        raise ValueError(f"context['occ'] must be [B, Tp, X, Y, Z], got shape {tuple(occ.shape)}")
    return occ


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")


class CopyLast:
    """Repeat the last observed occupancy frame for every future step."""

    name = "copy_last"
    modality = "occ"
    sees_future = False

    def forecast(self, context: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_horizon(horizon)
        occ = _past_occ(context)
        return occ[:, -1:].expand(-1, horizon, -1, -1, -1).clone()  # [B, H, X, Y, Z]


class EgoWarpCopyLast:
    """Last occupancy frame resampled (nearest neighbour) into each future ego frame; outside -> free, or
    with outside="border" the nearest edge column (the road and roadside run on ahead)."""

    modality = "occ"
    sees_future = False

    def __init__(self, grid: GridSpec, *, motion: str = "known", outside: str = "free") -> None:
        if motion not in ("known", "constant_velocity"):
            raise ValueError(f"motion must be 'known' or 'constant_velocity', got {motion!r}")
        if outside not in WARP_OUTSIDE:
            raise ValueError(f"outside must be 'free' or 'border', got {outside!r}")
        self.grid, self.motion, self.outside = grid, motion, outside
        self.name = ("ego_warp_copy_last" if motion == "known" else "ego_warp_copy_last_cv") + (
            "_border" if outside == "border" else "")

    def forecast(self, context: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_horizon(horizon)
        occ = _past_occ(context)
        b, past, nx, ny, nz = occ.shape
        if (nx, ny, nz) != self.grid.shape:
            raise ValueError(f"context['occ'] grid {(nx, ny, nz)} does not match the grid spec {self.grid.shape}")
        poses = future_poses(context, past, horizon, self.motion).to(occ.device)  # [B, H, 3]
        return warp_occupancy(occ[:, -1], poses, self.grid, self.outside)


def _past_lidar(context: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    for key in ("lidar", "lidar_count"):
        if key not in context:
            raise KeyError(f"context needs {key!r} for the {name} baseline (add 'lidar' to data.keys)")
    lidar, count = context["lidar"], context["lidar_count"]
    if lidar.ndim != 4 or lidar.shape[-1] < 3:
        raise ValueError(f"context['lidar'] must be [B, Tp, N, >=3], got shape {tuple(lidar.shape)}")
    return lidar, count


class CopyLastLidar:
    """Repeat the last observed sweep (in the current ego frame) for every future step.

    ``forecast(context, horizon)`` -> ``{"lidar": [B, H, N, C], "lidar_count": [B, H]}`` (window layout).
    """

    name = "copy_last_lidar"
    modality = "lidar"
    sees_future = False

    def forecast(self, context: dict, horizon: int, *,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        _check_horizon(horizon)
        lidar, count = _past_lidar(context, self.name)
        return {"lidar": lidar[:, -1:].expand(-1, horizon, -1, -1).clone(),
                "lidar_count": count[:, -1:].expand(-1, horizon).clone()}


class EgoWarpLidar:
    """Last sweep moved into each future ego frame (static world): ``motion="known"`` uses the recorded
    future poses (the oracle-ego-motion row), ``"constant_velocity"`` extrapolates the last two poses.

    ``forecast(context, horizon)`` reads ``lidar`` [B, Tp, N, C>=3], ``lidar_count`` [B, Tp] and
    poses, and returns ``{"lidar": [B, H, N, C], "lidar_count": [B, H]}`` in the same padded layout.
    """

    modality = "lidar"
    sees_future = False

    def __init__(self, *, motion: str = "known") -> None:
        if motion not in ("known", "constant_velocity"):
            raise ValueError(f"motion must be 'known' or 'constant_velocity', got {motion!r}")
        self.motion = motion
        self.name = "ego_warp_copy_last_lidar" if motion == "known" else "constant_velocity_lidar"

    def forecast(self, context: dict, horizon: int, *,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        _check_horizon(horizon)
        lidar, count = _past_lidar(context, self.name)
        past = lidar.shape[1]
        poses = future_poses(context, past, horizon, self.motion)  # [B, H, 3]
        inv = se2_inverse(poses).to(lidar.device)  # current frame seen from each future frame
        pts = lidar[:, -1:].double()  # [B, 1, N, C]
        out = pts.expand(-1, horizon, -1, -1).clone()
        out[..., :2] = rotate(pts[..., :2], inv[..., 2, None]) + inv[..., None, :2]  # [B, H, N, 2]
        n = count[:, -1:].expand(-1, horizon).clone()
        # Padding rows stay zero so the layout matches the data contract.
        pad = torch.arange(lidar.shape[2], device=lidar.device)[None, None, :] >= n[..., None]
        out[pad] = 0
        return {"lidar": out.to(lidar.dtype), "lidar_count": n}


class ConstantVelocityLidar(EgoWarpLidar):
    """Last sweep moved into the constant-velocity-extrapolated future ego frames (static world)."""

    def __init__(self) -> None:
        super().__init__(motion="constant_velocity")


def baselines(grid: GridSpec, modality: str) -> list[Forecaster]:
    """The no-learning rows of every forecasting table of `modality` ('occ' or 'lidar'), in table order."""
    if modality == "occ":
        return [CopyLast(), EgoWarpCopyLast(grid, motion="known"), EgoWarpCopyLast(grid, motion="constant_velocity"),
                EgoWarpCopyLast(grid, outside="border")]
    if modality == "lidar":
        return [CopyLastLidar(), EgoWarpLidar(motion="known"), ConstantVelocityLidar()]
    raise ValueError(f"modality must be 'occ' or 'lidar', got {modality!r}")
