"""`drivewm data convert av2` and `av2-scenarios`: Argoverse 2 logs into an episode store, through the `av2` package.

Sensor data (Wilson et al., 2021, "Argoverse 2"), one log directory per episode::

    LOG/city_SE3_egovehicle.feather            ego-to-city poses (quaternion, m) by timestamp_ns
    LOG/calibration/intrinsics.feather         fx_px, fy_px, cx_px, cy_px, width_px, height_px per camera
    LOG/calibration/egovehicle_SE3_sensor.feather   sensor-to-ego poses
    LOG/sensors/cameras/<camera>/<timestamp_ns>.jpg  (ring cameras at 20 Hz)

read through av2's own readers (``av2.utils.io.read_city_SE3_ego``,
``av2.geometry.camera.pinhole_camera.PinholeCamera.from_feather``). The camera is brought to ``hz``
by selecting the image nearest to each tick and resized to ``size`` (h, w); the episode holds
``camera``, ``camera_intrinsics`` (pixels, scaled to ``size``), ``camera_extrinsics`` (camera-to-ego,
m; AV2 cameras use OpenCV axes), ``ego_pose`` (x, y m, yaw rad in the city frame at each image)
and ``action`` (estimated from the poses, episode.actions_from_poses).

Scenario data (motion forecasting, 10 Hz, ``scenario_<id>.parquet``), one scenario per episode, read
with ``av2.datasets.motion_forecasting.scenario_serialization.load_argoverse_scenario_parquet``:
``ego_pose`` from the ego track (track id ``AV``), ``ego_speed`` (m/s) from its velocity, ``action``
from the poses, and the other tracks as ``agents`` / ``agents_valid`` in the ego frame (the object
list is the episode's sensor). Scenarios carry no box sizes: each object type gets the nominal size
of ``NOMINAL_SIZE`` and the class of ``TYPE_CLASS``; an agent is valid where it was observed and its
centre lies inside the grid's footprint (as the simulator marks them).

`av2` comes with the ``convert`` extra: ``pip install 'drivewm[convert]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from drivewm.data.camera import (
    check_intrinsics,
    parse_size,
    planar_pose,
    read_image,
    resize_image,
    scale_intrinsics,
    select_frames,
)
from drivewm.data.convert import write_scenes
from drivewm.data.episode import actions_from_poses, wrap_angle
from drivewm.data.spec import GridSpec, class_id
from drivewm.errors import DrivewmError

AV2_WHEELBASE = 2.85  # m, the Argoverse 2 fleet's Ford Fusion Hybrid
POSES_FILE = "city_SE3_egovehicle.feather"
POSE_TOLERANCE_NS = 10_000_000  # an image without a pose within 10 ms is an error
SCENARIO_HZ = 10.0
EGO_TRACK = "AV"
# length, width, height (m) of each motion-forecasting object type, and its class in the grid's table
NOMINAL_SIZE = {"vehicle": (4.5, 1.9, 1.6), "bus": (12.0, 2.6, 3.2), "pedestrian": (0.6, 0.6, 1.7),
                "motorcyclist": (2.1, 0.8, 1.6), "cyclist": (1.8, 0.6, 1.7), "riderless_bicycle": (1.8, 0.6, 1.1),
                "static": (1.0, 1.0, 1.0), "background": (1.0, 1.0, 1.0), "construction": (1.0, 1.0, 1.0),
                "unknown": (1.0, 1.0, 1.0)}
TYPE_CLASS = {"vehicle": "car", "bus": "bus", "pedestrian": "pedestrian", "motorcyclist": "motorcycle",
              "cyclist": "bicycle", "riderless_bicycle": "bicycle", "static": "others", "background": "others",
              "construction": "others", "unknown": "others"}


def _import(what: str):
    import importlib

    try:
        return importlib.import_module(what)
    except ImportError as e:
        raise DrivewmError(f"Argoverse 2 data needs the av2 package ({e}): pip install 'drivewm[convert]'") from None


def _check_rate(hz: float, native: float, where: str) -> None:
    if not 0 < hz <= native * (1 + 1e-6):
        raise DrivewmError(f"{where}: hz must be in (0, {native:g}] (the source's rate), got {hz}")


def log_dirs(root: str | Path) -> list[Path]:
    """The AV2 sensor log directories under ``root`` (``root`` itself when it is one), sorted by name."""
    root = Path(root)
    if (root / POSES_FILE).is_file():
        return [root]
    logs = sorted(d for d in root.iterdir() if (d / POSES_FILE).is_file()) if root.is_dir() else []
    if not logs:
        raise DrivewmError(f"{root}: no Argoverse 2 log directory (one holding {POSES_FILE}) here or one level down")
    return logs


def sensor_episode(log: Path, camera: str, hz: float, size: tuple[int, int], wheelbase: float) -> dict[str, np.ndarray]:
    """The episode arrays of one AV2 sensor log (see the module docstring)."""
    io = _import("av2.utils.io")
    pinhole = _import("av2.geometry.camera.pinhole_camera")
    image_dir = log / "sensors" / "cameras" / camera
    stamps = sorted(int(p.stem) for p in image_dir.glob("*.jpg") if p.stem.isdigit()) if image_dir.is_dir() else []
    if not stamps:
        raise DrivewmError(f"{image_dir}: no <timestamp_ns>.jpg images of camera {camera!r}")
    try:
        cam = pinhole.PinholeCamera.from_feather(log, camera)
        city_SE3_ego = io.read_city_SE3_ego(log)
    except KeyError:
        raise DrivewmError(f"{log / 'calibration'}: no calibration of camera {camera!r}") from None
    except (OSError, ValueError) as e:  # pyarrow's errors are OSError / ValueError subclasses
        raise DrivewmError(f"{log}: unreadable calibration or poses ({type(e).__name__}: {e})") from None
    pose_stamps = np.array(sorted(city_SE3_ego), dtype=np.int64)
    picks = select_frames((np.array(stamps) - stamps[0]) * 1e-9, hz)
    images, poses = [], []
    src_size = (cam.height_px, cam.width_px)
    for i in picks:
        path = image_dir / f"{stamps[i]}.jpg"
        image = read_image(path)
        if image.shape[:2] != src_size:
            raise DrivewmError(f"{path}: image size {image.shape[:2]} differs from the calibration's {src_size}")
        images.append(resize_image(image, size))
        j = int(np.argmin(np.abs(pose_stamps - stamps[i])))
        if abs(int(pose_stamps[j]) - stamps[i]) > POSE_TOLERANCE_NS:
            raise DrivewmError(f"{log / POSES_FILE}: no ego pose within 10 ms of image {path.name}")
        poses.append(planar_pose(city_SE3_ego[int(pose_stamps[j])].transform_matrix))
    K = check_intrinsics(cam.intrinsics.K, f"{log / 'calibration' / 'intrinsics.feather'} ({camera})")
    pose = np.array(poses)
    return {
        "camera": np.stack(images),
        "camera_intrinsics": scale_intrinsics(K, src_size, size),
        "camera_extrinsics": cam.ego_SE3_cam.transform_matrix.astype(np.float32),
        "ego_pose": pose.astype(np.float32),
        "action": actions_from_poses(pose, hz, wheelbase),
    }


def convert_av2_sensor(
    root: str | Path,
    out: str | Path,
    *,
    camera: str = "ring_front_center",
    hz: float = 2.0,
    size: tuple[int, int] = (64, 128),
    grid: GridSpec | None = None,
    wheelbase: float = AV2_WHEELBASE,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """AV2 sensor logs (``root`` = a log or a split directory of logs) -> one episode per log; the manifest."""
    from drivewm.data.spec import grid_preset

    size = parse_size(size, "size")
    _check_rate(hz, 20.0, f"{root}")
    logs = log_dirs(root)
    generator = {"name": "convert av2", "root": str(root), "camera": camera, "hz": float(hz), "size": list(size),
                 "wheelbase": float(wheelbase)}

    def build(log: Path) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: sensor_episode(log, camera, hz, size, wheelbase)

    return write_scenes(out, [(log.name, build(log)) for log in logs], grid=grid or grid_preset("occ3d"), hz=hz,
                        generator=generator, sensors={"camera": {"height": size[0], "width": size[1], "channel": camera}},
                        skip_bad=skip_bad, report=report)


def scenario_episode(path: Path, hz: float, grid: GridSpec, wheelbase: float) -> dict[str, np.ndarray]:
    """The episode arrays of one AV2 motion-forecasting scenario (see the module docstring)."""
    serialization = _import("av2.datasets.motion_forecasting.scenario_serialization")
    try:
        scenario = serialization.load_argoverse_scenario_parquet(path)
    except FileNotFoundError:
        raise DrivewmError(f"{path}: scenario file not found") from None
    except (OSError, ValueError, KeyError) as e:
        raise DrivewmError(f"{path}: not a readable Argoverse 2 scenario ({type(e).__name__}: {e})") from None
    steps = len(scenario.timestamps_ns)
    ego = [t for t in scenario.tracks if t.track_id == EGO_TRACK]
    if not ego:
        raise DrivewmError(f"{path}: no ego track (track_id {EGO_TRACK!r})")
    others = [t for t in scenario.tracks if t.track_id != EGO_TRACK]
    # [steps, 1 + K, 5]: x, y, heading, vx, vy per track and timestep; NaN where the track has no state
    states = np.full((steps, 1 + len(others), 5), np.nan)
    for k, track in enumerate(ego + others):
        for s in track.object_states:
            if 0 <= s.timestep < steps:
                states[s.timestep, k] = (*s.position, s.heading, *s.velocity)
    missing = np.flatnonzero(np.isnan(states[:, 0]).any(axis=1))
    if len(missing):
        raise DrivewmError(f"{path}: the ego track has no state at timestep {int(missing[0])}")
    picks = select_frames(np.arange(steps) / SCENARIO_HZ, hz)
    states = states[picks]
    pose = states[:, 0, :3]  # [T, 3] x, y, yaw (city frame)

    rel = states[:, 1:, :2] - pose[:, None, :2]  # [T, K, 2] offsets in the city frame
    c, s = np.cos(pose[:, 2])[:, None], np.sin(pose[:, 2])[:, None]
    types = [t.object_type.value for t in others]
    unknown = sorted({t for t in types if t not in NOMINAL_SIZE})
    if unknown:
        raise DrivewmError(f"{path}: object types {unknown} have no nominal size")
    size = np.array([NOMINAL_SIZE[t] for t in types]).reshape(-1, 3)  # [K, 3]
    agents = np.zeros((len(picks), len(others), 8))
    agents[..., 0] = c * rel[..., 0] + s * rel[..., 1]  # rotate by -yaw into the ego frame
    agents[..., 1] = -s * rel[..., 0] + c * rel[..., 1]
    agents[..., 3:6] = size
    agents[..., 2] = size[:, 2] / 2
    agents[..., 6] = wrap_angle(states[:, 1:, 2] - pose[:, 2:3])
    agents[..., 7] = [class_id(TYPE_CLASS[t]) for t in types]
    lo, hi = grid.lower, grid.upper
    valid = (~np.isnan(states[:, 1:, 0]) & (agents[..., 0] >= lo[0]) & (agents[..., 0] < hi[0])
             & (agents[..., 1] >= lo[1]) & (agents[..., 1] < hi[1]))
    agents[~valid] = 0.0
    return {
        "ego_pose": pose.astype(np.float32),
        "action": actions_from_poses(pose, hz, wheelbase),
        "ego_speed": np.hypot(states[:, 0, 3], states[:, 0, 4]).astype(np.float32),
        "agents": agents.astype(np.float32),
        "agents_valid": valid,
    }


def convert_av2_scenarios(
    root: str | Path,
    out: str | Path,
    *,
    hz: float = 2.0,
    grid: GridSpec | None = None,
    wheelbase: float = AV2_WHEELBASE,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """AV2 motion-forecasting scenarios (``scenario_*.parquet`` under ``root``) -> one episode each; the manifest."""
    from drivewm.data.spec import grid_preset

    root = Path(root)
    _check_rate(hz, SCENARIO_HZ, f"{root}")
    files = sorted(root.rglob("scenario_*.parquet")) if root.is_dir() else ([root] if root.is_file() else [])
    if not files:
        raise DrivewmError(f"{root}: no Argoverse 2 scenario files (scenario_<id>.parquet)")
    grid = grid or grid_preset("occ3d")
    generator = {"name": "convert av2-scenarios", "root": str(root), "hz": float(hz), "wheelbase": float(wheelbase),
                 "agent_sizes": "nominal per object type"}

    def build(path: Path) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: scenario_episode(path, hz, grid, wheelbase)

    return write_scenes(out, [(f.stem.removeprefix("scenario_"), build(f)) for f in files], grid=grid, hz=hz,
                        generator=generator, skip_bad=skip_bad, report=report)
