"""Learned models behind the planning protocol and the gymnasium interface (untrained micro models)."""

import numpy as np
import pytest
import torch

from drivewm.planning.config import ActionBounds, CEMConfig, PlanningError
from drivewm.planning.costs import EmbeddingGoal, EmbeddingGoalCost, OccupancyCost
from drivewm.planning.env import WorldModelEnv
from drivewm.planning.learned import JepaPlanningModel, TokenPlanningModel
from drivewm.planning.mpc import RecedingHorizonPlanner
from drivewm.planning.optimizers import CEM
from drivewm.data.spec import grid_preset

BOUNDS = ActionBounds()


def test_jepa_rollout_is_batched_and_env_steps_agree(micro_jepa, micro_obs):
    m = JepaPlanningModel(micro_jepa, context_frames=2)
    m.observe(micro_obs)
    g = torch.Generator().manual_seed(0)
    acts = (torch.rand(3, 4, 2, generator=g) * 2 - 1) * torch.tensor([1.0, 0.5])  # inside the limits
    r = m.rollout(acts)
    assert r.embeddings.shape == (3, 4, 16, 16) and r.ego.shape == (3, 4, 3)
    alone = m.rollout(acts[1:2])
    torch.testing.assert_close(alone.embeddings[0], r.embeddings[1], atol=1e-5, rtol=1e-5)
    env = WorldModelEnv(m, context=micro_obs, bounds=BOUNDS, max_steps=4)
    env.reset(options={"observation": micro_obs})
    for k in range(4):
        obs, _, _, trunc, info = env.step(acts[1, k].numpy())
        np.testing.assert_allclose(obs["embedding"], r.embeddings[1, k].numpy(), atol=1e-5)
        np.testing.assert_allclose(info["ego"], r.ego[1, k].numpy(), atol=1e-5)
    assert trunc
    twin = env.clone()
    assert twin.actions == env.actions and twin.actions is not env.actions


def test_cem_through_jepa_reaches_a_reachable_goal_embedding(micro_jepa, micro_obs):
    m = JepaPlanningModel(micro_jepa, context_frames=2)
    m.observe(micro_obs)
    target = torch.tensor([[2.0, 0.3], [1.0, 0.3], [-1.0, -0.2]])
    goal = EmbeddingGoal(embedding=m.rollout(target[None]).embeddings[0, -1])
    cost = EmbeddingGoalCost()
    planner = RecedingHorizonPlanner(m, CEM(CEMConfig(horizon=3, samples=64, elites=6, iterations=6), BOUNDS), cost)
    plan = planner.plan(micro_obs, goal)
    best = float(cost(m.rollout(plan[None]), plan[None], goal)[0])
    g = torch.Generator().manual_seed(1)
    low, high = BOUNDS.tensors()
    rand = low + torch.rand(64, 3, 2, generator=g) * (high - low)
    rand_e = cost(m.rollout(rand), rand, goal)
    assert best < float(rand_e.quantile(0.1)), (best, rand_e.min())
    with pytest.raises(PlanningError, match="does not match"):
        planner.plan(micro_obs, EmbeddingGoal(embedding=torch.zeros(3, 3)))


def test_token_model_plans_on_decoded_occupancy(micro_token_world, micro_obs):
    m = TokenPlanningModel(micro_token_world, context_frames=2, seed=0)
    m.observe(micro_obs)
    acts = torch.zeros(2, 2, 2)
    r1 = m.rollout(acts)
    assert r1.occupancy.shape == (2, 2, 32, 32, 4) and r1.occupancy.dtype in (torch.int64, torch.uint8)
    cost = OccupancyCost(grid_preset("micro"))
    c = cost(r1, acts, micro_obs.route)
    assert c.shape == (2,) and torch.isfinite(c).all()
    env = WorldModelEnv(m, context=micro_obs, bounds=BOUNDS, max_steps=2, cost=cost, goal=micro_obs.route)
    env.reset(options={"observation": micro_obs})
    obs, reward, *_ = env.step(np.zeros(2, np.float32))
    assert obs["occ"].shape == (32, 32, 4) and np.isfinite(reward)


