import time

import numpy as np
import pandas as pd
import pytest
from av2.datasets.motion_forecasting.data_schema import ArgoverseScenario, ObjectState, ObjectType, Track, TrackCategory
from av2.datasets.motion_forecasting.scenario_serialization import serialize_argoverse_scenario_parquet
from PIL import Image
from scipy.spatial.transform import Rotation

from drivewm.data.argoverse2 import convert_av2_scenarios, convert_av2_sensor
from drivewm.data.camera import read_image, resize_image
from drivewm.data.inspect import verify_store
from drivewm.data.spec import class_id
from drivewm.data.store import EpisodeStore
from drivewm.errors import DrivewmError

CAM = "ring_front_center"
T0 = 315_967_376_899_927_000  # an AV2-like timestamp_ns
CAM_TO_EGO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # OpenCV camera looking ahead


def pose_rows(stamps, x0, yaw):
    q = Rotation.from_euler("z", yaw).as_quat()  # x, y, z, w
    xs = x0 + 8.0 * (np.asarray(stamps) - T0) * 1e-9  # 8 m/s along x
    return pd.DataFrame({"timestamp_ns": np.asarray(stamps, dtype=np.int64), "qw": q[3], "qx": q[0], "qy": q[1],
                         "qz": q[2], "tx_m": xs, "ty_m": 3.0, "tz_m": 0.2})


@pytest.fixture
def av2_logs(tmp_path, road_frames):
    """Two AV2 sensor logs: 2 s of ring_front_center at 20 Hz (80 x 64 JPEGs), poses at camera and LiDAR times."""
    root = tmp_path / "sensor" / "val"
    truth = {}
    for n, (log, yaw) in enumerate((("log-a", 0.2), ("log-b", -1.0))):
        d = root / log
        (d / "sensors" / "cameras" / CAM).mkdir(parents=True)
        (d / "calibration").mkdir()
        stamps = T0 + 50_000_000 * np.arange(41)
        frames = road_frames(41, 64, 80, seed=n)
        for s, f in zip(stamps, frames):
            Image.fromarray(f).save(d / "sensors" / "cameras" / CAM / f"{s}.jpg", quality=95)
        lidar_stamps = T0 + 3_000_000 + 100_000_000 * np.arange(20)
        pose_rows(np.sort(np.concatenate([stamps, lidar_stamps])), 10.0 * n, yaw).to_feather(d / "city_SE3_egovehicle.feather")
        pd.DataFrame({"sensor_name": [CAM, "ring_rear_left"], "fx_px": [50.0, 40.0], "fy_px": [52.0, 40.0],
                      "cx_px": [39.5, 30.0], "cy_px": [31.5, 30.0], "k1": 0.0, "k2": 0.0, "k3": 0.0,
                      "height_px": [64, 64], "width_px": [80, 80]}).to_feather(d / "calibration" / "intrinsics.feather")
        qx, qy, qz, qw = Rotation.from_matrix(CAM_TO_EGO).as_quat()
        pd.DataFrame({"sensor_name": [CAM, "ring_rear_left"], "qw": [qw, 1.0], "qx": [qx, 0.0], "qy": [qy, 0.0],
                      "qz": [qz, 0.0], "tx_m": [1.6, -1.0], "ty_m": [0.0, 0.5], "tz_m": [1.4, 1.4]}).to_feather(
            d / "calibration" / "egovehicle_SE3_sensor.feather")
        truth[log] = {"stamps": stamps, "x0": 10.0 * n, "yaw": yaw}
    return root, truth


