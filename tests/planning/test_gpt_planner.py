"""The 'gpt' planner (DrivingGPT): a GPT world model's own predicted action tokens as the plan, through the
planner factory, open- and closed-loop evaluation, and the Forecaster's planning form."""

import numpy as np
import pytest
import torch

from drivewm.planning.config import ActionBounds, PlanningError
from drivewm.planning.learned import TokenPlanningModel

BOUNDS = ActionBounds()


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