def test_bad_observation_and_model_errors(micro_jepa, micro_obs):
    m = JepaPlanningModel(micro_jepa, context_frames=3)
    with pytest.raises(PlanningError, match="needs 3 context frames"):
        m.observe(micro_obs)
    with pytest.raises(PlanningError, match="needs .encode"):
        JepaPlanningModel(torch.nn.Linear(2, 2))
    env = WorldModelEnv(JepaPlanningModel(micro_jepa, context_frames=2), context=micro_obs)
    with pytest.raises(PlanningError, match="observation"):
        env.reset(options={"observation": micro_obs.occ})
    with pytest.raises(PlanningError, match="action dim"):
        WorldModelEnv(JepaPlanningModel(micro_jepa), context=micro_obs, bounds=ActionBounds(low=(0.0,), high=(1.0,)))


def test_observed_safety_keeps_jepa_cem_off_the_obstacle_that_progress_alone_drives_into(micro_jepa, micro_obs):
    from drivewm.planning.costs import CostWeights, ObservedSafety

    m = JepaPlanningModel(micro_jepa, context_frames=2)
    grid = grid_preset("micro")
    w = CostWeights(goal_l1=0.0, progress=1.0, lateral=0.0, jerk=0.0, steer_rate=0.0)
    goal = EmbeddingGoal(embedding=torch.zeros(16, 16), route=torch.as_tensor(micro_obs.route))
    check = ObservedSafety(grid, CostWeights(near=0.0, offroad=0.0), steps=3)  # collisions only, x100 per step
    hits = {}
    for name, safety in (("progress only", None), ("with safety", ObservedSafety(grid, w, steps=3))):
        cost = EmbeddingGoalCost(w, shaping=True, safety=safety)
        planner = RecedingHorizonPlanner(m, CEM(CEMConfig(horizon=3, samples=64, elites=6, iterations=5), BOUNDS), cost)
        plan = planner.plan(micro_obs, goal)
        hits[name] = float(check(m.rollout(plan[None]))[0])
    # The obstacle sits 6.4-11.2 m ahead of an ego at 6 m/s: full throttle reaches it within 1.5 s.
    assert hits["progress only"] > 0 and hits["with safety"] == 0, hits


def test_tracked_agents_reach_the_safety_term_through_the_preset(micro_jepa, micro_obs):
    """PlanConfig.observed_safety_agents wires the constant-velocity check; the JEPA model hands the
    observation's tracked agents to every rollout, and a crossing car the snapshot misses is costed."""
    import dataclasses

    from drivewm.planning.factory import PlanConfig, build_planner
    from drivewm.sim import sim_preset

    sim = sim_preset("micro", lidar=False, camera=False, visibility=False)
    m = JepaPlanningModel(micro_jepa, context_frames=2)
    cfg = PlanConfig(observed_safety_steps=3, observed_safety_agents=True)
    planner = build_planner("cem", sim, cfg, m, "jepa")
    assert planner.cost.safety.use_agents and planner.cost.safety.steps == 3
    assert not build_planner("cem", sim, PlanConfig(observed_safety_steps=3), m, "jepa").cost.safety.use_agents
    clear = micro_obs.occ.copy()
    clear[..., 1:] = 17  # the road alone: nothing in the snapshot to hit
    crossing = np.array([[9.0, -7.0, np.pi / 2, 4.5, 2.0, 0.0, 7.0]], np.float32)  # on the ego's path in 1 s
    straight = torch.zeros(1, 3, 2)  # hold 6 m/s: x = 3, 6, 9 m
    m.observe(dataclasses.replace(micro_obs, occ=clear))  # no tracker
    r = m.rollout(straight)
    assert r.agents is None and planner.cost.safety(r).item() == 0.0
    m.observe(dataclasses.replace(micro_obs, occ=clear, agents=crossing))
    r = m.rollout(straight)
    torch.testing.assert_close(r.agents, torch.as_tensor(crossing))
    assert planner.cost.safety(r).item() >= 100.0