def test_av2_sensor_episodes(av2_logs, tmp_path):
    root, truth = av2_logs
    start = time.perf_counter()
    m = convert_av2_sensor(root, tmp_path / "store", hz=2.0, size=(32, 40))
    per_log = (time.perf_counter() - start) / 2
    st = EpisodeStore(tmp_path / "store")
    assert [r["source"] for r in st.episodes] == ["log-a", "log-b"] and st.hz == 2.0
    for i, log in enumerate(("log-a", "log-b")):
        ep = st.read_episode(i)
        picked = truth[log]["stamps"][::10]  # ticks every 0.5 s of a 20 Hz camera: every 10th image
        files = [root / log / "sensors" / "cameras" / CAM / f"{s}.jpg" for s in picked]
        np.testing.assert_array_equal(ep["camera"], np.stack([resize_image(read_image(f), (32, 40)) for f in files]))
        t = (picked - T0) * 1e-9
        want = np.stack([truth[log]["x0"] + 8.0 * t, np.full(5, 3.0), np.full(5, truth[log]["yaw"])], axis=1)
        np.testing.assert_allclose(ep["ego_pose"], want, atol=1e-4)
        np.testing.assert_allclose(ep["camera_intrinsics"], [[25.0, 0, 19.5], [0, 26.0, 15.5], [0, 0, 1]], atol=1e-5)
        np.testing.assert_allclose(ep["camera_extrinsics"][:3, :3], CAM_TO_EGO, atol=1e-6)
        np.testing.assert_allclose(ep["camera_extrinsics"][:3, 3], [1.6, 0.0, 1.4], atol=1e-6)
        np.testing.assert_allclose(ep["action"], 0.0, atol=1e-3)  # constant speed, no turn
    assert m["generator"]["camera"] == CAM and verify_store(tmp_path / "store") == []
    assert per_log < 1.0, f"{per_log:.2f} s per log"
    again = convert_av2_sensor(root, tmp_path / "store", hz=2.0, size=(32, 40))
    assert [r["checksum"] for r in again["episodes"]] == [r["checksum"] for r in m["episodes"]]


def test_av2_sensor_bad_input_named(av2_logs, tmp_path):
    root, truth = av2_logs
    (root / "log-b" / "calibration" / "intrinsics.feather").write_bytes(b"garbage")
    with pytest.raises(DrivewmError, match=r"log-b: unreadable calibration or poses"):
        convert_av2_sensor(root, tmp_path / "a")
    seen = []
    m = convert_av2_sensor(root, tmp_path / "b", skip_bad=True, report=seen.append)
    assert [r["source"] for r in m["episodes"]] == ["log-a"] and "log-b" in seen[0]
    with pytest.raises(DrivewmError, match=r"cameras/ring_side_left: no <timestamp_ns>.jpg images"):
        convert_av2_sensor(root / "log-a", tmp_path / "c", camera="ring_side_left")
    side = root / "log-a" / "sensors" / "cameras" / "ring_side_left"
    side.mkdir()
    (side / f"{T0}.jpg").write_bytes((root / "log-a" / "sensors" / "cameras" / CAM / f"{T0}.jpg").read_bytes())
    with pytest.raises(DrivewmError, match=r"log-a/calibration: no calibration of camera 'ring_side_left'"):
        convert_av2_sensor(root / "log-a", tmp_path / "d", camera="ring_side_left")
    with pytest.raises(DrivewmError, match=r"hz must be in \(0, 20\]"):
        convert_av2_sensor(root, tmp_path / "c", hz=30.0)
    with pytest.raises(DrivewmError, match="no Argoverse 2 log directory"):
        convert_av2_sensor(tmp_path / "c", tmp_path / "e")


def track(track_id, kind, states, category=TrackCategory.TRACK_FRAGMENT):
    return Track(track_id=track_id, object_type=kind, category=category,
                 object_states=[ObjectState(observed=t < 50, timestep=t, position=p, heading=h, velocity=v)
                                for t, p, h, v in states])


