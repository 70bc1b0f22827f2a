"""The headless core of `drivewm play`: the ego moves as the simulator moves it, keys move the levers the right
way, the context is the evaluation loop's, frames keep the store's layout, sampling is seeded, inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.baselines import CopyLastLidar
from drivewm.baselines.camera import EgoWarpCamera
from drivewm.config import ConfigError
from drivewm.data.config import DataConfig
from drivewm.data.manifest import StoreError
from drivewm.data.store import EpisodeStore
from drivewm.data.windows import WindowDataset
from drivewm.errors import DrivewmError
from drivewm.evaluation import load_forecaster
from drivewm.forecaster import STATIC_KEYS, split_window
from drivewm.geometry import to_frame
from drivewm.play import Session, parse_script
from drivewm.play.render import EGO_RGB, ego_cells

PAST = 3


def _drive(session: Session, keys: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames after each key and the poses [len(keys) + 1, 3] from the start, in the start frame's ego frame."""
    start = session.pose
    frames, poses = [], [np.zeros(3)]
    for key in parse_script(keys):
        frames.append(session.press(key))
        poses.append(to_frame(session.pose[None], start)[0])
    return frames, np.stack(poses)


def test_recorded_actions_move_the_ego_to_the_recorded_poses(store, voxel_run):
    """The session's ego kinematics are the simulator's: replaying the expert's actions retraces its poses."""
    session = Session(load_forecaster(voxel_run), store, past=PAST)
    recorded = EpisodeStore(store).read_window(0, ["ego_pose", "action"], 0, 10)
    for t in range(PAST - 1, 9):
        session.step(tuple(recorded["action"][t]))
        np.testing.assert_allclose(session.pose[:2], recorded["ego_pose"][t + 1, :2], atol=2e-3)
        assert abs(session.pose[2] - recorded["ego_pose"][t + 1, 2]) < 1e-4
    assert session.steps == 10 - PAST


def test_keys_accelerate_brake_and_steer_the_right_way(store, voxel_run):
    model = load_forecaster(voxel_run)
    session = Session(model, store, past=PAST)
    v0 = session.speed
    _, ahead = _drive(session, "www")
    steps = np.linalg.norm(np.diff(ahead[:, :2], axis=0), axis=1)
    assert np.all(ahead[1:, 0] > 0) and np.all(np.diff(steps) > 0)  # forward, each step longer than the last
    assert np.abs(ahead[:, 1:]).max() < 1e-6  # the wheel is straight
    assert session.speed == pytest.approx(v0 + (1 + 2 + 3) * 1.0 / 2.0)  # pedal 1, 2, 3 m/s^2 for 0.5 s each
    assert session.controls.action == (3.0, 0.0)

    left = _drive(Session(model, store, past=PAST), "aaa")[1]
    right = _drive(Session(model, store, past=PAST), "ddd")[1]
    assert np.all(np.diff(left[:, 2]) > 0) and left[-1, 1] > 0.5  # yaw grows: a turn to the left (+y)
    np.testing.assert_allclose(right * [1, -1, -1], left, atol=1e-9)  # the mirror image

    session.reset()
    _drive(session, "s" * 12)
    assert session.controls.accel == -session.limits.max_brake  # the pedal stops at the store's brake limit
    assert session.speed == 0.0
    before = session.pose
    _drive(session, ".")
    np.testing.assert_array_equal(session.pose, before)  # stopped: holding the brake stays put


@pytest.mark.parametrize("modality", ["occ", "camera"])
def test_context_is_the_evaluation_loops_window(store, camera_store, voxel_run, modality):
    """With the recorded action, the first step hands the model what `split_window` of the store's window holds
    (the camera's calibration included)."""
    data, model = (store, load_forecaster(voxel_run)) if modality == "occ" else (camera_store, EgoWarpCamera())
    session = Session(model, data, past=PAST, start=2)
    recorded = EpisodeStore(data).read_window(0, ["action", "ego_pose"], 2, 3 + PAST)
    session.controls.accel, session.controls.steer = map(float, recorded["action"][PAST - 1])
    context = session.context(recorded["ego_pose"][PAST].astype(np.float64))
    static = list(STATIC_KEYS) if modality == "camera" else []
    window = WindowDataset(DataConfig(path=str(data), past=PAST, future=1, keys=[modality, "action", "ego_pose", *static],
                                      val_fraction=0.0), "train")[2]
    want = split_window({k: v[None] for k, v in window.items()}, PAST)[0]
    for key in (modality, *static):
        assert torch.equal(context[key], want[key])
    assert torch.equal(context["action"][:, :PAST], want["action"][:, :PAST])
    for key in ("ego_pose", "rel_pose"):
        torch.testing.assert_close(context[key], want[key], atol=1e-4, rtol=0)


