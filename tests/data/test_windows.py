import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from drivewm.data.config import DataConfig
from drivewm.data.episode import relative_poses
from drivewm.data.manifest import StoreError
from drivewm.data.spec import grid_preset
from drivewm.data.store import EpisodeWriter
from drivewm.data.windows import WindowDataset, build_dataset, dataset_grid, driving_command, split_episodes
from drivewm.errors import DrivewmError

LENGTHS = (5, 7, 3, 6)


@pytest.fixture(scope="module")
def store(tmp_path_factory, make_episode):
    grid, path = grid_preset("micro"), tmp_path_factory.mktemp("windows") / "w"
    eps = [make_episode(T, grid, seed=i) for i, T in enumerate(LENGTHS)]
    with EpisodeWriter(path, grid=grid) as w:
        for ep in eps:
            w.write(ep)
    return path, eps


def cfg(path, **kw):
    base = dict(path=str(path), past=2, future=2, keys=["occ", "action", "ego_pose", "camera", "lidar"], val_fraction=0.25)
    return DataConfig(**{**base, **kw})


def test_windows_stay_inside_episodes(store):
    path, eps = store
    ds = WindowDataset(cfg(path), "train")  # episodes 0..2; T = 4: 2 + 4 + 0 windows
    assert len(ds) == 6
    assert [ds.locate(i) for i in range(6)] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    for i in range(len(ds)):
        ep, s = ds.locate(i)
        item = ds[i]
        assert item["occ"].dtype == torch.uint8 and item["occ"].shape == (4, 32, 32, 4)
        np.testing.assert_array_equal(item["occ"].numpy(), eps[ep]["occ"][s : s + 4])
        np.testing.assert_array_equal(item["action"].numpy(), eps[ep]["action"][s : s + 4])
        np.testing.assert_allclose(item["rel_pose"].numpy(), relative_poses(eps[ep]["ego_pose"][s : s + 4], 1))
    with pytest.raises(IndexError):
        ds[6]


def test_stride_and_val_split(store):
    path, _ = store
    assert list(split_episodes(4, 0.25, "val")) == [3] and list(split_episodes(1, 0.5, "val")) == []
    assert list(split_episodes(2, 0.01, "val")) == [1]
    assert len(WindowDataset(cfg(path, stride=2), "train")) == 1 + 2
    every = WindowDataset(cfg(path, val_fraction=0.0), "train")  # the 3-frame episode 2 has no window
    assert len(every) == 2 + 4 + 0 + 3 and every.locate(6) == (3, 0) and every.locate(5) == (1, 3)
    val = build_dataset(cfg(path), "val")
    assert val.episode_ids == [3] and len(val) == 3
    assert dataset_grid(cfg(path)).shape == grid_preset("micro").shape


def test_rel_pose_is_zero_at_current_frame(store):
    path, _ = store
    item = WindowDataset(cfg(path, past=3, future=1), "train")[0]
    np.testing.assert_allclose(item["rel_pose"][2].numpy(), 0.0, atol=1e-6)


def test_lidar_padding_and_counts(store):
    path, eps = store
    ds = WindowDataset(cfg(path, lidar_max_points=10), "train")
    item = ds[2]  # episode 1, frames 0..3
    off = eps[1]["lidar_offsets"]
    counts = np.minimum(np.diff(off)[:4], 10)
    assert item["lidar"].shape == (4, 10, 4)
    np.testing.assert_array_equal(item["lidar_count"].numpy(), counts)
    for t in range(4):
        frame = eps[1]["lidar"][off[t] : off[t + 1]]
        if len(frame) <= 10:
            np.testing.assert_array_equal(item["lidar"][t, : len(frame)].numpy(), frame)
        assert not item["lidar"][t, counts[t]:].any()
    full = WindowDataset(cfg(path), "train")  # default pad: the store's largest frame
    assert full.lidar_points == max(int(np.diff(e["lidar_offsets"]).max()) for e in eps)


def test_dataloader_workers_match_single_process(store):
    path, _ = store
    ds = WindowDataset(cfg(path), "train")
    one = list(DataLoader(ds, batch_size=2, num_workers=0))
    two = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k])
    assert one[0]["occ"].shape == (2, 4, 32, 32, 4) and one[0]["rel_pose"].shape == (2, 4, 3)


