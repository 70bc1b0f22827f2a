import numpy as np
import pytest

from drivewm.data.episode import (
    EpisodeError,
    actions_from_poses,
    episode_checksum,
    relative_poses,
    validate_episode,
)


def test_valid_episode_returns_frame_count(grid, make_episode):
    assert validate_episode(make_episode(6, grid), grid, "ep") == 6


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda e: e.pop("action"), "action", "missing"),
        (lambda e: e.pop("lidar_offsets"), "lidar_offsets", "together with 'lidar'"),
        (lambda e: e.__setitem__("occ", e["occ"].astype(np.int32)), "occ", "dtype must be uint8"),
        (lambda e: e.__setitem__("occ", e["occ"][:, :-1]), "occ", "axis 1 (X)"),
        (lambda e: e.__setitem__("action", e["action"][:-1]), "action", "(T)"),
        (lambda e: e.__setitem__("ego_pose", np.full_like(e["ego_pose"], np.nan)), "ego_pose", "NaN"),
        (lambda e: e["occ"].__setitem__((2, 0, 0, 0), 40), "occ", "class id 40 outside the class table"),
        (lambda e: e.__setitem__("wheels", np.zeros(3)), "wheels", "unknown key"),
        (lambda e: e["lidar"].__setitem__((0, 0), np.inf), "lidar", "non-finite"),
        (lambda e: e["ego_speed"].__setitem__(2, np.nan), "ego_speed", "1 non-finite (NaN/inf) speeds, first at index [2]"),
        (lambda e: e["route"].__setitem__((3, 1), np.inf), "route", "non-finite (NaN/inf) route points"),
        (lambda e: e["agents"].__setitem__((0, 0, 1), np.nan), "agents", "non-finite (NaN/inf) values in valid agent"),
        (lambda e: e["lidar_offsets"].__setitem__(-1, 3), "lidar_offsets", "end at the point count"),
        (lambda e: e["agents"].__setitem__((0, 0, 7), 99.0), "agents", "class"),
    ],
)
def test_bad_episode_names_source_key_and_problem(grid, make_episode, mutate, key, words):
    ep = make_episode(5, grid)
    ep["agents_valid"][0, 0] = True
    mutate(ep)
    with pytest.raises(EpisodeError) as e:
        validate_episode(ep, grid, "drive-07.npz")
    assert e.value.key == key and "drive-07.npz" in str(e.value) and words in str(e.value)


def test_unknown_class_reports_first_frame(grid, make_episode):
    ep = make_episode(5, grid)
    ep["occ"][3, 1, 1, 1] = 18
    with pytest.raises(EpisodeError, match="first at frame 3"):
        validate_episode(ep, grid)


def test_checksum_sees_one_changed_byte(grid, make_episode):
    ep = make_episode(4, grid)
    a = episode_checksum(ep)
    ep["occ"][1, 2, 3, 0] ^= 1
    assert episode_checksum(ep) != a


def test_relative_poses_known_answer():
    # ego at (10, 5) heading +90 deg (north); a point 2 m north is 2 m ahead, one 3 m east is 3 m right.
    pose = np.array([[10, 7, np.pi / 2], [10, 5, np.pi / 2], [13, 5, 0.0]], np.float32)
    rel = relative_poses(pose, 1)
    np.testing.assert_allclose(rel[1], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rel[0], [2, 0, 0], atol=1e-5)
    np.testing.assert_allclose(rel[2], [0, -3, -np.pi / 2], atol=1e-5)


def test_actions_from_poses_recover_bicycle_controls():
    # Integrate a kinematic bicycle (rear axle) finely with constant steer and acceleration, sample at 2 Hz.
    L, hz, steer, acc, dt = 2.588, 2.0, 0.05, 0.5, 1e-4
    x = y = yaw = 0.0
    v = 8.0
    poses = []
    for k in range(int(6 / dt) + 1):
        if k % int(1 / (hz * dt)) == 0:
            poses.append([x, y, yaw])
        x += v * np.cos(yaw) * dt
        y += v * np.sin(yaw) * dt
        yaw += v / L * np.tan(steer) * dt
        v += acc * dt
    act = actions_from_poses(np.array(poses), hz, L)
    # finite differences over 0.5 s are chords of an arc: a few percent off the instantaneous values
    np.testing.assert_allclose(act[:-1, 1], steer, rtol=0.05)
    np.testing.assert_allclose(act[:-2, 0], acc, rtol=0.05)


def test_non_finite_values_in_empty_agent_slots_are_allowed(grid, make_episode):
    ep = make_episode(5, grid)
    ep["agents_valid"][:] = False
    ep["agents_valid"][0, 0] = True
    ep["agents"][1, 2, :] = np.nan  # an empty slot holds anything
    assert validate_episode(ep, grid, "ep") == 5
