import json
import shutil

import numpy as np
import pytest

from drivewm.data.episode import EpisodeError
from drivewm.data.manifest import SCHEMA_VERSION, StoreError, read_manifest
from drivewm.data.merge import merge_stores
from drivewm.data.spec import grid_preset
from drivewm.data.store import EpisodeStore, EpisodeWriter, write_episode


@pytest.fixture
def store(tmp_path, grid, make_episode):
    eps = [make_episode(T, grid, seed=i) for i, T in enumerate((9, 6))]
    with EpisodeWriter(tmp_path / "s", grid=grid, hz=2.0, sensors={"camera": [8, 16]}) as w:
        for i, ep in enumerate(eps):
            w.write(ep, source=f"drive-{i}")
    return tmp_path / "s", eps


def test_round_trip_every_key_and_window(store):
    path, eps = store
    st = EpisodeStore(path)
    assert len(st) == 2
    for i, ep in enumerate(eps):
        back = st.read_episode(i)
        assert set(back) == set(ep)
        for k in ep:
            assert back[k].dtype == ep[k].dtype and np.array_equal(back[k], ep[k]), k
        st.verify(i)
    np.testing.assert_array_equal(st.read(0, "occ", 3, 7), eps[0]["occ"][3:7])
    pts, off = st.read_lidar(0, 2, 5)
    o = eps[0]["lidar_offsets"]
    np.testing.assert_array_equal(pts, eps[0]["lidar"][o[2] : o[5]])
    np.testing.assert_array_equal(off, o[2:6] - o[2])


def test_manifest_contents_and_chunking(store):
    path, eps = store
    m = read_manifest(path)
    assert m["schema_version"] == SCHEMA_VERSION and m["hz"] == 2.0
    assert m["grid"] == grid_preset("micro").to_dict() and len(m["grid"]["classes"]) == 18
    assert [e["frames"] for e in m["episodes"]] == [9, 6]
    assert [e["source"] for e in m["episodes"]] == ["drive-0", "drive-1"]
    assert all(e["checksum"].startswith("sha256:") for e in m["episodes"])
    st = EpisodeStore(path)
    assert st.group(0)["occ"].chunks[0] == 4  # a window reads a few frames' chunks, not the episode
    assert len(list((path / "episodes/ep_000000/occ/c").iterdir())) == 3  # 9 frames / 4 per chunk
    assert not list(path.glob("**/.tmp-*"))


def test_writer_validates_and_refuses_other_grid(tmp_path, grid, make_episode):
    ep = make_episode(3, grid)
    ep["ego_pose"][1, 0] = np.nan
    with pytest.raises(EpisodeError, match="mine.*'ego_pose'.*NaN"):
        write_episode(tmp_path / "s", ep, grid=grid, source="mine")
    write_episode(tmp_path / "s", make_episode(3, grid), grid=grid)
    with pytest.raises(StoreError, match="grid differs"):
        EpisodeWriter(tmp_path / "s", grid=grid_preset("tiny"))
    assert len(EpisodeStore(tmp_path / "s")) == 1  # the bad episode left nothing behind


def _first_chunk(path):
    return path / "episodes/ep_000000/occ/c/1/0/0/0"


def test_corrupt_chunk_names_the_chunk_file(store):
    path, _ = store
    chunk = _first_chunk(path)
    b = bytearray(chunk.read_bytes())
    b[len(b) // 2] ^= 0xFF
    chunk.write_bytes(bytes(b))
    st = EpisodeStore(path)
    st.read(0, "occ", 0, 4)  # chunks other than the bad one still read
    with pytest.raises(StoreError, match=r"ep_000000/occ/c/1/0/0/0: corrupt or truncated chunk"):
        st.read(0, "occ", 2, 6)


def test_truncated_chunk_names_the_chunk_file(store):
    path, _ = store
    chunk = _first_chunk(path)
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(StoreError, match=r"occ/c/1/0/0/0: corrupt or truncated"):
        EpisodeStore(path).read(0, "occ")


def test_missing_chunk_file_is_detected_on_open(store):
    path, _ = store
    _first_chunk(path).unlink()
    with pytest.raises(StoreError, match=r"ep_000000/occ: 2 of 3 chunk files present"):
        EpisodeStore(path)


def test_swapped_chunk_fails_verify(store):
    path, _ = store  # a well-formed chunk with other data decodes fine; only the checksum sees it
    shutil.copy(path / "episodes/ep_000001/occ/c/0/0/0/0", path / "episodes/ep_000000/occ/c/0/0/0/0")
    st = EpisodeStore(path)
    with pytest.raises(StoreError, match="ep_000000: checksum .* does not match manifest"):
        st.verify(0)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m["episodes"][1].__setitem__("frames", 7), "ep_000001.*manifest frames 7 does not match"),
        (lambda m: m["episodes"].append(dict(m["episodes"][0], name="ep_000005", index=5)), "ep_000005.*missing"),
        (lambda m: m["episodes"].pop(), "ep_000001: episode directory not listed"),
        (lambda m: m.__setitem__("schema_version", 99), "manifest.json: schema_version 99"),
    ],
)
def test_manifest_mismatch_names_file(store, edit, words):
    path, _ = store
    m = json.loads((path / "manifest.json").read_text())
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=words):
        EpisodeStore(path)