def test_frames_keep_the_store_layout_and_the_ego_is_drawn(store, voxel_run):
    session = Session(load_forecaster(voxel_run), store, past=PAST)
    frames, _ = _drive(session, "wwadd")
    grid = EpisodeStore(store).grid
    assert all(f.shape == grid.shape and f.dtype == np.uint8 for f in frames)
    image = session.image()
    assert image.shape == (*grid.shape[:2], 3) and image.dtype == np.uint8
    ego = ego_cells(grid)[::-1, ::-1]
    assert ego.sum() >= 1 and np.all(image[ego] == EGO_RGB)
    assert len(session.images) == 1 + 5


def test_same_keys_and_seed_give_the_same_frames(store, gpt_run):
    """The GPT samples its tokens: one seed gives one drive (also after a reset), another seed another."""
    model = load_forecaster(gpt_run)
    first = _drive(Session(model, store, past=PAST, seed=0), "wwa")[0]
    again = Session(model, store, past=PAST, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, _drive(again, "wwa")[0]))
    again.reset()
    assert all(np.array_equal(a, b) for a, b in zip(first, _drive(again, "wwa")[0]))
    other = _drive(Session(model, store, past=PAST, seed=1), "wwa")[0]
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def _shift(before: np.ndarray, after: np.ndarray) -> int:
    """The horizontal shift (pixels, + right) that best maps `before` onto `after`, borders left out."""
    errs = {d: np.abs(np.roll(before.astype(float), d, axis=1) - after)[:, 6:-6].mean() for d in range(-6, 7)}
    return min(errs, key=errs.get)


def test_camera_frames_are_shown_as_they_are(camera_store):
    """A camera forecaster (the homography-warped copy reads the store's calibration from the context): turning
    left moves the picture right, the more the further the wheel is turned; turning right moves it left."""
    session = Session(EgoWarpCamera(), camera_store, past=2)
    start = session.frame
    turned = session.press("a")
    assert turned.shape == start.shape == (16, 32, 3) and turned.dtype == np.uint8
    assert np.array_equal(session.image(), turned)
    assert 0 < _shift(start, turned) < _shift(turned, session.press("a"))
    right = Session(EgoWarpCamera(), camera_store, past=2).press("d")
    assert _shift(start, right) < 0


def test_bad_inputs_are_one_clear_error(store, camera_store, voxel_run):
    voxel = load_forecaster(voxel_run)
    with pytest.raises(StoreError, match=r"voxel_unet \(voxel_unet\) forecasts 'occ' frames \(occupancy\), but .*camera_store holds none"):
        Session(voxel, camera_store)
    with pytest.raises(DrivewmError, match="occupancy and camera world models; this one forecasts 'lidar'"):
        Session(CopyLastLidar(), store)
    with pytest.raises(ConfigError, match=r"start=9: episode .* has 10 frames, so a context of past=3 frames starts at 0\.\.7"):
        Session(voxel, store, past=3, start=9)
    with pytest.raises(ConfigError, match="episode=4: .* has episodes 0..0"):
        Session(voxel, store, episode=4)
    with pytest.raises(DrivewmError, match="ego_warp_camera cannot forecast from .*store: ego_warp_camera needs "
                                           "'camera_intrinsics'"):
        Session(EgoWarpCamera(), store).press("w")  # a store without the camera's calibration
    with pytest.raises(ConfigError, match=r"script: unknown key 'x' at position 2"):
        parse_script("wax")
    assert parse_script("WaD.r") == ["w", "a", "d", ".", "r"]
