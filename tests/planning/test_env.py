"""Both gymnasium environments pass gymnasium's own checker; WorldModelEnv steps are the model's rollouts."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from drivewm.data.spec import grid_preset
from drivewm.dynamics.gpt import GPTWorldConfig
from drivewm.planning import WORLD_MODEL_GYM_ID
from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.costs import OccupancyCost
from drivewm.planning.env import WorldModelEnv
from drivewm.planning.learned import JepaPlanningModel, TokenPlanningModel
from drivewm.registry import build_model
from drivewm.sim import GYM_ID as DRIVING_GYM_ID
from drivewm.sim import sim_preset
from drivewm.tokenizers.bev_cnn import BevCnnConfig
from drivewm.tokenizers.occ import OccTokenizerConfig
from drivewm.tokenizers.quantizer import QuantizerConfig


@pytest.fixture(scope="module")
def token_world():
    """A random-init GPT world model (micro grid, 8 x 8 tokens of a 64-code tokenizer), sampling at temperature 1."""
    torch.manual_seed(0)
    tok = build_model(OccTokenizerConfig(grid="micro", class_dim=4, z_channels=8,
                                         cnn=BevCnnConfig(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False),
                                         quantizer=QuantizerConfig(kind="vq", codebook_size=64)))
    world = build_model(GPTWorldConfig(vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, max_frames=8))
    world.tokenizer = tok.eval().requires_grad_(False)
    return world.eval()


def strict_check(env: gym.Env) -> bool:
    """gymnasium's env checker with every warning an error, except its advice to normalise Box actions
    (both envs keep physical units: accel m/s^2, steer rad); True when it passes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space")
        check_env(env)
    return True


def test_driving_env_passes_the_gymnasium_checker():
    env = gym.make(DRIVING_GYM_ID, cfg=sim_preset("micro", lidar=False, camera=False, visibility=False, episode_steps=4))
    assert strict_check(env.unwrapped)


def test_world_model_env_passes_the_gymnasium_checker(token_world, micro_obs, micro_jepa):
    env = gym.make(WORLD_MODEL_GYM_ID, model=TokenPlanningModel(token_world, context_frames=2), context=micro_obs)
    assert isinstance(env.unwrapped, WorldModelEnv)
    assert env.observation_space["occ"] == gym.spaces.Box(0, 17, (32, 32, 4), np.uint8)
    # The data contract's action box (accel m/s^2, steer rad): the simulator's own.
    assert env.action_space == gym.make(DRIVING_GYM_ID).action_space
    np.testing.assert_array_equal(env.action_space.low, np.array([-8.0, -0.6], np.float32))
    assert strict_check(env.unwrapped)
    jepa = gym.make(WORLD_MODEL_GYM_ID, model=JepaPlanningModel(micro_jepa, context_frames=2), context=micro_obs)
    assert jepa.observation_space["embedding"].shape == (16, 16)
    assert strict_check(jepa.unwrapped)


def test_token_env_steps_are_the_models_rollout(token_world, micro_obs):
    """Known answer: each step's frame is frame k of the model's rollout of the executed actions, sampled
    with the episode's seed; the rewards of an episode sum to minus the OccupancyCost of the sequence."""
    model = TokenPlanningModel(token_world, context_frames=2)
    cost = OccupancyCost(grid_preset("micro"))
    env = WorldModelEnv(model, context=micro_obs, max_steps=3, cost=cost, terminate_on_collision=False)
    obs, info = env.reset(seed=7)
    np.testing.assert_array_equal(obs["occ"], micro_obs.occ[-1])
    np.testing.assert_allclose(obs["ego_state"], [6.0, 0.0, 0.0, 0.0])
    actions = torch.tensor([[1.0, 0.1], [-2.0, 0.0], [9.0, -1.0]])  # the last is clipped to (4, -0.6)
    frames, rewards = [], []
    for k in range(3):
        obs, reward, terminated, truncated, info = env.step(actions[k].numpy())
        frames.append(obs["occ"])
        rewards.append(reward)
    assert truncated and not terminated
    executed = ActionBounds().clip(actions)[None]  # [1, 3, 2]
    model.generator.manual_seed(env.rollout_seed)
    r = model.rollout(executed)
    for k in range(3):
        np.testing.assert_array_equal(frames[k], r.occupancy[0, k].numpy())
    np.testing.assert_allclose(info["ego"], r.ego[0, -1].numpy(), atol=1e-6)
    np.testing.assert_allclose(obs["ego_state"][:3], [float(r.speed[0, -1]), 4.0, -0.6], atol=1e-6)
    np.testing.assert_allclose(sum(rewards), -float(cost(r, executed, micro_obs.route)[0]), rtol=1e-5)
    # A different episode seed samples a different future from the same context and actions.
    model.generator.manual_seed(env.rollout_seed + 1)
    assert not torch.equal(model.rollout(executed).occupancy, r.occupancy)


def test_jepa_env_steps_are_the_models_rollout_and_clone_is_independent(micro_jepa, micro_obs):
    model = JepaPlanningModel(micro_jepa, context_frames=2)
    env = WorldModelEnv(model, context=micro_obs, max_steps=4)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs["embedding"], model.encode(micro_obs.occ[-1:])[0].numpy())
    acts = torch.tensor([[1.0, 0.2], [0.5, -0.1], [-1.0, 0.0]])
    for k in range(2):
        obs, reward, *_ = env.step(acts[k].numpy())
        assert reward == 0.0  # no cost given: an embedding model has no default reward
    twin = env.clone()
    twin_obs, *_ = twin.step(acts[2].numpy())
    assert len(env.actions) == 2 and len(twin.actions) == 3
    r = model.rollout(acts[None])
    np.testing.assert_allclose(obs["embedding"], r.embeddings[0, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(twin_obs["embedding"], r.embeddings[0, 2].numpy(), atol=1e-5)


def test_reset_draws_contexts_from_a_store(token_world, tmp_path):
    from drivewm.sim import simulate_episode
    from drivewm.data.store import write_episode

    cfg = sim_preset("micro", lidar=False, camera=False, visibility=False)
    for seed in (0, 1):
        write_episode(tmp_path / "store", simulate_episode(cfg, seed, 6), grid=cfg.grid_spec, hz=cfg.hz)
    env = gym.make(WORLD_MODEL_GYM_ID, model=TokenPlanningModel(token_world, context_frames=2),
                   store=tmp_path / "store", max_steps=2).unwrapped
    seen = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        ctx = env.observation
        assert ctx.occ.shape == (2, 32, 32, 4)
        np.testing.assert_array_equal(obs["occ"], ctx.occ[-1])
        seen.add(ctx.occ.tobytes())
        again, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(again["occ"], obs["occ"])  # a seed names one context
    assert len(seen) > 1
    assert strict_check(env)


def test_bad_inputs_raise_planning_errors(token_world, micro_obs, micro_jepa):
    model = TokenPlanningModel(token_world, context_frames=2)
    with pytest.raises(PlanningError, match="exactly one source"):
        WorldModelEnv(model)
    with pytest.raises(PlanningError, match="action dim"):
        WorldModelEnv(model, context=micro_obs, bounds=ActionBounds(low=(0.0,), high=(1.0,)))
    env = WorldModelEnv(model, context=micro_obs)
    with pytest.raises(PlanningError, match="before reset"):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=0)
    with pytest.raises(PlanningError, match="finite numbers"):
        env.step(np.array([np.nan, 0.0], np.float32))
    with pytest.raises(PlanningError, match="PlanningObservation"):
        env.reset(options={"observation": micro_obs.occ})
