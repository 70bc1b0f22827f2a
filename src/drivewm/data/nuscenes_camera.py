"""`drivewm data convert nuscenes-camera`: nuScenes camera keyframes with poses and calibration, from the scene tables.

Reads the nuScenes tables of ``DATAROOT/<version>/`` (Caesar et al., 2020, arXiv:1903.11027):
``scene.json`` (first sample of each scene), ``sample.json`` (keyframes, linked by ``next``),
``sample_data.json`` (one record per sensor reading: file name, ``is_key_frame``, and the tokens of
its ego pose and calibration), ``calibrated_sensor.json`` (sensor-to-ego rotation as a quaternion
[w, x, y, z], translation in m, ``camera_intrinsic`` in pixels), ``sensor.json`` (channel names)
and ``ego_pose.json`` (ego-to-world at the reading's timestamp). One scene becomes one episode at
the keyframe rate (2 Hz):

    camera             uint8 [T, H, W, 3]  the channel's keyframe JPEGs resized to ``size`` (h, w)
    camera_intrinsics  float32 [3, 3]      the channel's K scaled to ``size`` (pixels)
    camera_extrinsics  float32 [4, 4]      camera-to-ego (m; nuScenes cameras use OpenCV axes)
    ego_pose           float32 [T, 3]      x, y (m), yaw (rad) of the ego pose at each image
    action             float32 [T, 2]      estimated from the poses (episode.actions_from_poses)

Resumable and atomic through ``convert.write_scenes``: a rerun skips the scenes in the store.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from drivewm.data.camera import (
    check_intrinsics,
    parse_size,
    planar_pose,
    quaternion_matrix,
    read_image,
    resize_image,
    rigid_matrix,
    scale_intrinsics,
)
from drivewm.data.convert import write_scenes
from drivewm.data.episode import actions_from_poses
from drivewm.data.spec import GridSpec
from drivewm.errors import DrivewmError

TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose")
KEYFRAME_HZ = 2.0


def read_nuscenes_tables(dataroot: str | Path, version: str = "v1.0-mini") -> dict[str, dict[str, dict]]:
    """{table: {token: record}} of the tables the converters need; DrivewmError naming a missing or bad file."""
    root = Path(dataroot) / version
    if not root.is_dir():
        raise DrivewmError(f"{root}: nuScenes table directory not found (dataroot {dataroot}, version {version!r})")
    tables = {}
    for name in TABLES:
        path = root / f"{name}.json"
        if not path.is_file():
            raise DrivewmError(f"{path}: nuScenes table not found")
        try:
            records = json.loads(path.read_text())
            tables[name] = {r["token"]: r for r in records}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DrivewmError(f"{path}: not valid JSON ({e})") from None
        except (TypeError, KeyError):
            raise DrivewmError(f"{path}: must be a list of records, each with a 'token'") from None
    return tables


def _field(table: dict[str, dict], token: str, key: str, where: str) -> object:
    if token not in table or key not in table[token]:
        raise DrivewmError(f"{where}: no record {token!r} with field {key!r}")
    return table[token][key]


class NuScenesCamera:
    """The keyframe images of one camera channel, scene by scene, from a table set."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini", channel: str = "CAM_FRONT") -> None:
        self.dataroot, self.version, self.channel = Path(dataroot), version, channel
        self.tables = read_nuscenes_tables(dataroot, version)
        self.where = {name: self.dataroot / version / f"{name}.json" for name in TABLES}
        sensor_channel = {t: r.get("channel") for t, r in self.tables["sensor"].items()}
        if channel not in sensor_channel.values():
            raise DrivewmError(f"{self.where['sensor']}: no channel {channel!r}; has {sorted(set(sensor_channel.values()))}")
        calib_channel = {t: sensor_channel.get(r.get("sensor_token")) for t, r in self.tables["calibrated_sensor"].items()}
        self.keyframes: dict[str, list[dict]] = defaultdict(list)  # sample token -> this channel's keyframe readings
        for rec in self.tables["sample_data"].values():
            if rec.get("is_key_frame") and calib_channel.get(rec.get("calibrated_sensor_token")) == channel:
                self.keyframes[rec.get("sample_token")].append(rec)
        self.scenes = {r["name"]: r for r in self.tables["scene"].values() if "name" in r}

    def scene_samples(self, scene: str) -> list[str]:
        """Sample tokens of a scene in time order (first_sample_token, then ``next`` links)."""
        first = _field(self.tables["scene"], self.scenes[scene]["token"], "first_sample_token", str(self.where["scene"]))
        tokens, token = [], first
        while token:
            if token in tokens:
                raise DrivewmError(f"{self.where['sample']}: scene {scene!r}: the 'next' links loop at sample {token!r}")
            tokens.append(token)
            token = _field(self.tables["sample"], token, "next", f"{self.where['sample']} (scene {scene!r})")
        return tokens

    def episode(self, scene: str, size: tuple[int, int], wheelbase: float) -> dict[str, np.ndarray]:
        """The episode arrays of one scene (see the module docstring)."""
        images, poses, calib_tokens = [], [], set()
        src_size = None
        for token in self.scene_samples(scene):
            readings = self.keyframes.get(token, [])
            if len(readings) != 1:
                raise DrivewmError(
                    f"{self.where['sample_data']}: scene {scene!r} sample {token!r} has {len(readings)} {self.channel} "
                    "keyframes, expected 1"
                )
            rec = readings[0]
            path = self.dataroot / str(rec.get("filename", ""))
            image = read_image(path)
            if src_size is not None and image.shape[:2] != src_size:
                raise DrivewmError(f"{path}: image size {image.shape[:2]} differs from the scene's {src_size}")
            src_size = image.shape[:2]
            images.append(resize_image(image, size))
            where = f"{self.where['ego_pose']} (scene {scene!r})"
            pose_token = str(rec.get("ego_pose_token"))
            rotation = quaternion_matrix(_field(self.tables["ego_pose"], pose_token, "rotation", where), where)
            translation = _field(self.tables["ego_pose"], pose_token, "translation", where)
            poses.append(planar_pose(rigid_matrix(rotation, translation, where)))
            calib_tokens.add(rec.get("calibrated_sensor_token"))
        where = f"{self.where['calibrated_sensor']} (scene {scene!r})"
        fields = ("translation", "rotation", "camera_intrinsic")
        calibs = {json.dumps([self.tables["calibrated_sensor"][t].get(k) for k in fields]) for t in calib_tokens}
        if len(calibs) != 1:
            raise DrivewmError(f"{where}: the {self.channel} calibration changes within the scene")
        calib = self.tables["calibrated_sensor"][next(iter(calib_tokens))]
        K = check_intrinsics(calib.get("camera_intrinsic"), where)
        extrinsics = rigid_matrix(quaternion_matrix(calib.get("rotation"), where), calib.get("translation"), where)
        pose = np.array(poses)
        return {
            "camera": np.stack(images),
            "camera_intrinsics": scale_intrinsics(K, src_size, size),
            "camera_extrinsics": extrinsics.astype(np.float32),
            "ego_pose": pose.astype(np.float32),
            "action": actions_from_poses(pose, KEYFRAME_HZ, wheelbase),
        }


