"""`drivewm data convert occ3d|nuscenes-lidar`: real dataset layouts into an episode store, one episode per scene.

``write_scenes`` is the one write loop of every converter (these two, nuscenes_camera, argoverse2 and
video): validated, atomic and resumable.

Both converters read a **scene file** the user supplies (JSON) with the frame order and ego poses,
which the public Occ3D release does not carry (they come from the nuScenes tables)::

    {
      "hz": 2.0,                                    # optional (default 2.0, nuScenes keyframes)
      "scenes": {                                   # scenes in store order
        "scene-0061": [                             # frames in time order
          {"token": "e93e98b6...",                  # Occ3D: gts/<scene>/<token>/labels.npz
           "ego_pose": [x, y, yaw],                 # world frame, metres and radians
           "action": [accel, steer],                # optional; else derived from the poses
           "lidar": "sweeps/LIDAR_TOP/....pcd.bin", # optional for occ3d, required for nuscenes-lidar;
                                                    # relative paths are relative to the scene file
           "lidar_to_ego": [[...4 x 4...]]},        # optional sensor-to-ego transform (row-major); its
                                                    # translation becomes the frame's lidar_origin
          ...
        ]
      }
    }

Without ``action`` entries the actions are estimated from the poses with a kinematic bicycle model
(drivewm.data.episode.actions_from_poses). Occupancy comes from ``semantics``, its mask from
``mask_camera`` (the Occ3D benchmark's mask) or ``mask_lidar``. A scene already in the output store
(same source name) is skipped, so an interrupted conversion resumes. With ``skip_bad`` a scene with
a bad file is reported, recorded in the manifest's ``skipped`` list and left out.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from drivewm.data.episode import EpisodeError, actions_from_poses
from drivewm.data.manifest import StoreError, read_manifest, write_manifest
from drivewm.data.nuscenes import lidar_points, read_pcd_bin
from drivewm.data.occ3d import occ3d_labels_path, read_occ3d_labels
from drivewm.data.spec import GridSpec
from drivewm.data.store import EpisodeWriter, remove_stale_tmp, scan_episodes
from drivewm.errors import DrivewmError

MASKS = ("camera", "lidar")


def read_scene_file(path: str | Path) -> tuple[float, dict[str, list[dict]]]:
    """(hz, {scene: [frame, ...]}) of a scene file; errors name the file, scene and frame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scene file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DrivewmError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), dict) or not data["scenes"]:
        raise DrivewmError(f"{path}: needs a non-empty object 'scenes': {{scene: [frames]}}")
    hz = float(data.get("hz", 2.0))
    if not hz > 0:
        raise DrivewmError(f"{path}: 'hz' must be > 0, got {hz}")
    for scene, frames in data["scenes"].items():
        if not isinstance(frames, list) or not frames:
            raise DrivewmError(f"{path}: scene {scene!r} must be a non-empty list of frames")
        for t, fr in enumerate(frames):
            pose = fr.get("ego_pose") if isinstance(fr, dict) else None
            if not (isinstance(pose, list) and len(pose) == 3):
                raise DrivewmError(f"{path}: scene {scene!r} frame {t}: 'ego_pose' must be [x, y, yaw]")
    return hz, data["scenes"]


def _poses_and_actions(frames: list[dict], hz: float, wheelbase: float) -> dict[str, np.ndarray]:
    pose = np.array([fr["ego_pose"] for fr in frames], dtype=np.float32)  # NaNs are caught by validation
    if all("action" in fr for fr in frames):
        action = np.array([fr["action"] for fr in frames], dtype=np.float32)
    else:
        action = actions_from_poses(pose.astype(np.float64), hz, wheelbase)
    return {"ego_pose": pose, "action": action}


def _lidar(frames: list[dict], base: Path, scene: str) -> dict[str, np.ndarray]:
    clouds = []
    for t, fr in enumerate(frames):
        if "lidar" not in fr:
            raise DrivewmError(f"scene {scene!r} frame {t}: no 'lidar' path")
        path = Path(fr["lidar"]) if Path(fr["lidar"]).is_absolute() else base / fr["lidar"]
        clouds.append(lidar_points(read_pcd_bin(path), fr.get("lidar_to_ego"), f"{path}"))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in clouds])]).astype(np.int64)
    out = {"lidar": np.concatenate(clouds).astype(np.float32), "lidar_offsets": offsets}
    calibrated = ["lidar_to_ego" in fr for fr in frames]
    if any(calibrated) and not all(calibrated):
        raise DrivewmError(f"scene {scene!r} frame {calibrated.index(False)}: no 'lidar_to_ego' while other "
                           f"frames have one; give every frame its calibration or none")
    if all(calibrated):  # LIDAR_TOP is not at the ego origin: rays start at the calibrated sensor position
        out["lidar_origin"] = np.array([np.asarray(fr["lidar_to_ego"], dtype=np.float64)[:3, 3] for fr in frames],
                                       dtype=np.float32)
    return out