def test_skip_bad_reports_and_skips(store):
    path, eps = store
    _first_chunk(path).unlink()
    seen = []
    st = EpisodeStore(path, skip_bad=True, report=seen.append)
    assert len(st) == 1 and st.episodes[0]["name"] == "ep_000001"
    assert len(seen) == 1 and "ep_000000/occ" in seen[0] and st.problems == seen
    np.testing.assert_array_equal(st.read(0, "occ"), eps[1]["occ"])


def test_merge_rebuilds_manifest_and_refuses_conflicts(store, tmp_path, grid, make_episode):
    path, _ = store
    m = json.loads((path / "manifest.json").read_text())
    m["episodes"].pop()
    (path / "manifest.json").write_text(json.dumps(m))
    merge_stores(path, [])  # rebuild from the episode directories
    assert len(EpisodeStore(path)) == 2
    other = tmp_path / "other"
    write_episode(other, make_episode(4, grid, seed=9), grid=grid)  # also index 0, different data
    with pytest.raises(StoreError, match="already holds this episode index with other data"):
        merge_stores(path, [other])


def test_summary_counts(store, tmp_path):
    from drivewm.data.inspect import frame_png, summarize
    from drivewm.data.render import bev_classes

    path, eps = store
    s = summarize(EpisodeStore(path), verify=True)
    assert s["episodes"] == 2 and s["frames"] == 15 and s["frames_per_episode"] == [6, 7.5, 9]
    counts = np.bincount(np.concatenate([e["occ"].ravel() for e in eps]), minlength=18)
    np.testing.assert_allclose(list(s["class_frequency"].values()), counts / counts.sum())
    per_frame = np.concatenate([np.diff(e["lidar_offsets"]) for e in eps])
    assert s["lidar_points_per_frame"] == [per_frame.min(), per_frame.mean(), per_frame.max()]
    assert s["verify_failures"] == [] and s["disk_bytes"] > 0
    with pytest.raises(IndexError, match="--frame 6: episode 1 .* has 6 frames"):
        frame_png(EpisodeStore(path), tmp_path / "x.png", episode=1, frame=6)
    column = np.full((1, 1, 4), 17, np.uint8)
    column[0, 0, [0, 2]] = [11, 4]  # road below a car: the top-down view shows the car
    assert bev_classes(column, 17)[0, 0] == 4 and bev_classes(np.full((1, 1, 4), 17, np.uint8), 17)[0, 0] == 17


def test_bev_image_orientation(grid):
    from drivewm.data.render import OCC3D_PALETTE, bev_image

    occ = np.full(grid.shape, grid.free_id, np.uint8)
    occ[-1, -1, 0] = 4  # front-left corner of the grid (largest x, largest y): top-left of the picture
    occ[0, -1, 1] = 7  # rear-left: bottom-left
    img = bev_image(occ, grid)
    assert img.shape == (32, 32, 3)
    assert (img[0, 0] == OCC3D_PALETTE[4]).all() and (img[-1, 0] == OCC3D_PALETTE[7]).all()
    assert (img[5, 5] == OCC3D_PALETTE[17]).all()


@pytest.mark.parametrize("index", [-1, 2.5, True])
def test_write_refuses_an_index_that_is_not_a_non_negative_integer(tmp_path, grid, make_episode, index):
    with pytest.raises(StoreError, match=f"episode index must be a non-negative integer, got {index!r}"):
        write_episode(tmp_path / "s", make_episode(3, grid), grid=grid, index=index)
    assert not (tmp_path / "s" / "episodes").exists()


def test_read_refuses_an_array_of_another_dtype_than_the_contract(store, make_episode, grid):
    from drivewm.data.manifest import write_manifest
    from drivewm.data.store import write_episode_group

    path, _ = store
    ep = make_episode(4, grid, seed=5)
    ep["ego_speed"] = ep["ego_speed"].astype(np.float64)  # written around the validating writer
    m = read_manifest(path)
    m["episodes"].append(write_episode_group(path / "episodes", 2, ep))
    write_manifest(path, m)
    with pytest.raises(StoreError, match=r"ep_000002/ego_speed: dtype float64 \(manifest float64\), the data contract says float32"):
        EpisodeStore(path)
