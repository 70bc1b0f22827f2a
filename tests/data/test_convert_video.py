import json

import numpy as np
import pytest

from drivewm.data.camera import nearest_in_time, resize_image, select_frames
from drivewm.data.inspect import verify_store
from drivewm.data.manifest import read_manifest
from drivewm.data.spec import grid_preset
from drivewm.data.store import EpisodeStore, write_episode
from drivewm.data.video import convert_video, export_video, read_video, write_video
from drivewm.errors import DrivewmError

CRF = 18
PSNR_FLOOR_DB = 30.0  # H.264 at crf 18 on 64 x 128 road frames (measured ~38 dB)


def test_nearest_in_time_matches_brute_force():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.06, 200))  # jittered ~25 fps
    for hz in (2.0, 7.0, 10.0):
        ticks = times[0] + np.arange(int((times[-1] - times[0]) * hz) + 1) / hz
        want = [int(np.argmin(np.abs(times - t))) for t in ticks]  # first index on ties = the earlier frame
        assert select_frames(times, hz).tolist() == list(dict.fromkeys(want))
    assert list(nearest_in_time([(0.0, "a"), (0.1, "b"), (0.2, "c"), (0.3, "d")], 5.0)) == ["a", "c"]


def test_video_import_selects_frames_and_keeps_psnr(tmp_path, road_frames, psnr):
    frames = road_frames(30, 64, 128)
    write_video(frames, tmp_path / "drive.mp4", fps=10.0, crf=CRF)
    got, fps = read_video(tmp_path / "drive.mp4", hz=2.5)
    assert fps == 10.0 and got.shape == (8, 64, 128, 3)  # ticks 0, 0.4, ..., 2.8 s -> frames 0, 4, ..., 28
    assert psnr(got, frames[::4]) >= PSNR_FLOOR_DB
    assert psnr(got, frames[1::4][:8]) < psnr(got, frames[::4]) - 3  # the right frames, not neighbours

    m = convert_video([tmp_path / "drive.mp4"], tmp_path / "store", hz=2.5, size=(32, 64))
    st = EpisodeStore(tmp_path / "store")
    assert st.hz == 2.5 and sorted(st.episodes[0]["arrays"]) == ["camera"]
    cam = st.read(0, "camera")
    want = np.stack([resize_image(f, (32, 64)) for f in frames[::4]])
    assert cam.shape == (8, 32, 64, 3) and psnr(cam, want) >= PSNR_FLOOR_DB
    assert m["generator"]["size"] == [32, 64] and verify_store(tmp_path / "store") == []


def test_export_round_trip_psnr(tmp_path, road_frames, psnr):
    frames = road_frames(12, 64, 128, seed=1)
    grid = grid_preset("micro")
    write_episode(tmp_path / "store", {"camera": frames}, grid=grid, hz=2.0)
    path = export_video(tmp_path / "store", tmp_path / "out" / "ep0.mp4", crf=CRF)
    back, fps = read_video(path, hz=2.0)
    assert fps == 2.0 and back.shape == frames.shape
    assert psnr(back, frames) >= PSNR_FLOOR_DB
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ep0.mp4"]  # no temporary left behind
    lossless_ish = read_video(export_video(tmp_path / "store", tmp_path / "hq.mp4", crf=0), hz=2.0)[0]
    assert psnr(lossless_ish, frames) > psnr(back, frames)  # quality follows crf


