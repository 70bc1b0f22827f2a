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
* ``ConstantVelocityAgents``: the last frame's static scene (its tracked road users' voxels cleared) warped
  by the recorded ego motion (border fill, as the strongest copy), with each road user of the last frame
  (``agents`` / ``agents_valid``, one slot per road user) stamped at its box moved on at its last velocity:
  the recorded one (``agents_velocity``) where the windows carry it, else its step over the last two frames;
  the tracked-object baseline a world model must beat on the classes that move.
* ``OracleFill``: the ceiling of the ego-warped copy: the copy where the last frame saw, the truth where it
  did not (a perfect fill of the area entering the view). It reads the future, so it is an upper bound,
  not a forecaster.
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


def _past_occ(context: dict, grid: GridSpec | None = None) -> torch.Tensor:
    """The past occupancy [B, Tp, X, Y, Z] of a context, checked against `grid` when the baseline has one."""
    if "occ" not in context:
        raise KeyError("context needs 'occ' [B, Tp, X, Y, Z] for an occupancy baseline")
    occ = context["occ"]
    if occ.ndim != 5:
        raise ValueError(f"context['occ'] must be [B, Tp, X, Y, Z], got shape {tuple(occ.shape)}")
    if grid is not None and tuple(occ.shape[2:]) != grid.shape:
        raise ValueError(f"context['occ'] grid {tuple(occ.shape[2:])} does not match the grid spec {grid.shape}")
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
        occ = _past_occ(context, self.grid)
        b, past, nx, ny, nz = occ.shape
        poses = future_poses(context, past, horizon, self.motion).to(occ.device)  # [B, H, 3]
        return warp_occupancy(occ[:, -1], poses, self.grid, self.outside)


DYNAMIC_NAMES = ("car", "bus", "truck", "construction_vehicle", "trailer", "motorcycle", "bicycle", "pedestrian")
# Largest plausible move of one road user between two frames (m): a slot that jumps farther was handed to a
# new road user (a respawn), so it has no velocity yet.
MAX_STEP_M = 15.0
OCC_FRAME_DT = 0.5
"""Seconds between frames of the occupancy forecasting protocol (OccWorld's 2 Hz; the simulator's rate)."""