@pytest.fixture
def av2_scenarios(tmp_path):
    """Two scenarios written by av2's own serializer: the ego, a car 10 m ahead and 2 m left, a pedestrian seen
    for 5 s, a bus out of the grid."""
    root = tmp_path / "scenarios"
    for n, heading in enumerate((0.3, 2.0)):
        fwd, left = np.array([np.cos(heading), np.sin(heading)]), np.array([-np.sin(heading), np.cos(heading)])
        ego_xy = [np.array([100.0 * n, 50.0]) + 10.0 * 0.1 * t * fwd for t in range(110)]
        tracks = [
            track("AV", ObjectType.VEHICLE, [(t, tuple(p), heading, tuple(10.0 * fwd)) for t, p in enumerate(ego_xy)]),
            track("car", ObjectType.VEHICLE, [(t, tuple(p + 10 * fwd + 2 * left), heading + 0.1, (0.0, 0.0))
                                              for t, p in enumerate(ego_xy)], TrackCategory.FOCAL_TRACK),
            track("ped", ObjectType.PEDESTRIAN, [(t, tuple(p - 5 * left), heading, (0.0, 0.0))
                                                 for t, p in enumerate(ego_xy) if t < 50]),
            track("bus", ObjectType.BUS, [(t, tuple(p + 100 * fwd), heading, (0.0, 0.0)) for t, p in enumerate(ego_xy)]),
        ]
        sid = f"0000-{n}"
        (root / sid).mkdir(parents=True)
        serialize_argoverse_scenario_parquet(root / sid / f"scenario_{sid}.parquet", ArgoverseScenario(
            scenario_id=sid, timestamps_ns=T0 + 100_000_000 * np.arange(110), tracks=tracks, focal_track_id="car",
            city_name="PIT", map_id=None, slice_id=None))
    return root


def test_av2_scenario_episodes(av2_scenarios, tmp_path):
    start = time.perf_counter()
    m = convert_av2_scenarios(av2_scenarios, tmp_path / "store", hz=2.0)
    per_scenario = (time.perf_counter() - start) / 2
    st = EpisodeStore(tmp_path / "store")
    assert [r["source"] for r in st.episodes] == ["0000-0", "0000-1"]
    for i, heading in enumerate((0.3, 2.0)):
        ep = st.read_episode(i)
        assert ep["ego_pose"].shape == (22, 3)  # 11 s at 10 Hz -> every 5th timestep
        np.testing.assert_allclose(ep["ego_pose"][:, 2], heading, atol=1e-6)
        np.testing.assert_allclose(ep["ego_pose"][1, :2] - ep["ego_pose"][0, :2], 5.0 * np.array([np.cos(heading), np.sin(heading)]), atol=1e-3)
        np.testing.assert_allclose(ep["ego_speed"], 10.0, atol=1e-5)
        np.testing.assert_allclose(ep["action"], 0.0, atol=1e-3)
        tracks = sorted(["car", "ped", "bus"])  # av2 groups tracks by id: bus, car, ped
        car, ped, bus = (tracks.index(k) for k in ("car", "ped", "bus"))
        np.testing.assert_allclose(ep["agents"][:, car], np.tile([10.0, 2.0, 0.8, 4.5, 1.9, 1.6, 0.1, class_id("car")], (22, 1)), atol=1e-4)
        assert ep["agents_valid"][:, car].all() and not ep["agents_valid"][:, bus].any()  # the bus is 100 m ahead
        assert ep["agents_valid"][:, ped].tolist() == [True] * 10 + [False] * 12  # seen until timestep 49
        np.testing.assert_allclose(ep["agents"][0, ped, [0, 1, 7]], [0.0, -5.0, class_id("pedestrian")], atol=1e-4)
        assert np.all(ep["agents"][~ep["agents_valid"]] == 0)
    assert verify_store(tmp_path / "store") == [] and m["generator"]["agent_sizes"] == "nominal per object type"
    assert per_scenario < 1.0, f"{per_scenario:.2f} s per scenario"


def test_av2_scenario_bad_input_named(av2_scenarios, tmp_path):
    bad = av2_scenarios / "0000-1" / "scenario_0000-1.parquet"
    df = pd.read_parquet(bad)
    df[df.track_id != "AV"].reset_index(drop=True).to_parquet(bad)
    with pytest.raises(DrivewmError, match=r"scenario_0000-1.parquet: no ego track \(track_id 'AV'\)"):
        convert_av2_scenarios(av2_scenarios, tmp_path / "a")
    bad.write_bytes(b"PAR1 broken")
    with pytest.raises(DrivewmError, match=r"scenario_0000-1.parquet: not a readable Argoverse 2 scenario"):
        convert_av2_scenarios(av2_scenarios, tmp_path / "b")
    with pytest.raises(DrivewmError, match=r"hz must be in \(0, 10\]"):
        convert_av2_scenarios(av2_scenarios, tmp_path / "c", hz=20.0)
