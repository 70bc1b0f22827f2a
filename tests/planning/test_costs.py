"""Costs against hand-computed answers: route progress, footprint collisions, the embedding L1 energy, bad goals."""

import numpy as np
import pytest
import torch

from drivewm.data.spec import FREE_ID, class_id, grid_preset
from drivewm.planning.config import PlanningError
from drivewm.planning.costs import (
    CostWeights,
    EmbeddingGoal,
    EmbeddingGoalCost,
    OccupancyCost,
    comfort,
    comfort_cost,
    route_progress,
)
from drivewm.planning.mpc import Rollout


def test_route_progress_on_an_l_shaped_route():
    route = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    pts = torch.tensor([[4.0, 1.0], [12.0, 5.0], [-3.0, 0.0]])
    arc, lat = route_progress(pts, route)
    torch.testing.assert_close(arc, torch.tensor([4.0, 15.0, 0.0]))
    torch.testing.assert_close(lat, torch.tensor([1.0, 2.0, 3.0]))


def test_comfort_terms():
    a = torch.tensor([[[0.0, 0.0], [1.0, 0.1], [1.0, 0.3]]])  # accel steps 0->1->1, steer 0->0.1->0.3
    jerk, steer = comfort(a, dt=0.5)
    torch.testing.assert_close(jerk, torch.tensor([(2.0**2 + 0.0) / 2]))
    torch.testing.assert_close(steer, torch.tensor([(0.2**2 + 0.4**2) / 2]))
    w = CostWeights(jerk=1.0, steer_rate=10.0, accel=0.5)
    r = Rollout(ego=torch.zeros(1, 3, 3), speed=torch.zeros(1, 3))
    torch.testing.assert_close(comfort_cost(a, 0.5, r, w), jerk + 10.0 * steer + 0.5 * torch.tensor([2.0 / 3]))


def test_lateral_acceleration_beyond_the_comfort_bound():
    from drivewm.planning.costs import LAT_ACCEL_LIMIT, lateral_acceleration

    # Sample 0 turns 0.1 rad per 0.5 s step at 10 m/s: 2 m/s^2, inside the bound. Sample 1 turns
    # 0.5 rad per step at 15 m/s: 15 m/s^2. Sample 2 turns right as hard, then straightens.
    yaw = torch.tensor([[0.1, 0.2, 0.3], [0.5, 1.0, 1.5], [-0.5, -1.0, -1.0]])
    ego = torch.zeros(3, 3, 3)
    ego[..., 2] = yaw
    speed = torch.tensor([[10.0] * 3, [15.0] * 3, [15.0] * 3])
    r = Rollout(ego=ego, speed=speed)
    torch.testing.assert_close(lateral_acceleration(r, 0.5), torch.tensor([[2.0] * 3, [15.0] * 3, [-15.0, -15.0, 0.0]]))
    w = CostWeights(jerk=0.0, steer_rate=0.0, accel=0.0, lat_accel=2.0)
    excess = 15.0 - LAT_ACCEL_LIMIT
    expected = torch.tensor([0.0, 2.0 * excess**2, 2.0 * excess**2 * 2 / 3])
    torch.testing.assert_close(comfort_cost(torch.zeros(3, 3, 2), 0.5, r, w), expected)


def _grid_with(grid, cells):
    occ = torch.full(grid.shape, FREE_ID, dtype=torch.uint8)
    occ[..., 0] = class_id("driveable_surface")
    for (x, y), cid in cells.items():
        occ[x, y, 2] = cid
    return occ