def convert_nuscenes_camera(
    dataroot: str | Path,
    out: str | Path,
    *,
    version: str = "v1.0-mini",
    channel: str = "CAM_FRONT",
    size: tuple[int, int] = (64, 128),
    scenes: list[str] | None = None,
    grid: GridSpec | None = None,
    wheelbase: float = 2.588,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """nuScenes camera keyframes + poses + calibration -> an episode store, one episode per scene; the manifest.

    ``scenes`` picks scenes by name (default: all, in table order); ``grid`` only fills the manifest
    (default ``occ3d``, so the store's layout matches an Occ3D conversion of the same scenes).
    """
    from drivewm.data.spec import grid_preset

    size = parse_size(size, "size")
    source = NuScenesCamera(dataroot, version, channel)
    names = list(source.scenes) if scenes is None else list(scenes)
    for name in names:
        if name not in source.scenes:
            raise DrivewmError(f"{source.where['scene']}: no scene {name!r}; has {sorted(source.scenes)}")
    generator = {"name": "convert nuscenes-camera", "dataroot": str(dataroot), "version": version,
                 "channel": channel, "size": list(size), "wheelbase": float(wheelbase)}

    def build(name: str) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: source.episode(name, size, wheelbase)

    return write_scenes(out, [(name, build(name)) for name in names], grid=grid or grid_preset("occ3d"),
                        hz=KEYFRAME_HZ, generator=generator,
                        sensors={"camera": {"height": size[0], "width": size[1], "channel": channel}},
                        skip_bad=skip_bad, report=report)
