import json
import time

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from drivewm.data.camera import read_image, resize_image
from drivewm.data.inspect import verify_store
from drivewm.data.manifest import read_manifest
from drivewm.data.nuscenes_camera import convert_nuscenes_camera
from drivewm.data.store import EpisodeStore
from drivewm.errors import DrivewmError

K_SRC = [[120.0, 0.0, 79.5], [0.0, 118.0, 44.5], [0.0, 0.0, 1.0]]  # of the 160 x 90 fixture images
# nuScenes' CAM_FRONT mount: camera z (forward) = ego x, camera x (right) = ego -y, camera y (down) = ego -z
CAM_TO_EGO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
CAM_T = [1.70, 0.02, 1.51]


def wxyz(rotation: Rotation) -> list[float]:
    x, y, z, w = rotation.as_quat()
    return [float(w), float(x), float(y), float(z)]


@pytest.fixture
def nuscenes_root(tmp_path, road_frames):
    """A two-scene nuScenes table set (v1.0-mini layout) with CAM_FRONT keyframe JPEGs, CAM_BACK and sweeps."""
    root = tmp_path / "nuscenes"
    tables = {name: [] for name in ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose", "log")}
    tables["sensor"] = [{"token": "s-front", "channel": "CAM_FRONT", "modality": "camera"},
                        {"token": "s-back", "channel": "CAM_BACK", "modality": "camera"}]
    tables["calibrated_sensor"] = [
        {"token": "c-front", "sensor_token": "s-front", "translation": CAM_T, "rotation": wxyz(Rotation.from_matrix(CAM_TO_EGO)),
         "camera_intrinsic": K_SRC},
        {"token": "c-back", "sensor_token": "s-back", "translation": [0.0, 0.0, 1.5], "rotation": [1.0, 0.0, 0.0, 0.0],
         "camera_intrinsic": K_SRC},
    ]
    truth = {}
    for s, (name, T) in enumerate((("scene-0061", 4), ("scene-0103", 3))):
        images = road_frames(T, 90, 160, seed=s)
        poses = [(100.0 * s + 5.0 * t, -20.0 + 0.3 * t, 0.4 + 0.05 * t) for t in range(T)]
        samples = [f"{name}-sample{t}" for t in range(T)]
        tables["scene"].append({"token": f"{name}-tok", "name": name, "first_sample_token": samples[0],
                                "last_sample_token": samples[-1], "nbr_samples": T, "log_token": "log"})
        for t in range(T):
            stamp = 1_532_402_927_000_000 + 500_000 * t
            tables["sample"].append({"token": samples[t], "timestamp": stamp, "scene_token": f"{name}-tok",
                                     "prev": samples[t - 1] if t else "", "next": samples[t + 1] if t + 1 < T else ""})
            for channel, calib, key in (("CAM_FRONT", "c-front", True), ("CAM_FRONT", "c-front", False),
                                        ("CAM_BACK", "c-back", True)):
                token = f"{samples[t]}-{channel}-{'key' if key else 'sweep'}"
                x, y, yaw = poses[t]
                tables["ego_pose"].append({"token": f"pose-{token}", "timestamp": stamp,
                                           "translation": [x + (0 if key else 1.0), y, 0.0],
                                           "rotation": wxyz(Rotation.from_euler("z", yaw))})
                filename = f"{'samples' if key else 'sweeps'}/{channel}/{token}.jpg"
                (root / filename).parent.mkdir(parents=True, exist_ok=True)
                image = images[t] if channel == "CAM_FRONT" and key else images[t][::-1]
                Image.fromarray(image).save(root / filename, quality=95)
                tables["sample_data"].append({
                    "token": token, "sample_token": samples[t], "ego_pose_token": f"pose-{token}",
                    "calibrated_sensor_token": calib, "timestamp": stamp, "fileformat": "jpg",
                    "is_key_frame": key, "height": 90, "width": 160, "filename": filename, "prev": "", "next": ""})
        truth[name] = {"poses": np.array(poses), "files": [root / f"samples/CAM_FRONT/{s}-CAM_FRONT-key.jpg" for s in samples]}
    (root / "v1.0-mini").mkdir(parents=True)
    for name, records in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(records))
    return root, truth