def extrapolate_agents(context: dict, past: int, horizon: int,
                       frame_dt: float = OCC_FRAME_DT) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes [B, H, K, 8] of the road users of the last frame moved on at their last velocity, each in its
    future ego frame (recorded poses), and their mask [B, K] (valid in the last frame).

    With ``agents_velocity`` [B, Tp, K, 2] in the context (ground velocity in m/s along the ego's axes), slot
    k moves ``frame_dt`` (seconds per frame) times its velocity in the last frame, per frame. Without it, the
    velocity is its displacement from frame Tp - 2 to Tp - 1 in the current ego frame, per frame; a road user
    seen only in the last frame (or one that jumped, see MAX_STEP_M) then stands still. The yaw is kept.
    """
    for key in ("agents", "agents_valid"):
        if key not in context:
            raise KeyError(f"context needs {key!r} for the constant-velocity agents baseline (add 'agents' to data.keys)")
    agents, valid = context["agents"].double(), context["agents_valid"].bool()
    if agents.ndim != 4 or agents.shape[-1] != 8:
        raise ValueError(f"context['agents'] must be [B, Tp, K, 8], got shape {tuple(agents.shape)}")
    pose = _poses(context, past)  # [B, T, 3] in the current frame
    last = agents[:, -1]  # [B, K, 8], current frame
    step = torch.zeros_like(last[..., :2])
    if "agents_velocity" in context:
        velocity = context["agents_velocity"][:, -1].to(last.dtype)  # [B, K, 2], current frame's axes
        if velocity.shape != last[..., :2].shape:
            raise ValueError(f"context['agents_velocity'] must be [B, Tp, K, 2], got shape {tuple(context['agents_velocity'].shape)}")
        step = torch.where(valid[:, -1, :, None], velocity * frame_dt, step)
    elif agents.shape[1] >= 2:
        prev = agents[:, -2]
        pp = pose[:, past - 2]  # previous ego frame in the current one
        prev_xy = rotate(prev[..., :2], pp[:, None, 2]) + pp[:, None, :2]
        step = last[..., :2] - prev_xy
        tracked = valid[:, -1] & valid[:, -2] & (step.norm(dim=-1) < MAX_STEP_M)
        step = torch.where(tracked[..., None], step, torch.zeros_like(step))
    future = future_poses(context, past, horizon, "known")  # [B, H, 3]
    inv = se2_inverse(future)  # current frame seen from each future frame
    k = torch.arange(1, horizon + 1, dtype=last.dtype, device=last.device)
    xy = last[:, None, :, :2] + k[None, :, None, None] * step[:, None]  # [B, H, K, 2] current frame
    out = last[:, None].expand(-1, horizon, -1, -1).clone()
    out[..., :2] = rotate(xy, inv[..., 2, None]) + inv[..., None, :2]
    out[..., 6] = last[:, None, :, 6] + inv[..., 2, None]
    return out, valid[:, -1]


class ConstantVelocityAgents:
    """Static scene warped by the recorded ego motion, road users' boxes moved on at their last velocity."""

    name = "constant_velocity_agents"
    modality = "occ"
    sees_future = False

    def __init__(self, grid: GridSpec, frame_dt: float = OCC_FRAME_DT) -> None:
        self.grid, self.frame_dt = grid, frame_dt
        self.dynamic = [grid.classes.index(c) for c in DYNAMIC_NAMES if c in grid.classes]
        # Where a road user stood, the ground is most often road.
        self.ground_class = grid.classes.index("driveable_surface") if "driveable_surface" in grid.classes else grid.free_id

    def forecast(self, context: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        import numpy as np

        from drivewm.sim.sensors.occupancy import ground_voxel, stamp_boxes

        _check_horizon(horizon)
        occ = _past_occ(context, self.grid)
        b, past, nx, ny, nz = occ.shape
        boxes, valid = extrapolate_agents(context, past, horizon, self.frame_dt)
        last_boxes = context["agents"][:, -1].cpu().numpy()
        static = occ[:, -1].cpu().numpy().copy()  # [B, X, Y, Z]
        g = ground_voxel(self.grid)
        marker = self.grid.num_classes  # any id that is no class
        for i in range(b):
            mark = np.zeros((nx, ny, nz), np.int64)
            drawn = last_boxes[i].copy()
            drawn[:, 7] = marker
            stamp_boxes(mark, drawn, valid[i].cpu().numpy(), self.grid)
            clear = (mark == marker) & np.isin(static[i], self.dynamic)
            static[i][clear] = self.grid.free_id
            static[i][:, :, g][clear[:, :, g]] = self.ground_class
        # Border fill: the road and roadside run on into the area entering the view, as in the strongest copy.
        warped = warp_occupancy(torch.from_numpy(static).to(occ.device), future_poses(context, past, horizon, "known"),
                                self.grid, "border").cpu().numpy()  # [B, H, X, Y, Z]
        boxes_np, valid_np = boxes.cpu().numpy(), valid.cpu().numpy()
        for i in range(b):
            for h in range(horizon):
                stamp_boxes(warped[i, h], boxes_np[i, h], valid_np[i], self.grid)
        return torch.from_numpy(warped).to(occ.device)


class OracleFill:
    """The ceiling of filling the unseen area: the ego-warped copy where the last observed frame saw the voxel,
    the true future where it did not. The evaluation loop hands it the future frames plus the context's
    frames under ``past_<key>`` (it `sees_future`)."""

    name = "ceiling: copy where seen, truth where unseen"
    modality = "occ"
    sees_future = True

    def __init__(self, grid: GridSpec) -> None:
        self.grid = grid

    def forecast(self, future: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        from drivewm.geometry import warp_seen

        _check_horizon(horizon)
        if "past_occ" not in future or "occ" not in future or "rel_pose" not in future:
            raise KeyError("the oracle fill needs the future 'occ' and 'rel_pose' and the past frames as 'past_occ'")
        truth = future["occ"][:, :horizon]
        poses = future["rel_pose"][:, :horizon].double()  # future frames in the current ego frame
        copy = warp_occupancy(future["past_occ"][:, -1], poses, self.grid)
        seen = warp_seen(poses, self.grid)[..., None].to(truth.device)
        return torch.where(seen, copy, truth)


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


def baselines(grid: GridSpec, modality: str, *, agents: bool = False, ceiling: bool = False,
              calibration: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[Forecaster]:
    """The no-learning rows of every forecasting table of `modality` ('occ', 'lidar' or 'camera'), in table order;
    with `agents` (windows carry 'agents' / 'agents_valid') the constant-velocity agents row, with `ceiling` the
    oracle fill of the unseen area last, the ceiling of the copies (occupancy only). `calibration` (intrinsics
    [3, 3], extrinsics [4, 4]) is the camera's when the windows do not carry it."""
    if modality == "occ":
        rows: list[Forecaster] = [CopyLast(), EgoWarpCopyLast(grid, motion="known"),
                                  EgoWarpCopyLast(grid, motion="constant_velocity"), EgoWarpCopyLast(grid, outside="border")]
        return rows + ([ConstantVelocityAgents(grid)] if agents else []) + ([OracleFill(grid)] if ceiling else [])
    if modality == "lidar":
        return [CopyLastLidar(), EgoWarpLidar(motion="known"), ConstantVelocityLidar()]
    if modality == "camera":
        # camera.py builds on this module's pose helpers, so it is imported here, not at the top.
        from drivewm.baselines.camera import CopyLastCamera, EgoWarpCamera

        return [CopyLastCamera(), EgoWarpCamera(*(calibration or (None, None)))]
    raise ValueError(f"modality must be 'occ', 'lidar' or 'camera', got {modality!r}")