def test_occupancy_cost_sees_a_car_in_the_footprint_and_not_one_far_away():
    grid = grid_preset("tiny")  # 0.8 m voxels, ego (rear axle) at the centre of the grid
    cost = OccupancyCost(grid, CostWeights(near=0.0, jerk=0.0, steer_rate=0.0, progress=0.0))
    ix = int((0.0 + 1.342 - grid.lower[0]) / grid.voxel_size)  # the box centre, 1.342 m ahead of the axle
    iy = int((0.0 - grid.lower[1]) / grid.voxel_size)
    car = class_id("car")
    hit = _grid_with(grid, {(ix, iy): car})
    clear = _grid_with(grid, {(ix + 20, iy): car})
    behind = _grid_with(grid, {(ix - 5, iy): car})  # 4 m behind the box centre: behind the rear bumper
    occ = torch.stack([hit, clear, behind])[:, None]  # [S=3, H=1, X, Y, Z]
    terms = cost.terms(occ)
    assert terms["collision"][:, 0].tolist() == [True, False, False]
    assert terms["offroad"].abs().max() == 0
    ego = torch.zeros(3, 1, 3)
    c = cost(Rollout(ego=ego, speed=torch.zeros(3, 1), occupancy=occ), torch.zeros(3, 1, 2), None)
    assert c.tolist() == [100.0, 0.0, 0.0]


def test_offroad_fraction():
    grid = grid_preset("tiny")
    cost = OccupancyCost(grid)
    occ = torch.full(grid.shape, FREE_ID, dtype=torch.uint8)
    occ[..., 0] = class_id("sidewalk")
    assert cost.terms(occ[None, None])["offroad"].item() == 1.0
    occ[..., 0] = class_id("other_flat")  # the simulator's painted crossings are drivable
    assert cost.terms(occ[None, None])["offroad"].item() == 0.0
    assert OccupancyCost(grid, drivable=("driveable_surface",)).terms(occ[None, None])["offroad"].item() == 1.0
    with pytest.raises(PlanningError, match="does not match"):
        cost.terms(torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8))


def test_embedding_energy_is_mean_l1_at_the_horizon():
    z = torch.zeros(2, 3, 4, 5)  # [S, H, N, D]
    z[1, -1] = 2.0
    z[0, 0] = 7.0  # intermediate steps do not count without shaping
    goal = EmbeddingGoal(embedding=torch.ones(4, 5))
    cost = EmbeddingGoalCost()
    c = cost(Rollout(ego=torch.zeros(2, 3, 3), speed=torch.zeros(2, 3), embeddings=z), torch.zeros(2, 3, 2), goal)
    torch.testing.assert_close(c, torch.tensor([1.0, 1.0]))
    cost_shaped = EmbeddingGoalCost(CostWeights(goal_l1_intermediate=1.0))
    c2 = cost_shaped(Rollout(ego=torch.zeros(2, 3, 3), speed=torch.zeros(2, 3), embeddings=z), torch.zeros(2, 3, 2), goal)
    torch.testing.assert_close(c2, torch.tensor([1.0 + 6.0 + 1.0, 1.0 + 1.0 + 1.0]))


def test_per_step_goals_score_each_step_against_its_own_goal():
    z = torch.zeros(2, 3, 4, 5)  # [S, H, N, D]
    z[1] = 1.0
    goals = torch.stack([torch.full((4, 5), float(k)) for k in range(3)])  # step k's goal is all k
    rollout = Rollout(ego=torch.zeros(2, 3, 3), speed=torch.zeros(2, 3), embeddings=z)
    cost = EmbeddingGoalCost(CostWeights(goal_l1=2.0, goal_l1_intermediate=1.0))
    c = cost(rollout, torch.zeros(2, 3, 2), EmbeddingGoal(embedding=goals))
    # sample 0: |0-2| at the horizon (x2) + |0-0| + |0-1|; sample 1: |1-2| (x2) + |1-0| + |1-1|
    torch.testing.assert_close(c, torch.tensor([2 * 2.0 + 0.0 + 1.0, 2 * 1.0 + 1.0 + 0.0]))
    with pytest.raises(PlanningError, match="one per step"):
        cost(rollout, torch.zeros(2, 3, 2), EmbeddingGoal(embedding=goals[:2]))