def test_distributed_sampler_partitions_windows(store):
    path, _ = store
    ds = WindowDataset(cfg(path), "train")
    parts = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(len(ds)))


def test_bad_config_errors(store, tmp_path, grid, make_episode):
    path, _ = store
    EpisodeWriter(tmp_path / "nocam", grid=grid).write(make_episode(5, grid, camera=False))
    with pytest.raises(StoreError, match=r"nocam/manifest\.json: data\.keys asks for 'camera', which not every episode has"):
        WindowDataset(cfg(tmp_path / "nocam"), "train")
    with pytest.raises(ValueError, match="'wheels' is not a per-frame key"):
        WindowDataset(cfg(path, keys=["occ", "wheels"]), "train")
    with pytest.raises(ValueError, match="'route' is not a per-frame key"):
        WindowDataset(cfg(path, keys=["route"]), "train")
    with pytest.raises(StoreError, match="manifest.json: no training window of 12 frames.*longest training episode has 7"):
        WindowDataset(cfg(path, past=6, future=6), "train")
    with pytest.raises(ValueError, match="split must be one of"):
        WindowDataset(cfg(path), "test")
    with pytest.raises(StoreError, match="not a directory"):
        WindowDataset(cfg(path / "nope"), "train")
    EpisodeWriter(tmp_path / "empty", grid=grid)
    with pytest.raises(StoreError, match=r"empty/manifest\.json: the store has no episodes"):
        WindowDataset(cfg(tmp_path / "empty"), "train")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, make_episode):
    """Episodes of 14, 20, 13 and 16 frames: OccWorld's windows (5 + 6 frames, 12 read) fit 2, 8, 1 and 4 times."""
    grid, path = grid_preset("micro"), tmp_path_factory.mktemp("scenes") / "s"
    eps = [make_episode(T, grid, seed=i, camera=False, lidar=False) for i, T in enumerate((14, 20, 13, 16))]
    with EpisodeWriter(path, grid=grid) as w:
        for ep in eps:
            w.write(ep)
    return path, eps


def test_evaluation_visits_l_minus_12_windows_of_each_listed_scene(scenes, tmp_path):
    from drivewm.data.manifest import read_manifest
    from drivewm.evaluation.forecast import _windows

    path, eps = scenes
    names = [e["name"] for e in read_manifest(path)["episodes"]]
    (tmp_path / "val.txt").write_text(f"# held out\n{names[3]}\n\n{names[1]}\n")
    (tmp_path / "splits.yaml").write_text(f"train: [{names[0]}, {names[2]}]\nval: val.txt\n")
    full, ds = _windows(str(path), 5, 6, "val", 0, "occ", str(tmp_path / "splits.yaml"), end_margin=2)
    assert full.episode_ids == [3, 1]
    lengths = {3: 16, 1: 20}
    want = [(e, s) for e in (3, 1) for s in range(lengths[e] - 12)]
    assert len(ds) == sum(L - 12 for L in lengths.values()) and [ds.locate(i) for i in range(len(ds))] == want
    train = WindowDataset(DataConfig(path=str(path), past=5, future=6, keys=["occ"], end_margin=2,
                                     splits=str(tmp_path / "splits.yaml")), "train")
    assert train.episode_ids == [0, 2] and len(train) == 2 + 1
    engine_split = build_dataset(train.cfg, "train")  # the dataset `drivewm train` reads takes the same lists
    assert engine_split.episode_ids == [0, 2]
    # Without a list the last 10 % stay the validation split, as before.
    assert WindowDataset(DataConfig(path=str(path), past=5, future=6, keys=["occ"]), "val").episode_ids == [3]
    (tmp_path / "bad.yaml").write_text("val: [no_such_scene]\n")
    with pytest.raises(DrivewmError, match="no_such_scene"):
        WindowDataset(DataConfig(path=str(path), keys=["occ"], splits=str(tmp_path / "bad.yaml")), "val")


def test_windows_carry_the_command_of_the_whole_episode(scenes):
    path, eps = scenes
    ds = WindowDataset(DataConfig(path=str(path), past=2, future=2, keys=["occ"], val_fraction=0.0), "train")
    for i in (0, 5, len(ds) - 1):
        ep, s = ds.locate(i)
        want = driving_command(eps[ep]["ego_pose"])[s : s + 4]  # from frames past the window's end
        np.testing.assert_array_equal(ds[i]["command"].numpy(), want)
