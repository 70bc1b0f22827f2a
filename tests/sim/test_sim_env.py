"""DrivingEnv: gymnasium conformance, clone independence, statistics; SimConfig validation."""

from __future__ import annotations

import numpy as np
import pytest

from gymnasium.utils.env_checker import check_env

from drivewm.errors import ConfigError
from drivewm.sim import DrivingEnv, ExpertDriver, SimConfig, sim_preset


def _cfg(**kw):
    return sim_preset("micro", episode_steps=6, lidar=False, **kw)


def test_check_env_passes():
    check_env(DrivingEnv(_cfg()), skip_render_check=True)


def test_clone_is_an_independent_perfect_model():
    env = DrivingEnv(_cfg(camera=False))
    env.reset(seed=4)
    expert = ExpertDriver()
    for _ in range(2):
        env.step(expert.act(env))
    twin = env.clone()
    actions = [np.array([1.0, 0.1], np.float32), np.array([-2.0, -0.2], np.float32)]
    outs = [[e.step(a) for a in actions] for e in (env, twin)]
    for (o1, r1, *_), (o2, r2, *_) in zip(*outs):
        assert r1 == r2 and all(np.array_equal(o1[k], o2[k]) for k in o1)
    pose = env.scenario.ego.pose().copy()
    twin.step(np.array([3.0, 0.5], np.float32))  # stepping the twin leaves the original alone
    np.testing.assert_array_equal(env.scenario.ego.pose(), pose)


def test_statistics_and_termination():
    env = DrivingEnv(_cfg(camera=False, visibility=False))
    obs, info = env.reset(seed=7)
    assert info["route_completion"] == 0.0 and info["distance"] == 0.0
    assert obs["route"].shape == (16, 2) and np.all(np.diff(obs["route"][:, 0]) >= -1e-3)  # ahead of the ego
    expert, done, steps = ExpertDriver(), False, 0
    while not done:
        obs, reward, term, trunc, info = env.step(expert.act(env))
        done, steps = term or trunc, steps + 1
    assert steps == 6 and 0 < info["route_completion"] <= 1 and info["distance"] > 5
    assert info["collisions"] == 0 and info["jerk"] >= 0 and info["steer_rate"] >= 0
    env = DrivingEnv(_cfg(camera=False, visibility=False, layouts=("straight",)))
    env.reset(seed=7)
    for _ in range(6):  # full throttle into a 17 m radius turn: off a straight road within 3 s
        *_, info = env.step(np.array([4.0, 0.15]))
    assert info["offroad"] + info["collisions"] > 0 and info["steer_rate"] > 0


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="hz"):
        SimConfig(hz=0)
    with pytest.raises(ValueError, match="layouts"):
        SimConfig(layouts=("spiral",))
    with pytest.raises(ValueError, match="lidar_spec.dropout"):
        sim_preset("tiny", lidar_spec=sim_preset("tiny").lidar_spec.__class__(dropout=1.5))
    with pytest.raises(ValueError, match="grid"):
        SimConfig(grid="huge")
    with pytest.raises(ConfigError, match="valid: occ3d"):
        sim_preset("nope")
    env = DrivingEnv(_cfg(camera=False, visibility=False))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([np.nan, 0.0]))
    from drivewm.sim import simulate_episode
    with pytest.raises(ValueError, match="frames"):
        simulate_episode(_cfg(), seed=0, frames=0)
    with pytest.raises(ValueError, match="seed"):
        simulate_episode(_cfg(), seed=-1, frames=2)
