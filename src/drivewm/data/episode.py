"""The episode data contract as code: array keys, dtypes, shapes, validation, checksum, pose helpers.

An episode is a dict ``{key: np.ndarray}`` at a fixed rate ``hz`` (frames per second, Hz; the store's
manifest records it). Units: lengths and positions in metres, angles in radians (yaw counter-clockwise
from the world x axis, wrapped or not), speeds in m/s, acceleration in m/s^2; docs/own-data.md is the
user's guide to the contract.
``T`` is the number of frames, ``X, Y, Z`` the grid shape; other symbols are free but must agree
between the keys that share them (``K`` for ``agents``/``agents_valid``)::

    occ            uint8   [T, X, Y, Z]   class ids of the grid's class table (free is a class)
    occ_mask       bool    [T, X, Y, Z]   voxels observed by the sensors (optional)
    lidar          float32 [P, 4]         x, y, z, intensity in the ego frame, frames concatenated
    lidar_offsets  int64   [T + 1]        frame t's points are lidar[off[t]:off[t+1]]
    lidar_origin   float32 [T, 3]         LiDAR sensor origin in the ego frame, m (optional; needs lidar;
                                          absent: the tokenizer's mount, 0, 0, sensor_height)
    camera         uint8   [T, H, W, 3]   front camera (optional)
    ego_pose       float32 [T, 3]         x, y, yaw in the world frame            (required)
    action         float32 [T, 2]         acceleration m/s^2, steering rad, t->t+1 (required)
    agents         float32 [T, K, 8]      x, y, z, length, width, height, yaw, class (ego frame)
    agents_valid   bool    [T, K]
    agents_velocity float32 [T, K, 2]     ground velocity vx, vy, m/s, along the ego's axes (optional; needs agents)
    ego_speed      float32 [T]            m/s
    collision      bool    [T]
    offroad        bool    [T]
    route          float32 [R, 2]         route polyline in the world frame (per episode, not per frame)
    camera_intrinsics float32 [3, 3]      pinhole K of the stored camera images, pixels (per episode)
    camera_extrinsics float32 [4, 4]      camera-to-ego transform, metres; camera axes x right, y down,
                                          z forward (OpenCV) (per episode)

An episode needs ``ego_pose``, ``action`` (a camera-only episode, a video without a pose log, may
leave out both) and at least one sensor (``occ``, ``lidar``, ``camera``, or
``agents``: the object list of a motion-forecasting log); ``lidar``/``lidar_offsets`` and
``agents``/``agents_valid`` come in pairs, ``agents_velocity`` needs ``agents``, ``camera_intrinsics``/``camera_extrinsics`` need ``camera``,
``lidar_origin`` needs ``lidar``.

``validate_episode`` refuses what breaks the contract; ``unit_warnings`` flags what fits it but looks like
the wrong units (the writer and ``data inspect`` log them as warnings, the rules are on that function).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from drivewm.errors import DrivewmError
from drivewm.data.spec import GridSpec
from drivewm.geometry import to_frame, wrap_angle


@dataclass(frozen=True)
class KeySpec:
    dtype: str
    """numpy dtype name the store keeps (no silent casting)."""
    dims: tuple[str | int, ...]
    """Symbolic shape; 'T' is the frame axis, 'T+1' the lidar offsets, ints are fixed sizes."""
    doc: str


KEYS: dict[str, KeySpec] = {
    "occ": KeySpec("uint8", ("T", "X", "Y", "Z"), "semantic occupancy, class ids"),
    "occ_mask": KeySpec("bool", ("T", "X", "Y", "Z"), "observed voxels"),
    "lidar": KeySpec("float32", ("P", 4), "x, y, z, intensity points of all frames"),
    "lidar_offsets": KeySpec("int64", ("T+1",), "per-frame start offsets into lidar"),
    "lidar_origin": KeySpec("float32", ("T", 3), "LiDAR sensor origin x, y, z in the ego frame, m (optional)"),
    "camera": KeySpec("uint8", ("T", "H", "W", 3), "front camera RGB"),
    "ego_pose": KeySpec("float32", ("T", 3), "x, y, yaw world"),
    "action": KeySpec("float32", ("T", 2), "acceleration, steering"),
    "agents": KeySpec("float32", ("T", "K", 8), "x, y, z, l, w, h, yaw, class of road users"),
    "agents_valid": KeySpec("bool", ("T", "K"), "which agent slots are filled"),
    "agents_velocity": KeySpec("float32", ("T", "K", 2), "ground velocity vx, vy of road users, m/s (ego axes)"),
    "ego_speed": KeySpec("float32", ("T",), "ego speed m/s"),
    "collision": KeySpec("bool", ("T",), "ego collided"),
    "offroad": KeySpec("bool", ("T",), "ego left the road"),
    "route": KeySpec("float32", ("R", 2), "route polyline, world frame"),
    "camera_intrinsics": KeySpec("float32", (3, 3), "pinhole matrix of the stored images, pixels"),
    "camera_extrinsics": KeySpec("float32", (4, 4), "camera-to-ego transform, m (OpenCV camera axes)"),
}
REQUIRED_KEYS = ("ego_pose", "action")
# A video with no pose log holds these keys only; it may leave out ego_pose and action (both).
UNPOSED_KEYS = frozenset({"camera", "camera_intrinsics", "camera_extrinsics"})
SENSOR_KEYS = ("occ", "lidar", "camera", "agents")
PAIRED_KEYS = {"lidar": "lidar_offsets", "lidar_offsets": "lidar", "agents": "agents_valid", "agents_valid": "agents",
               "agents_velocity": "agents"}
# How a non-finite value of a float key is named in an error.
FLOAT_WHAT = {"ego_pose": "poses", "action": "actions", "lidar": "points", "agents": "values in valid agent slots",
              "agents_velocity": "velocities in valid agent slots",
              "ego_speed": "speeds", "route": "route points", "camera_intrinsics": "intrinsics",
              "camera_extrinsics": "extrinsics"}
# Keys whose first axis is the frame axis: a window slices them directly.
FRAME_KEYS = tuple(k for k, s in KEYS.items() if s.dims[0] == "T")


class EpisodeError(DrivewmError):
    """An episode that breaks the data contract; the message names the source, the key and the problem."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: key {key!r}" if key else source
        super().__init__(f"{where}: {problem}")