def test_expert_goal_observations_along_the_way_end_with_the_final_one():
    from drivewm.planning.goals import embedding_goal, expert_future_occupancy
    from drivewm.sim import sim_preset
    from drivewm.sim.scenario import Scenario
    from drivewm.sim.sensors.occupancy import OccupancyRenderer

    cfg = sim_preset("micro", lidar=False, camera=False, visibility=False)
    sc = Scenario(cfg, seed=3, frames=20)
    renderer = OccupancyRenderer(sc.road, sc.grid)
    seq = expert_future_occupancy(sc, 3, renderer, every_step=True)
    last = expert_future_occupancy(sc, 3, renderer)
    assert seq.shape == (3, *last.shape) and np.array_equal(seq[-1], last)
    assert not np.array_equal(seq[0], seq[-1])  # the expert moved

    class Encoder:
        def encode(self, occ):  # [B, X, Y, Z] -> [B, 2, 1]
            return torch.as_tensor(occ).float().mean(dim=(1, 2, 3)).view(-1, 1, 1).expand(-1, 2, 1)

    assert embedding_goal(Encoder(), seq).embedding.shape == (3, 2, 1)
    assert embedding_goal(Encoder(), last).embedding.shape == (2, 1)
    with pytest.raises(PlanningError, match=r"\[X, Y, Z\] or \[H, X, Y, Z\]"):
        embedding_goal(Encoder(), last[0])


def test_malformed_goals_are_clear_errors():
    cost = EmbeddingGoalCost()
    r = Rollout(ego=torch.zeros(2, 3, 3), speed=torch.zeros(2, 3), embeddings=torch.zeros(2, 3, 4, 5))
    with pytest.raises(PlanningError, match="does not match"):
        cost(r, torch.zeros(2, 3, 2), EmbeddingGoal(embedding=torch.zeros(4, 6)))
    with pytest.raises(PlanningError, match="EmbeddingGoal"):
        cost(r, torch.zeros(2, 3, 2), torch.zeros(4, 5))
    with pytest.raises(PlanningError, match="non-finite"):
        cost(r, torch.zeros(2, 3, 2), EmbeddingGoal(embedding=torch.full((4, 5), float("nan"))))
    occ_cost = OccupancyCost(grid_preset("micro"))
    r2 = Rollout(ego=torch.zeros(2, 3, 3), speed=torch.zeros(2, 3),
                 occupancy=torch.full((2, 3, 32, 32, 4), FREE_ID, dtype=torch.uint8))
    with pytest.raises(PlanningError, match="route goal"):
        occ_cost(r2, torch.zeros(2, 3, 2), torch.zeros(3, 3))


def test_observed_safety_scores_the_planned_footprint_against_the_held_observation():
    from drivewm.planning.costs import ObservedSafety

    grid = grid_preset("tiny")
    w = CostWeights(near=0.0, offroad=0.0)
    ix = int((10.2 + 1.342 - grid.lower[0]) / grid.voxel_size)  # a car 10.2 m ahead of the box centre
    iy = int((0.0 - grid.lower[1]) / grid.voxel_size)
    observed = _grid_with(grid, {(ix, iy): class_id("car")})
    # Sample 0 stops; sample 1 reaches the car at step 2; sample 2 reaches it only at step 4; sample 3
    # changes lane 2.1 m left before it and passes beside it.
    ego = torch.zeros(4, 4, 3)
    ego[1, 1:, 0] = 10.2  # not a whole number of half voxels: nearest-neighbour ties would be rounding noise
    ego[2, 3, 0] = 10.2
    ego[3, :, :2] = torch.tensor([[5.1, 2.1], [10.2, 2.1], [15.3, 2.1], [20.4, 2.1]])
    r = Rollout(ego=ego, speed=torch.zeros(4, 4), observed=observed)
    torch.testing.assert_close(ObservedSafety(grid, w, steps=3)(r), torch.tensor([0.0, 200.0, 0.0, 0.0]))
    torch.testing.assert_close(ObservedSafety(grid, w, steps=4)(r), torch.tensor([0.0, 300.0, 100.0, 0.0]))
    # The ring sees the car beside the swerving plan; off-road counts the cells outside the drivable surface.
    near = ObservedSafety(grid, CostWeights(near=1.0, offroad=0.0, collision=0.0), steps=3)(r)
    assert near[3] > 0 and near[0] == 0
    with pytest.raises(PlanningError, match="steps must be >= 1"):
        ObservedSafety(grid, w, steps=0)
    with pytest.raises(PlanningError, match="rollout.observed"):
        ObservedSafety(grid, w)(Rollout(ego=ego, speed=torch.zeros(4, 4)))