def test_nuscenes_camera_episodes(nuscenes_root, tmp_path):
    root, truth = nuscenes_root
    start = time.perf_counter()
    m = convert_nuscenes_camera(root, tmp_path / "store", size=(45, 80))
    per_scene = (time.perf_counter() - start) / 2
    st = EpisodeStore(tmp_path / "store")
    assert [r["source"] for r in st.episodes] == ["scene-0061", "scene-0103"] and st.hz == 2.0
    for i, name in enumerate(("scene-0061", "scene-0103")):
        ep = st.read_episode(i)
        want = np.stack([resize_image(read_image(f), (45, 80)) for f in truth[name]["files"]])
        np.testing.assert_array_equal(ep["camera"], want)  # the keyframe JPEGs, not the sweeps or CAM_BACK
        np.testing.assert_allclose(ep["ego_pose"], truth[name]["poses"], atol=1e-4)
        # K scaled by 1/2: fx, fy halve; the pixel-centre shift keeps the principal point on the same ray
        np.testing.assert_allclose(ep["camera_intrinsics"], [[60.0, 0, 39.5], [0, 59.0, 22.0], [0, 0, 1]], atol=1e-5)
        np.testing.assert_allclose(ep["camera_extrinsics"][:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-6)  # looks ahead
        np.testing.assert_allclose(ep["camera_extrinsics"][:3, 3], CAM_T, atol=1e-6)
        # constant speed and yaw rate: no acceleration, the bicycle model's steering atan(w L / v)
        v, w = 2.0 * np.hypot(5.0, 0.3), 2.0 * 0.05
        np.testing.assert_allclose(ep["action"][:, 0], 0.0, atol=1e-3)
        np.testing.assert_allclose(ep["action"][:, 1], np.arctan(w * 2.588 / v), atol=1e-4)
    assert m["generator"]["channel"] == "CAM_FRONT" and verify_store(tmp_path / "store") == []
    assert per_scene < 1.0, f"{per_scene:.2f} s per scene"

    again = convert_nuscenes_camera(root, tmp_path / "store", size=(45, 80))  # resume: nothing to do
    assert [r["checksum"] for r in again["episodes"]] == [r["checksum"] for r in m["episodes"]]


def test_nuscenes_camera_bad_input_named(nuscenes_root, tmp_path):
    root, truth = nuscenes_root
    truth["scene-0103"]["files"][1].unlink()
    with pytest.raises(DrivewmError, match=r"scene 'scene-0103'.*scene-0103-sample1-CAM_FRONT-key.jpg: image file not found"):
        convert_nuscenes_camera(root, tmp_path / "a", size=(45, 80))
    seen = []
    m = convert_nuscenes_camera(root, tmp_path / "b", size=(45, 80), skip_bad=True, report=seen.append)
    assert [r["source"] for r in m["episodes"]] == ["scene-0061"] and read_manifest(tmp_path / "b")["skipped"]
    assert "image file not found" in seen[0]
    with pytest.raises(DrivewmError, match=r"scene.json: no scene 'scene-9999'"):
        convert_nuscenes_camera(root, tmp_path / "c", scenes=["scene-9999"])
    with pytest.raises(DrivewmError, match=r"sensor.json: no channel 'CAM_LEFT'"):
        convert_nuscenes_camera(root, tmp_path / "c", channel="CAM_LEFT")
    (root / "v1.0-mini" / "ego_pose.json").unlink()
    with pytest.raises(DrivewmError, match=r"v1.0-mini/ego_pose.json: nuScenes table not found"):
        convert_nuscenes_camera(root, tmp_path / "c")
