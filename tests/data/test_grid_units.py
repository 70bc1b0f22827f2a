"""Valid episodes in what look like the wrong units are written, with a warning naming the key and the rule."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from drivewm.data.episode import MAX_SPEED, NORMALISED_MIN_FRAMES, unit_warnings
from drivewm.data.inspect import summarize
from drivewm.data.spec import resolve_grid
from drivewm.data.store import EpisodeStore, write_episode

GRID = resolve_grid({"shape": [32, 32, 2], "voxel_size": 2.0})  # 64 m long
HZ = 2.0


def drive(frames: int = 30, speed: float = 6.0) -> dict[str, np.ndarray]:
    """A car weaving at `speed` m/s, its actions in m/s^2 and rad, as the contract wants."""
    t = np.arange(frames) / HZ
    v = speed + 2.0 * np.sin(0.8 * t)                      # m/s, accelerating at up to 1.6 m/s^2
    x = np.concatenate([[0.0], np.cumsum(v[:-1] / HZ)])
    yaw = 0.2 * np.sin(0.3 * t)
    y = np.concatenate([[0.0], np.cumsum(v[:-1] * np.sin(yaw[:-1]) / HZ)])
    accel = np.gradient(v, 1 / HZ)
    steer = np.arctan(np.gradient(yaw, 1 / HZ) * 2.7 / v)
    occ = np.full((frames, 32, 32, 2), 17, np.uint8)
    return {"occ": occ, "ego_pose": np.stack([x, y, yaw], 1).astype(np.float32),
            "action": np.stack([accel, steer], 1).astype(np.float32)}


def test_an_honest_drive_raises_no_warning():
    ep = drive()
    assert np.abs(ep["action"][:, 0]).max() > 1.0
    assert unit_warnings(ep, GRID, HZ) == []


def test_actions_divided_into_unit_range_while_the_poses_accelerate_harder_are_flagged():
    ep = drive()
    ep["action"] = ep["action"] / np.abs(ep["action"]).max(0)  # normalised per column to [-1, 1]
    (msg,) = unit_warnings(ep, GRID, HZ, "ep7")
    assert msg.startswith("ep7: key 'action':") and "look normalised" in msg and "m/s^2" in msg
    assert "accelerate faster than 1.5 m/s^2" in msg or "sit at exactly +-1" in msg


def test_clipped_controls_are_flagged_but_a_short_or_gentle_episode_is_not():
    x = 6.0 * np.arange(30) / HZ  # constant speed: the poses need no acceleration
    pose = np.stack([x, 0 * x, 0 * x], 1).astype(np.float32)
    gentle = {"occ": drive()["occ"], "ego_pose": pose, "action": np.full((30, 2), 0.3, np.float32)}
    assert unit_warnings(gentle, GRID, HZ) == []  # |a| <= 1 alone is gentle driving, not a unit error
    every_third = np.where(np.arange(30) % 3 == 0, 1.0, 0.2).astype(np.float32)
    clipped = dict(gentle, action=np.stack([every_third, every_third], 1))
    (msg,) = unit_warnings(clipped, GRID, HZ)
    assert "acceleration and steering sit at exactly +-1" in msg
    (msg,) = unit_warnings(dict(gentle, action=np.stack([every_third, 0 * every_third], 1)), GRID, HZ)
    assert "acceleration sits at exactly +-1" in msg
    short = {k: v[: NORMALISED_MIN_FRAMES - 1] for k, v in clipped.items()}
    assert unit_warnings(short, GRID, HZ) == []


def test_a_pose_jump_and_a_yaw_in_degrees_are_flagged_with_the_frames():
    ep = drive()
    ep["ego_pose"][12:, 0] += 100.0  # 100 m in half a second
    msg, outrun = unit_warnings(ep, GRID, HZ)
    assert "farther than the grid is long" in outrun
    assert "moves at" in msg and "between frames 11 and 12 at 2 Hz" in msg and f"more than {MAX_SPEED:g} m/s" in msg
    ep = drive()
    ep["ego_pose"][:, 2] = np.degrees(ep["ego_pose"][:, 2])
    (msg,) = unit_warnings(ep, GRID, HZ)
    assert "turns at" in msg and "rad/s" in msg


def test_an_ego_outrunning_the_grid_within_the_horizon_is_flagged():
    ep = drive(speed=25.0)  # ~ 75 m in 3 s on a 64 m grid
    (msg,) = unit_warnings(ep, GRID, HZ)
    assert "travels up to" in msg and "in 3 s, farther than the grid is long (64 m)" in msg
    assert unit_warnings(ep, resolve_grid({"shape": [64, 64, 2], "voxel_size": 2.0}), HZ) == []


def test_write_episode_and_inspect_log_the_warning_and_keep_the_episode(tmp_path, caplog):
    ep = drive()
    ep["action"] = np.clip(ep["action"] / 3.0, -1, 1).astype(np.float32)
    ep["action"][::4] = 1.0
    with caplog.at_level(logging.WARNING, logger="drivewm"):
        write_episode(tmp_path / "s", ep, grid=GRID, hz=HZ)
    assert any("look normalised" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    store = EpisodeStore(tmp_path / "s")
    assert len(store) == 1
    with caplog.at_level(logging.WARNING, logger="drivewm"):
        summary = summarize(store)
    assert len(summary["unit_warnings"]) == 1 and "ep_000000: key 'action'" in summary["unit_warnings"][0]
    assert [r.getMessage() for r in caplog.records] == summary["unit_warnings"]


@pytest.mark.parametrize("hz", [2.0, 10.0])
def test_the_rules_follow_the_rate(hz):
    ep = drive(frames=40)
    # The same poses read at 10 Hz move five times faster: a 6 m/s drive becomes 30 m/s, 90 m in 3 s.
    found = unit_warnings(ep, GRID, hz)
    assert found == [] if hz == 2.0 else (len(found) == 1 and "farther than the grid is long" in found[0])