def test_observed_safety_matches_warping_the_observation_into_each_pose():
    """With steps shorter than a voxel there is nothing to sweep: the cell lookup must equal the
    reference, `warp_occupancy` into every planned pose scored by `OccupancyCost.scene_cost`."""
    from drivewm.geometry import warp_occupancy
    from drivewm.planning.costs import ObservedSafety

    grid = grid_preset("tiny")
    g = torch.Generator().manual_seed(0)
    observed = torch.randint(0, grid.num_classes, grid.shape, generator=g, dtype=torch.uint8)
    observed[torch.rand(grid.shape, generator=g) < 0.8] = FREE_ID
    steps = torch.rand(16, 3, 3, generator=g) * torch.tensor([0.6, 0.4, 0.05])  # < 0.8 m per step
    ego = steps.cumsum(1)  # random offsets: no nearest-neighbour ties on the voxel lattice
    w = CostWeights(collision=100.0, near=2.0, offroad=20.0)
    r = Rollout(ego=ego, speed=torch.zeros(16, 3), observed=observed)
    ours = ObservedSafety(grid, w, steps=3)(r)
    held = warp_occupancy(observed[None], ego.reshape(1, 48, 3), grid).view(16, 3, *grid.shape)
    reference = OccupancyCost(grid, w).scene_cost(held)
    torch.testing.assert_close(ours, reference)
    assert ours.std() > 0  # the random scene gives the samples different costs


def test_observed_safety_sweeps_the_footprint_between_planned_poses():
    """At 20 m/s one 0.5 s step moves the ego 10 m, more than twice its length: a cone between two
    planned poses is in neither footprint, but the ego drives through it."""
    from drivewm.planning.costs import ObservedSafety

    grid = grid_preset("tiny")
    ix = int((6.0 - grid.lower[0]) / grid.voxel_size)  # a cone 6 m ahead of the rear axle
    iy = int((0.1 - grid.lower[1]) / grid.voxel_size)
    observed = _grid_with(grid, {(ix, iy): class_id("traffic_cone")})
    ego = torch.zeros(3, 2, 3)
    ego[0, :, 0] = torch.tensor([10.1, 20.1])  # straight through the cone
    ego[1, :, :2] = torch.tensor([[2.0, 3.1], [10.1, 3.1]])  # a lane to the left first, then past it
    r = Rollout(ego=ego, speed=torch.zeros(3, 2), observed=observed)
    w = CostWeights(near=0.0, offroad=0.0)
    torch.testing.assert_close(ObservedSafety(grid, w, steps=2)(r), torch.tensor([100.0, 0.0, 0.0]))
    # The planned poses alone miss it: both footprints lie past the cone.
    from drivewm.geometry import warp_occupancy

    held = warp_occupancy(observed[None], ego[:1], grid)
    assert not OccupancyCost(grid, w).terms(held)["collision"].any()


def test_embedding_cost_adds_the_observed_safety_term():
    from drivewm.planning.costs import ObservedSafety

    grid = grid_preset("tiny")
    ix = int((0.0 + 1.342 - grid.lower[0]) / grid.voxel_size)
    iy = int((0.0 - grid.lower[1]) / grid.voxel_size)
    observed = _grid_with(grid, {(ix, iy): class_id("car")})  # in the footprint right now
    z = torch.zeros(1, 2, 4, 5)
    r = Rollout(ego=torch.zeros(1, 2, 3), speed=torch.zeros(1, 2), embeddings=z, observed=observed)
    goal = EmbeddingGoal(embedding=torch.ones(4, 5))
    plain = EmbeddingGoalCost()(r, torch.zeros(1, 2, 2), goal)
    safe = EmbeddingGoalCost(safety=ObservedSafety(grid, CostWeights(near=0.0), steps=2))(r, torch.zeros(1, 2, 2), goal)
    torch.testing.assert_close(safe - plain, torch.tensor([200.0]))