def write_scenes(
    out: str | Path,
    scenes: Iterable[tuple[str, Callable[[], dict[str, np.ndarray]]]],
    *,
    grid: GridSpec,
    hz: float,
    generator: dict,
    sensors: dict | None = None,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Write one episode per ``(source, build)`` into the store ``out``, resumably; return the manifest.

    Every converter goes through here. ``build()`` reads and returns the arrays of one scene; they are
    validated against the data contract and written under a temporary name, then renamed, and the
    manifest is rewritten atomically, so an interrupted run leaves only whole episodes. A rerun with the
    same settings skips the sources already in the store, deletes half-written episodes and lists
    whole ones that an interrupt kept out of the manifest. A store written by another conversion (other
    grid, rate or ``generator`` settings) is refused. With ``skip_bad`` a source whose files are bad is
    reported, recorded in the manifest's ``skipped`` list and left out; a rerun retries it.
    """
    out = Path(out)
    scenes = list(scenes)
    twice = sorted(n for n, c in Counter(source for source, _ in scenes).items() if c > 1)
    if twice:
        raise DrivewmError(f"{out}: sources given more than once: {twice}")
    previous = read_manifest(out)["generator"] if (out / "manifest.json").exists() else None
    if previous is not None and previous != generator:
        raise StoreError(f"{out}: holds another conversion (generator {previous!r}, now {generator!r}); choose another out")
    writer = EpisodeWriter(out, grid=grid, hz=hz, sensors=sensors, generator=generator)
    remove_stale_tmp(out)
    listed = {r["name"] for r in writer.manifest["episodes"]}
    writer.manifest["episodes"] += [r for r in scan_episodes(out) if r["name"] not in listed]
    done = {r.get("source") for r in writer.manifest["episodes"]}
    scenes = [(source, build) for source, build in scenes if source not in done]
    # a resumed conversion retries the sources it skipped before; they are reported again if still bad
    retry = {source for source, _ in scenes}
    writer.manifest["skipped"] = [s for s in writer.manifest["skipped"] if s["source"] not in retry]
    write_manifest(out, writer.manifest)
    for scene, build in scenes:
        try:
            writer.write(build(), source=scene)
        except (ValueError, KeyError, FileNotFoundError, StoreError) as e:
            msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            if not skip_bad:
                if isinstance(e, EpisodeError) or msg.startswith(scene) or f"scene {scene!r}" in msg:
                    raise  # the message names the scene already
                raise type(e)(f"scene {scene!r}: {msg}") from None
            writer.skip(None, scene, msg)
            if report:
                report(f"skipped scene {scene!r}: {msg}")
    return writer.manifest


def _convert(
    out: str | Path,
    scene_file: str | Path,
    grid: GridSpec,
    build: Callable[[str, list[dict], Path], dict[str, np.ndarray]],
    generator: dict,
    *,
    wheelbase: float,
    skip_bad: bool,
    report: Callable[[str], None] | None,
) -> dict:
    hz, scenes = read_scene_file(scene_file)
    base = Path(scene_file).parent

    def scene_arrays(scene: str, frames: list[dict]) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: {**build(scene, frames, base), **_poses_and_actions(frames, hz, wheelbase)}

    return write_scenes(out, [(scene, scene_arrays(scene, frames)) for scene, frames in scenes.items()],
                        grid=grid, hz=hz, generator=generator, skip_bad=skip_bad, report=report)


def convert_occ3d(
    gts: str | Path,
    poses: str | Path,
    out: str | Path,
    *,
    mask: str = "camera",
    grid: GridSpec | None = None,
    wheelbase: float = 2.588,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Occ3D-nuScenes ``gts/<scene>/<token>/labels.npz`` + a scene file -> an episode store at ``out``."""
    from drivewm.data.spec import grid_preset

    if mask not in MASKS:
        raise DrivewmError(f"mask must be one of {MASKS}, got {mask!r}")
    if not Path(gts).is_dir():
        raise FileNotFoundError(f"{gts}: Occ3D gts directory not found")
    grid = grid or grid_preset("occ3d")

    def build(scene: str, frames: list[dict], base: Path) -> dict[str, np.ndarray]:
        labels = []
        for t, fr in enumerate(frames):
            if "token" not in fr:
                raise DrivewmError(f"scene {scene!r} frame {t}: no 'token'")
            labels.append(read_occ3d_labels(occ3d_labels_path(gts, scene, fr["token"]), grid))
        arrays = {
            "occ": np.stack([lab["semantics"] for lab in labels]),  # [T, X, Y, Z]
            "occ_mask": np.stack([lab[f"mask_{mask}"] for lab in labels]),
        }
        if all("lidar" in fr for fr in frames):
            arrays.update(_lidar(frames, base, scene))
        return arrays

    generator = {"name": "convert occ3d", "gts": str(gts), "scene_file": str(poses), "mask": f"mask_{mask}"}
    return _convert(out, poses, grid, build, generator, wheelbase=wheelbase, skip_bad=skip_bad, report=report)


def convert_nuscenes_lidar(
    samples: str | Path,
    out: str | Path,
    *,
    grid: GridSpec | None = None,
    wheelbase: float = 2.588,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """nuScenes ``.pcd.bin`` sweeps listed in a scene file -> an episode store of lidar + poses + actions."""
    from drivewm.data.spec import grid_preset

    grid = grid or grid_preset("occ3d")
    generator = {"name": "convert nuscenes-lidar", "scene_file": str(samples)}
    return _convert(out, samples, grid, lambda s, f, b: _lidar(f, b, s), generator,
                    wheelbase=wheelbase, skip_bad=skip_bad, report=report)
