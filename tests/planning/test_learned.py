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


@pytest.fixture(scope="module")
def micro_drivinggpt():
    """The DrivingGPT preset at micro size: 8 x 8 scene tokens of the micro tokenizer + 3 action tokens per frame."""
    from tests.planning.conftest import build_from_yaml

    torch.manual_seed(0)
    tok = build_from_yaml("tokenizer/occ_micro.yaml")
    world = build_from_yaml("world/drivinggpt_tiny.yaml", tokenizer_run="", vocab_size=64, token_shape=[8, 8],
                            dim=32, depth=1, heads=2)
    world.tokenizer = tok.eval().requires_grad_(False)
    return world.eval()


def _gpt_planner(world, horizon=3):
    from drivewm.planning.config import CEMConfig
    from drivewm.planning.factory import PlanConfig, build_planner
    from drivewm.sim import sim_preset

    sim = sim_preset("micro", lidar=False, camera=False, visibility=False)
    cfg = PlanConfig(context_frames=2, cem=CEMConfig(horizon=horizon))
    return build_planner("gpt", sim, cfg, TokenPlanningModel(world, context_frames=2), "token"), sim, cfg


def test_gpt_planner_drives_the_decoded_trajectory_of_its_own_action_tokens(micro_drivinggpt, micro_obs):
    from drivewm.geometry import integrate_steps, relative_steps
    from drivewm.planning.gpt_planner import controls_from_motion

    planner, sim, _ = _gpt_planner(micro_drivinggpt, horizon=4)
    plan = planner.plan(micro_obs)
    tok = micro_drivinggpt.action_tokenizer
    assert plan.shape == (4, 2) and planner.tokens.shape == (4, 3)
    # the trajectory is the decoded action tokens, integrated from the current pose
    torch.testing.assert_close(planner.trajectory, integrate_steps(tok.decode(planner.tokens).double())[1:].float())
    torch.testing.assert_close(plan, BOUNDS.clip(controls_from_motion(tok.decode(planner.tokens), micro_obs.speed, 0.5)))
    # ... and the tokens are the model's own greedy prediction from the observed frames
    context = micro_drivinggpt.encode(torch.as_tensor(micro_obs.occ)[None])
    past = relative_steps(torch.as_tensor(micro_obs.ego_pose, dtype=torch.float64))[None].float()
    direct, _ = micro_drivinggpt.plan(context, past, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(direct[0], planner.tokens)
    planner.reset(0)
    assert torch.equal(planner.plan(micro_obs), plan)  # the same seed replays the same plan


def test_controls_from_motion_make_the_bicycle_drive_the_motion():
    from drivewm.geometry import relative_steps
    from drivewm.planning.gpt_planner import controls_from_motion
    from drivewm.planning.kinematics import rollout_bicycle

    g = torch.Generator().manual_seed(0)
    actions = torch.stack([torch.rand(5, generator=g) * 4 - 2, torch.rand(5, generator=g) * 0.6 - 0.3], -1)
    for speed, acts in ((6.0, actions), (2.0, torch.tensor([[-8.0, 0.2], [0.0, 0.0], [3.0, -0.1]]))):
        poses, _ = rollout_bicycle(torch.tensor([0.0, 0.0, 0.0, speed]), acts[None], 0.5, 20.0)
        motion = relative_steps(torch.cat([torch.zeros(1, 3), poses[0]]).double()).float()
        controls = controls_from_motion(motion, speed, 0.5)
        again, _ = rollout_bicycle(torch.tensor([0.0, 0.0, 0.0, speed]), controls[None], 0.5, 20.0)
        torch.testing.assert_close(again, poses, atol=2e-4, rtol=0)
    torch.testing.assert_close(controls_from_motion(
        relative_steps(torch.cat([torch.zeros(1, 3), rollout_bicycle(torch.tensor([0.0, 0.0, 0.0, 6.0]), actions[None],
                                                                       0.5, 20.0)[0][0]]).double()).float(), 6.0, 0.5),
        actions, atol=2e-3, rtol=0)


def test_gpt_planner_is_scored_open_and_closed_loop_beside_the_baselines(micro_drivinggpt):
    from drivewm.planning.closed_loop import drive_closed_loop
    from drivewm.planning.factory import build_planner
    from drivewm.planning.open_loop import evaluate_open_loop, simulated_episodes

    planner, sim, cfg = _gpt_planner(micro_drivinggpt)
    episodes = simulated_episodes(sim, [9001], 8)
    res = evaluate_open_loop({"gpt": planner, "constant-velocity": build_planner("constant-velocity", sim, cfg)},
                             episodes, horizon=3, hz=sim.hz, max_speed=sim.max_speed, context_frames=2, stride=3)
    assert set(res) == {"expert", "gpt", "constant-velocity"}
    assert np.isfinite(res["gpt"]["l2_stp3"]["1s"]) and "avg" in res["gpt"]["collision_stp3"]
    out = drive_closed_loop({"gpt": planner}, sim, [1], 1.0, context_frames=2, needs_occ={"gpt"})
    assert out["summary"]["gpt"]["route_completion"] >= 0.0


def test_gpt_planner_needs_a_gpt_that_predicts_actions(micro_token_world):
    from drivewm.planning.factory import PlanConfig, build_planner
    from drivewm.sim import sim_preset

    sim = sim_preset("micro", lidar=False, camera=False, visibility=False)
    with pytest.raises(PlanningError, match="action tokens"):
        build_planner("gpt", sim, PlanConfig(), None)
    with pytest.raises(PlanningError, match="model.actions='condition'"):
        build_planner("gpt", sim, PlanConfig(), TokenPlanningModel(micro_token_world), "token")


def test_forecast_plan_gives_the_imagined_occupancy_and_cumulative_waypoints(micro_drivinggpt, micro_obs):
    """The Forecaster's planning form: the frames the GPT's own actions lead to, and their (x, y) summed."""
    from drivewm.geometry import relative_steps

    poses = torch.as_tensor(np.concatenate([micro_obs.ego_pose, [[6.0, 0.0, 0.0], [9.0, 0.0, 0.0]]]))[None]
    context = {"occ": torch.as_tensor(micro_obs.occ)[None], "ego_pose": poses.float()}  # future poses ride along
    occ, waypoints = micro_drivinggpt.forecast_plan(context, 2, generator=torch.Generator().manual_seed(3))
    tokens = micro_drivinggpt.encode(context["occ"])
    _, motion, frames = micro_drivinggpt.plan(tokens, relative_steps(poses[:, :2].double()).float(), 2,
                                              generator=torch.Generator().manual_seed(3), frames=True)
    assert occ.shape == (1, 2, 32, 32, 4) and torch.equal(occ, micro_drivinggpt.decode(frames))
    torch.testing.assert_close(waypoints, motion[..., :2].cumsum(1))