def _agent(x, y, yaw, length, width, vx, vy):
    return torch.tensor([[x, y, yaw, length, width, vx, vy]])


def test_observed_safety_moves_tracked_agents_at_constant_velocity():
    """A car crossing from the right is off the path now and on it in 1 s: held still it is missed, moved
    at its velocity it is hit. A car ahead at the ego's speed is the opposite case."""
    from drivewm.planning.costs import ObservedSafety

    grid = grid_preset("tiny")
    w = CostWeights(near=0.0, offroad=0.0)
    ego = torch.zeros(1, 3, 3)
    ego[0, :, 0] = torch.tensor([5.1, 10.1, 15.1])  # straight ahead at 10.2 m/s
    crossing = _agent(11.5, -8.1, 1.5708, 4.5, 2.0, 0.0, 8.0)  # reaches y = 0 after ~1 s, at x = 11.5
    ix, iy = (int((v - lo) / grid.voxel_size) for v, lo in ((11.5, grid.lower[0]), (-8.1, grid.lower[1])))
    observed = _grid_with(grid, {(ix, iy): class_id("car")})
    held = Rollout(ego=ego, speed=torch.zeros(1, 3), observed=observed, agents=crossing)
    assert ObservedSafety(grid, w, steps=3)(held).item() == 0.0  # agents off: the snapshot only
    assert ObservedSafety(grid, w, steps=3, agents=True)(held).item() >= 100.0

    ahead = _agent(12.0, 0.1, 0.0, 4.5, 2.0, 10.2, 0.0)  # 12 m ahead, as fast as the ego
    ix, iy = (int((v - lo) / grid.voxel_size) for v, lo in ((12.0, grid.lower[0]), (0.1, grid.lower[1])))
    observed = _grid_with(grid, {(ix - 1, iy): class_id("car"), (ix, iy): class_id("car"), (ix + 1, iy): class_id("car")})
    follow = Rollout(ego=ego, speed=torch.zeros(1, 3), observed=observed, agents=ahead)
    assert ObservedSafety(grid, w, steps=3)(follow).item() >= 100.0  # held still, the car is run into
    assert ObservedSafety(grid, w, steps=3, agents=True)(follow).item() == 0.0  # it drives away as fast
    # A stopped agent is as dangerous moved as held.
    parked = Rollout(ego=ego, speed=torch.zeros(1, 3), observed=observed, agents=_agent(12.0, 0.1, 0.0, 4.5, 2.0, 0.0, 0.0))
    assert ObservedSafety(grid, w, steps=3, agents=True)(parked).item() >= 100.0


def test_tracked_agents_velocity_predicts_where_they_go():
    from drivewm.planning.closed_loop import tracked_agents
    from drivewm.planning.observation import PlanningObservation
    from drivewm.sim import sim_preset
    from drivewm.geometry import world_to_ego
    from drivewm.sim.scenario import Scenario

    cfg = sim_preset("tiny", lidar=False, camera=False, visibility=False)
    sc = Scenario(cfg, 3, 10)
    pose = sc.ego.pose()
    agents = tracked_agents(sc)
    boxes, valid = sc.agents_ego_frame()
    moving = np.hypot(agents[:, 5], agents[:, 6]) > 1.0
    assert moving.sum() >= 1, "seed 3 has no moving road user in view"
    world_before, _, _ = sc.agent_boxes_world()
    sc.step(np.zeros(2, np.float32))
    world_after, _, _ = sc.agent_boxes_world()
    dt = 1.0 / cfg.hz
    moved = world_to_ego(world_after[valid][:, :2], pose) - world_to_ego(world_before[valid][:, :2], pose)
    np.testing.assert_allclose(moved[moving], agents[moving, 5:7] * dt, atol=0.35)
    with pytest.raises(PlanningError, match="observation.agents must be"):
        PlanningObservation(occ=np.zeros((1, 4, 4, 2), np.uint8), ego_pose=np.zeros((1, 3), np.float32),
                            action=np.zeros((1, 2), np.float32), speed=0.0, agents=np.zeros((3, 5), np.float32))
