import json

import numpy as np
import pytest

from drivewm.data.convert import convert_nuscenes_lidar, convert_occ3d
from drivewm.data.manifest import read_manifest
from drivewm.data.nuscenes import read_pcd_bin
from drivewm.data.occ3d import read_occ3d_labels
from drivewm.data.spec import grid_preset
from drivewm.data.store import EpisodeStore
from drivewm.errors import DrivewmError

OCC3D = grid_preset("occ3d")


def write_labels(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    sem = np.full(OCC3D.shape, 17, np.uint8)
    sem[rng.integers(0, 200, 50), rng.integers(0, 200, 50), rng.integers(0, 16, 50)] = rng.integers(0, 17, 50)
    # observed columns up to a random height: structured like real masks (and quick to compress)
    height = rng.integers(0, 17, OCC3D.shape[:2])[..., None]
    masks = {k: (np.arange(16) < height + i).astype(np.uint8) for i, k in enumerate(("mask_lidar", "mask_camera"))}
    np.savez_compressed(path, semantics=sem, **masks)  # as Occ3D ships them: uint8 arrays
    return {"semantics": sem, **masks}


def write_pcd_bin(path, rng, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = rng.normal(size=(n, 5)).astype(np.float32)
    pts[:, 4] = rng.integers(0, 32, n)  # ring index
    pts.tofile(path)
    return pts


@pytest.fixture
def occ3d_layout(tmp_path):
    rng = np.random.default_rng(0)
    scenes, truth = {}, {}
    for s, T in (("scene-0001", 3), ("scene-0002", 2)):
        frames, labels = [], []
        for t in range(T):
            token = f"{s}-tok{t}"
            labels.append(write_labels(tmp_path / "gts" / s / token / "labels.npz", rng))
            frames.append({"token": token, "ego_pose": [4.0 * t, 0.5 * t, 0.05 * t]})
        scenes[s], truth[s] = frames, labels
    (tmp_path / "poses.json").write_text(json.dumps({"hz": 2.0, "scenes": scenes}))
    return tmp_path, truth


def test_occ3d_labels_round_trip(occ3d_layout):
    root, truth = occ3d_layout
    convert_occ3d(root / "gts", root / "poses.json", root / "out")
    st = EpisodeStore(root / "out")
    assert [r["source"] for r in st.episodes] == ["scene-0001", "scene-0002"]
    assert st.grid.shape == (200, 200, 16) and st.hz == 2.0
    for i, scene in enumerate(("scene-0001", "scene-0002")):
        occ, mask = st.read(i, "occ"), st.read(i, "occ_mask")
        np.testing.assert_array_equal(occ, np.stack([lab["semantics"] for lab in truth[scene]]))
        np.testing.assert_array_equal(mask, np.stack([lab["mask_camera"] for lab in truth[scene]]).astype(bool))
        np.testing.assert_allclose(st.read(i, "ego_pose")[:, 0], 4.0 * np.arange(len(truth[scene])))
        assert np.all(np.isfinite(st.read(i, "action")))
    again = convert_occ3d(root / "gts", root / "poses.json", root / "out")  # resume: nothing to do
    assert len(again["episodes"]) == 2


def test_occ3d_bad_files_named_and_skipped(occ3d_layout):
    root, _ = occ3d_layout
    (root / "gts/scene-0002/scene-0002-tok1/labels.npz").unlink()
    with pytest.raises(FileNotFoundError, match="scene-0002.*scene-0002-tok1/labels.npz: Occ3D labels file not found"):
        convert_occ3d(root / "gts", root / "poses.json", root / "out")
    seen = []
    m = convert_occ3d(root / "gts", root / "poses.json", root / "out2", skip_bad=True, report=seen.append)
    assert [r["source"] for r in m["episodes"]] == ["scene-0001"]
    assert read_manifest(root / "out2")["skipped"][0]["source"] == "scene-0002" and "labels.npz" in seen[0]


def test_occ3d_reader_errors(tmp_path):
    np.savez(tmp_path / "a.npz", semantics=np.zeros((200, 200, 16), np.uint8), mask_lidar=np.zeros((200, 200, 16)))
    with pytest.raises(DrivewmError, match="a.npz: missing key 'mask_camera'"):
        read_occ3d_labels(tmp_path / "a.npz", OCC3D)
    full = {k: np.zeros((200, 200, 16), np.uint8) for k in ("mask_lidar", "mask_camera")}
    np.savez(tmp_path / "b.npz", semantics=np.zeros((200, 200, 8), np.uint8), **full)
    with pytest.raises(ValueError, match="b.npz: key 'semantics' has shape \\[200, 200, 8\\]"):
        read_occ3d_labels(tmp_path / "b.npz", OCC3D)
    np.savez(tmp_path / "c.npz", semantics=np.full((200, 200, 16), 23, np.uint8), **full)
    with pytest.raises(ValueError, match="c.npz: key 'semantics' has class id 23 outside the class table"):
        read_occ3d_labels(tmp_path / "c.npz", OCC3D)
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="d.npz: not a readable .npz"):
        read_occ3d_labels(tmp_path / "d.npz", OCC3D)


def test_pcd_bin_reader_and_lidar_converter(tmp_path):
    rng = np.random.default_rng(1)
    clouds = [write_pcd_bin(tmp_path / "sweeps" / f"s{t}.pcd.bin", rng, n) for t, n in enumerate((40, 25, 33))]
    np.testing.assert_array_equal(read_pcd_bin(tmp_path / "sweeps/s1.pcd.bin"), clouds[1])
    lidar_to_ego = [[1, 0, 0, 0.9], [0, 1, 0, 0.0], [0, 0, 1, 1.8], [0, 0, 0, 1]]  # LIDAR_TOP above the axle
    frames = [{"lidar": f"sweeps/s{t}.pcd.bin", "lidar_to_ego": lidar_to_ego, "ego_pose": [t, 0, 0]} for t in range(3)]
    (tmp_path / "samples.json").write_text(json.dumps({"scenes": {"scene-0100": frames}}))
    convert_nuscenes_lidar(tmp_path / "samples.json", tmp_path / "out")
    st = EpisodeStore(tmp_path / "out")
    np.testing.assert_array_equal(st.read(0, "lidar_offsets"), [0, 40, 65, 98])
    pts, _ = st.read_lidar(0, 1, 2)
    np.testing.assert_allclose(pts[:, :3], clouds[1][:, :3] + [0.9, 0.0, 1.8], atol=1e-5)
    np.testing.assert_array_equal(pts[:, 3], clouds[1][:, 3])  # intensity kept, ring dropped
    np.testing.assert_allclose(st.read(0, "lidar_origin"), [[0.9, 0.0, 1.8]] * 3)  # rays start at the calibrated sensor
    np.testing.assert_allclose(st.read(0, "action")[:, 0], 0.0, atol=1e-5)  # constant 2 m/s: no acceleration


def test_pcd_bin_bad_input(tmp_path):
    (tmp_path / "t.pcd.bin").write_bytes(np.zeros(11, np.float32).tobytes())
    with pytest.raises(ValueError, match="t.pcd.bin: 44 bytes is not a whole number of points"):
        read_pcd_bin(tmp_path / "t.pcd.bin")
    nan = np.zeros((4, 5), np.float32)
    nan[2, 1] = np.nan
    nan.tofile(tmp_path / "n.pcd.bin")
    frames = [{"lidar": "n.pcd.bin", "ego_pose": [0, 0, 0]}]
    (tmp_path / "s.json").write_text(json.dumps({"scenes": {"scene-9": frames}}))
    with pytest.raises(ValueError, match="scene-9.*'lidar'.*non-finite"):
        convert_nuscenes_lidar(tmp_path / "s.json", tmp_path / "out")
    (tmp_path / "p.json").write_text(json.dumps({"scenes": {"scene-9": [{"lidar": "n.pcd.bin", "ego_pose": [0, 0]}]}}))
    with pytest.raises(ValueError, match="p.json: scene 'scene-9' frame 0: 'ego_pose' must be"):
        convert_nuscenes_lidar(tmp_path / "p.json", tmp_path / "out")


def test_cli_convert_and_merge(occ3d_layout, tmp_path):
    from typer.testing import CliRunner

    from drivewm.cli import app

    root, _ = occ3d_layout
    (root / "gts/scene-0001/scene-0001-tok2/labels.npz").write_bytes(b"truncated")
    runner = CliRunner()
    args = ["data", "convert", "occ3d", "--gts", str(root / "gts"), "--poses", str(root / "poses.json"), "--out"]
    r = runner.invoke(app, args + [str(root / "c1")])
    assert r.exit_code == 2 and "scene-0001-tok2/labels.npz: not a readable .npz" in r.output
    r = runner.invoke(app, args + [str(root / "c2"), "--skip-bad", "--mask", "lidar"])
    assert r.exit_code == 0 and "1 episodes, 1 skipped" in r.output and "skipped scene 'scene-0001'" in r.output
    r = runner.invoke(app, ["data", "convert", "nuscenes-lidar", "--samples", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "none.json: scene file not found" in r.output
    r = runner.invoke(app, ["data", "merge", str(root / "m"), str(root / "c2")])
    assert r.exit_code == 0 and "1 episodes" in r.output