def _bind(source: str, key: str, arr: np.ndarray, spec: KeySpec, sizes: dict[str, int]) -> None:
    """Check arr's shape against the symbolic dims, binding free symbols on first use."""
    want = spec.dims
    if arr.ndim != len(want):
        raise EpisodeError(source, key, f"expected {len(want)} dims {list(want)}, got shape {list(arr.shape)}")
    for axis, (dim, got) in enumerate(zip(want, arr.shape)):
        if dim == "T+1":
            dim, got = "T", got - 1
        if isinstance(dim, int):
            if got != dim:
                raise EpisodeError(source, key, f"axis {axis} must be {dim}, got shape {list(arr.shape)}")
        elif dim in sizes and sizes[dim] != got:
            raise EpisodeError(
                source, key, f"axis {axis} ({dim}) is {got} but other keys/grid say {dim}={sizes[dim]}"
            )
        else:
            sizes[dim] = got


def check_finite(source: str, key: str, arr: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise EpisodeError(source, key, f"{int(bad.sum())} non-finite (NaN/inf) {what}, first at index {first}")


def validate_episode(arrays: dict[str, np.ndarray], grid: GridSpec, source: str = "episode") -> int:
    """Check an episode against the contract; return its frame count T.

    Raises EpisodeError (a ValueError) naming ``source`` (a file, scene or episode name), the key and
    the problem: unknown or missing keys, wrong dtype, wrong shape, frame counts that disagree,
    NaN/inf in any float key (poses, actions, points, speeds, route, valid agents, camera matrices),
    lidar offsets that do not index the points, class ids outside the grid's class table.
    """
    if not isinstance(arrays, dict):
        raise EpisodeError(source, None, f"an episode is a dict of arrays, got {type(arrays).__name__}")
    for key in arrays:
        if key not in KEYS:
            raise EpisodeError(source, key, f"unknown key; valid keys: {', '.join(KEYS)}")
    unposed = set(arrays) <= UNPOSED_KEYS
    for key in REQUIRED_KEYS:
        if key not in arrays and not unposed:
            raise EpisodeError(source, key, "missing (required unless the episode is camera only)")
    if not any(k in arrays for k in SENSOR_KEYS):
        raise EpisodeError(source, None, f"needs at least one sensor key of {', '.join(SENSOR_KEYS)}")
    for key, other in PAIRED_KEYS.items():
        if key in arrays and other not in arrays:
            raise EpisodeError(source, other, f"missing (required together with {key!r})")
    for key, needs in (("occ_mask", "occ"), ("camera_intrinsics", "camera"), ("camera_extrinsics", "camera"),
                        ("lidar_origin", "lidar")):
        if key in arrays and needs not in arrays:
            raise EpisodeError(source, needs, f"missing (required together with {key!r})")

    first = arrays["ego_pose" if "ego_pose" in arrays else "camera"]
    sizes: dict[str, int] = {"T": int(np.shape(first)[0]) if np.ndim(first) else -1}
    sizes.update(X=grid.shape[0], Y=grid.shape[1], Z=grid.shape[2])
    for key, arr in arrays.items():
        spec = KEYS[key]
        if not isinstance(arr, np.ndarray):
            raise EpisodeError(source, key, f"expected a numpy array, got {type(arr).__name__}")
        if arr.dtype != np.dtype(spec.dtype):
            raise EpisodeError(source, key, f"dtype must be {spec.dtype}, got {arr.dtype}")
        _bind(source, key, arr, spec, sizes)
    T = sizes["T"]
    if T < 1:
        raise EpisodeError(source, "ego_pose", "an episode needs at least one frame")

    # Every float of the contract is finite (agents only in their valid slots: empty ones hold anything).
    for key, arr in arrays.items():
        if arr.dtype.kind == "f":
            values = arr[arrays["agents_valid"]] if key in ("agents", "agents_velocity") else arr
            check_finite(source, key, values, FLOAT_WHAT.get(key, "values"))
    if "occ" in arrays:
        occ = arrays["occ"]
        if occ.size and int(occ.max()) >= grid.num_classes:
            bad = occ >= grid.num_classes
            frame = int(np.argmax(bad.reshape(T, -1).any(axis=1)))
            raise EpisodeError(
                source, "occ",
                f"class id {int(occ.max())} outside the class table of {grid.num_classes} classes "
                f"(ids 0..{grid.num_classes - 1}), first at frame {frame}",
            )
    if "lidar" in arrays:
        off = arrays["lidar_offsets"]
        if off[0] != 0 or off[-1] != len(arrays["lidar"]) or np.any(np.diff(off) < 0):
            raise EpisodeError(
                source, "lidar_offsets",
                f"must start at 0, never decrease and end at the point count {len(arrays['lidar'])}; "
                f"got first {int(off[0])}, last {int(off[-1])}",
            )
    if "agents" in arrays:
        agents, valid = arrays["agents"], arrays["agents_valid"]
        cls = agents[..., 7][valid]
        if cls.size and (np.any(cls < 0) or np.any(cls >= grid.num_classes) or np.any(cls != np.round(cls))):
            raise EpisodeError(source, "agents", f"class (column 7) must be an integer id in 0..{grid.num_classes - 1}")
    return T


# The rules of `unit_warnings`, documented in docs/own-data.md ("Units").
NORMALISED_MIN_FRAMES = 20
"""Frames an episode needs before its actions are judged: a short one may just be gentle driving."""
POSE_ACCEL_LIMIT = 1.5
"""m/s^2 the pose track's own acceleration exceeds, in over FAST_SHARE of its steps, when |action| <= 1 cannot be m/s^2."""
FAST_SHARE = 0.1
SATURATED_SHARE = 0.1
"""Share of frames at exactly +-1 in an action column that reads as controls clipped to a normalised range."""
MAX_SPEED = 70.0
"""m/s (252 km/h): a step between two poses faster than this is a jump, not driving."""
MAX_YAW_RATE = 2.0
"""rad/s: a turn faster than this between two poses is a jump (or yaw not in radians)."""
FORECAST_HORIZON_S = 3.0
"""Seconds ahead the forecasting tables score (OccWorld's 3 s)."""


def unit_warnings(arrays: dict[str, np.ndarray], grid: GridSpec, hz: float, source: str = "episode",
                  horizon_s: float = FORECAST_HORIZON_S) -> list[str]:
    """What in a valid episode looks like the wrong units, one message per finding (empty: nothing):

    - normalised actions: over at least NORMALISED_MIN_FRAMES frames every |action| <= 1, and either the
      pose track accelerates faster than POSE_ACCEL_LIMIT m/s^2 in over a tenth of its steps (so the
      accelerations cannot be m/s^2) or a column sits at exactly +-1 in over SATURATED_SHARE of the frames
      (controls clipped to [-1, 1]);
    - pose jumps: a step between consecutive poses faster than MAX_SPEED m/s or turning faster than
      MAX_YAW_RATE rad/s at the store's rate `hz` (positions not in metres, a wrong rate, yaw in degrees,
      or a log with a gap);
    - a horizon the grid cannot hold: the ego travels farther within `horizon_s` seconds than the grid is
      long (X voxels x voxel size), so the frame forecast at the horizon shares no voxel with the last
      observed one.
    """
    found = []
    pose, action = arrays.get("ego_pose"), arrays.get("action")
    t = len(pose) if pose is not None else 0
    if action is not None and len(action) >= NORMALISED_MIN_FRAMES and np.abs(action).max() <= 1.0:
        implied = np.abs(actions_from_poses(pose, hz)[:-1, 0]) if t > 2 else np.zeros(1)  # m/s^2 the poses need
        fast = float(np.mean(implied > POSE_ACCEL_LIMIT))
        saturated = [n for n, col in zip(("acceleration", "steering"), action.T)
                     if np.mean(np.abs(col) == 1.0) > SATURATED_SHARE]
        if fast > FAST_SHARE or saturated:
            if fast > FAST_SHARE:
                why = f"the poses accelerate faster than {POSE_ACCEL_LIMIT} m/s^2 in {100 * fast:.0f}% of the steps"
            else:
                verb = "sit" if len(saturated) > 1 else "sits"
                why = f"{' and '.join(saturated)} {verb} at exactly +-1 in over {100 * SATURATED_SHARE:.0f}% of the frames"
            found.append(f"{source}: key 'action': every value of {len(action)} frames lies in [-1, 1] and {why}: "
                         f"the actions look normalised; the contract wants acceleration in m/s^2 and steering in rad")
    if t > 1:
        step = np.linalg.norm(np.diff(pose[:, :2].astype(np.float64), axis=0), axis=1) * hz  # [T-1] m/s
        turn = np.abs(wrap_angle(np.diff(pose[:, 2].astype(np.float64)))) * hz  # [T-1] rad/s
        for what, rate, limit, unit in (("moves", step, MAX_SPEED, "m/s"), ("turns", turn, MAX_YAW_RATE, "rad/s")):
            if rate.max() > limit:
                i = int(np.argmax(rate))
                found.append(f"{source}: key 'ego_pose': the ego {what} at {rate[i]:.1f} {unit} between frames {i} and "
                             f"{i + 1} at {hz:g} Hz (more than {limit:g} {unit}): poses in metres and radians at the "
                             f"store's rate? (or a gap in the log)")
        k = max(1, int(round(horizon_s * hz)))
        if t > k:
            travel = np.linalg.norm(pose[k:, :2].astype(np.float64) - pose[:-k, :2], axis=1)
            length = grid.shape[0] * grid.voxel_size
            if travel.max() > length:
                found.append(f"{source}: key 'ego_pose': the ego travels up to {travel.max():.1f} m in {horizon_s:g} s, "
                             f"farther than the grid is long ({length:g} m): a frame forecast {horizon_s:g} s ahead "
                             f"shares no voxel with the last observed one; use a larger grid or check the units")
    return found


def episode_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's key, dtype, shape and raw C-order bytes (independent of compression)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{arr.dtype.str}|{list(arr.shape)}|".encode())
        h.update(memoryview(arr).cast("B"))
    return "sha256:" + h.hexdigest()


def relative_poses(ego_pose: np.ndarray, ref: int) -> np.ndarray:
    """Poses [T, 3] (x, y, yaw world) expressed in the ego frame of frame ``ref`` (x forward, y left)."""
    return to_frame(ego_pose, ego_pose[ref]).astype(np.float32)


def actions_from_poses(ego_pose: np.ndarray, hz: float, wheelbase: float = 2.588) -> np.ndarray:
    """Actions [T, 2] (acceleration, steering) that explain a pose track under a kinematic bicycle model.

    For real logs without recorded controls: speed v_t = |p_{t+1} - p_t| * hz (finite differences),
    acceleration a_t = (v_{t+1} - v_t) * hz, steering from the yaw rate w_t = v_t / L * tan(delta_t),
    i.e. delta_t = atan(w_t * L / v_t) (0 when nearly stopped). The last frame repeats the one before.
    The default L is the nuScenes car's (Renault Zoe) wheelbase, as the simulator's ego.
    """
    T = len(ego_pose)
    out = np.zeros((T, 2), np.float32)
    if T < 2:
        return out
    step = np.linalg.norm(np.diff(ego_pose[:, :2], axis=0), axis=1)  # [T-1]
    v = step * hz
    yaw_rate = wrap_angle(np.diff(ego_pose[:, 2])) * hz
    steer = np.where(v > 0.5, np.arctan(yaw_rate * wheelbase / np.maximum(v, 1e-6)), 0.0)
    acc = np.zeros(T - 1)
    acc[:-1] = np.diff(v) * hz
    acc[-1] = acc[-2] if T > 2 else 0.0
    out[:-1, 0], out[:-1, 1] = acc, steer
    out[-1] = out[-2]
    return out