def test_video_converter_resumes_and_names_bad_files(tmp_path, road_frames):
    for i in range(2):
        write_video(road_frames(6, 32, 64, seed=i), tmp_path / f"v{i}.mp4", fps=4.0)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    files = [tmp_path / "v0.mp4", tmp_path / "bad.mp4", tmp_path / "v1.mp4"]
    with pytest.raises(DrivewmError, match=r"bad.mp4: not a readable video"):
        convert_video(files, tmp_path / "store", hz=2.0, size=(32, 64))
    first = read_manifest(tmp_path / "store")
    assert [r["source"] for r in first["episodes"]] == [str(files[0])]  # the whole episodes before the bad file

    # an interrupted writer's temporary directory is cleaned up; finished episodes are not rewritten
    stale = tmp_path / "store" / "episodes" / ".tmp-ep_000001-deadbeef"
    stale.mkdir()
    seen = []
    m = convert_video(files, tmp_path / "store", hz=2.0, size=(32, 64), skip_bad=True, report=seen.append)
    assert not stale.exists()
    assert [r["source"] for r in m["episodes"]] == [str(files[0]), str(files[2])]
    assert m["episodes"][0]["checksum"] == first["episodes"][0]["checksum"]
    assert m["skipped"][0]["source"] == str(files[1]) and "bad.mp4" in seen[0]
    assert verify_store(tmp_path / "store") == []

    with pytest.raises(DrivewmError, match=r"sources given more than once: \['.*v0.mp4'\]"):
        convert_video(files + files[:1], tmp_path / "store", hz=2.0, size=(32, 64))
    with pytest.raises(DrivewmError, match="holds another conversion"):
        convert_video(files, tmp_path / "store", hz=2.0, size=(16, 32))
    with pytest.raises(DrivewmError, match=r"v0.mp4: 4 frames/s is slower than the store's 5 Hz"):
        read_video(files[0], hz=5.0)
    with pytest.raises(DrivewmError, match=r"missing.mp4: video file not found"):
        read_video(tmp_path / "missing.mp4", hz=2.0)
    with pytest.raises(DrivewmError, match="even height and width"):
        write_video(np.zeros((2, 31, 64, 3), np.uint8), tmp_path / "odd.mp4", fps=2.0)
    assert json.loads((tmp_path / "store" / "manifest.json").read_text())["generator"]["hz"] == 2.0


def test_camera_only_contract_and_windows(tmp_path, road_frames):
    from drivewm.data.config import DataConfig
    from drivewm.data.episode import EpisodeError, validate_episode
    from drivewm.data.windows import WindowDataset

    grid = grid_preset("micro")
    cam = road_frames(6, 16, 32)
    K = np.array([[20.0, 0, 15.5], [0, 20.0, 7.5], [0, 0, 1]], np.float32)
    assert validate_episode({"camera": cam, "camera_intrinsics": K, "camera_extrinsics": np.eye(4, dtype=np.float32)}, grid) == 6
    with pytest.raises(EpisodeError, match="'action': missing"):  # poses without actions: not camera only
        validate_episode({"camera": cam, "ego_pose": np.zeros((6, 3), np.float32)}, grid)
    with pytest.raises(EpisodeError, match="'ego_pose': missing"):  # another sensor needs poses
        validate_episode({"camera": cam, "occ": np.zeros((6, *grid.shape), np.uint8)}, grid)
    with pytest.raises(EpisodeError, match="'camera': missing .*'camera_intrinsics'"):
        validate_episode({"ego_pose": np.zeros((6, 3), np.float32), "action": np.zeros((6, 2), np.float32),
                          "agents": np.zeros((6, 1, 8), np.float32), "agents_valid": np.zeros((6, 1), bool),
                          "camera_intrinsics": K}, grid)
    with pytest.raises(EpisodeError, match="'camera_intrinsics': axis 0 must be 3"):
        validate_episode({"camera": cam, "camera_intrinsics": np.eye(4, dtype=np.float32)}, grid)

    write_episode(tmp_path / "store", {"camera": cam}, grid=grid, hz=2.0)
    ds = WindowDataset(DataConfig(path=str(tmp_path / "store"), past=2, future=2, keys=["camera"], val_fraction=0.0))
    item = ds[1]
    assert sorted(item) == ["camera"] and item["camera"].shape == (4, 16, 32, 3)
    np.testing.assert_array_equal(item["camera"].numpy(), cam[1:5])
    with pytest.raises((KeyError, ValueError), match="ego_pose"):  # a model that needs poses is refused by name
        WindowDataset(DataConfig(path=str(tmp_path / "store"), past=2, future=2, keys=["camera", "ego_pose"]))


def test_rerun_lists_an_episode_the_manifest_missed(tmp_path, road_frames):
    from drivewm.data.manifest import write_manifest

    files = []
    for i in range(2):
        files.append(write_video(road_frames(4, 16, 32, seed=i), tmp_path / f"v{i}.mp4", fps=2.0))
    m = convert_video(files, tmp_path / "store", hz=2.0, size=(16, 32))
    # an interrupt between renaming the second episode and rewriting the manifest
    write_manifest(tmp_path / "store", {**m, "episodes": m["episodes"][:1]})
    again = convert_video(files, tmp_path / "store", hz=2.0, size=(16, 32))
    assert [r["checksum"] for r in again["episodes"]] == [r["checksum"] for r in m["episodes"]]
    assert len(EpisodeStore(tmp_path / "store")) == 2
