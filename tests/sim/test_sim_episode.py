"""simulate_episode: the data contract's keys, dtypes and shapes, determinism, safe traffic, lane paint."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from drivewm.sim import EGO_LENGTH, ExpertDriver, Scenario, sim_preset, simulate_episode
from drivewm.sim.geometry import box_corners, boxes_overlap
from drivewm.sim.rasterize import CAR, CROSSWALK, ROAD
from drivewm.sim.sensors.camera import Camera


@pytest.fixture(scope="module")
def micro_episode():
    return simulate_episode(sim_preset("micro"), seed=11, frames=6)


def test_keys_dtypes_shapes(micro_episode):
    ep, cfg, t = micro_episode, sim_preset("micro"), 6
    x, y, z = cfg.grid_spec.shape
    h, w = cfg.camera_spec.height, cfg.camera_spec.width
    expect = {"occ": (np.uint8, (t, x, y, z)), "occ_mask": (np.bool_, (t, x, y, z)), "camera": (np.uint8, (t, h, w, 3)),
              "ego_pose": (np.float32, (t, 3)), "action": (np.float32, (t, 2)), "ego_speed": (np.float32, (t,)),
              "collision": (np.bool_, (t,)), "offroad": (np.bool_, (t,)), "lidar_offsets": (np.int64, (t + 1,))}
    for key, (dtype, shape) in expect.items():
        assert ep[key].dtype == dtype and ep[key].shape == shape, key
    assert ep["lidar"].dtype == np.float32 and ep["lidar"].shape == (ep["lidar_offsets"][-1], 4)
    assert ep["lidar_offsets"][0] == 0 and np.all(np.diff(ep["lidar_offsets"]) > 0)
    k = cfg.max_vehicles + cfg.max_pedestrians  # fixed per config, so episodes batch together
    assert ep["agents"].shape == (t, k, 8) and ep["agents_valid"].shape == (t, k) and ep["agents_valid"].any()
    boxes = ep["agents"][ep["agents_valid"]]
    assert np.all(boxes[:, 3:6] > 0) and np.all(np.isin(boxes[:, 7], [3, 4, 6, 7, 10]))
    assert ep["route"].dtype == np.float32 and ep["route"].shape[1] == 2 and len(ep["route"]) > 5
    assert ep["occ"].max() <= 17 and np.all(np.abs(ep["action"][:, 1]) <= cfg.max_steer)
    # Poses advance by what the speeds say (2 Hz): the ego really drives.
    step = np.linalg.norm(np.diff(ep["ego_pose"][:, :2], axis=0), axis=1)
    mean_v = 0.5 * (ep["ego_speed"][1:] + ep["ego_speed"][:-1])
    np.testing.assert_allclose(step, mean_v / cfg.hz, rtol=0.05, atol=0.05)
    # The route starts at the ego.
    assert np.linalg.norm(ep["route"][0] - ep["ego_pose"][0, :2]) < 1.0


def test_same_seed_same_bytes_other_seed_differs(micro_episode):
    again = simulate_episode(sim_preset("micro"), seed=11, frames=6)
    assert again.keys() == micro_episode.keys()
    for k in again:
        assert again[k].tobytes() == micro_episode[k].tobytes(), k
    other = simulate_episode(sim_preset("micro", lidar=False, camera=False, visibility=False), seed=12, frames=6)
    assert other["occ"].tobytes() != micro_episode["occ"].tobytes()
    assert "lidar" not in other and "camera" not in other and "occ_mask" not in other


def test_expert_noise_perturbs_actions():
    clean = simulate_episode(sim_preset("micro", lidar=False, camera=False, visibility=False), seed=5, frames=8)
    noisy = simulate_episode(sim_preset("micro", lidar=False, camera=False, visibility=False, expert_noise=1.0),
                             seed=5, frames=8)
    assert np.abs(noisy["action"] - clean["action"]).max() > 0.05
    assert clean["occ"][0].tobytes() == noisy["occ"][0].tobytes()  # same world, different driving


@pytest.mark.parametrize("layout", ["intersection", "roundabout"])
def test_traffic_never_overlaps_at_a_busy_junction(layout):
    cfg = sim_preset("micro", layouts=(layout,), vehicle_density=3.0, pedestrian_density=4.0, lidar=False,
                     camera=False, visibility=False)
    crossings = 0
    for seed in (1, 2):
        sc, expert = Scenario(cfg, seed, 30), ExpertDriver()
        for _ in range(30):
            sc.step(expert.act(sc))
            boxes, _, active = sc.agent_boxes_world()
            nv = len(sc.vehicles.s)
            corners = [box_corners(b[0], b[1], b[6], b[3], b[4]) for b in boxes]
            for i in np.flatnonzero(active[:nv]):  # vehicle vs vehicle and vehicle vs pedestrian
                for j in np.flatnonzero(active):
                    if j > i and np.linalg.norm(boxes[i, :2] - boxes[j, :2]) < 15:
                        assert not boxes_overlap(corners[i], corners[j]), (seed, i, j)
            assert not sc.collided, seed  # the clean expert does not crash either
            # Pedestrians are on the road only on crosswalks.
            ix, iy = sc.road.cell_index(boxes[nv:, :2])
            assert not np.any(sc.road.cls[ix, iy] == ROAD)
            crossings += int(np.sum(sc.road.cls[ix, iy] == CROSSWALK))
        assert sc.vehicles.active.sum() >= 1 and sc.time == pytest.approx(15.0)
    assert crossings > 0


def test_collision_and_offroad_are_detected():
    cfg = sim_preset("micro", lidar=False, camera=False, visibility=False, vehicle_density=0.0, pedestrian_density=0.0)
    sc = Scenario(cfg, 3, 20)
    hit_off, hit_col = False, False
    for _ in range(20):  # full throttle, a wide left turn (17 m radius): leaves any road here
        sc.step(np.array([cfg.max_accel, 0.15]))
        hit_off |= sc.offroad_now
        hit_col |= sc.collided
    assert hit_off
    # Put a vehicle right on the ego: a collision, not off-road.
    sc2 = Scenario(sim_preset("micro", lidar=False, camera=False, visibility=False), 3, 20)
    assert len(sc2.vehicles.s) > 0 and not sc2.in_collision() and not sc2.is_offroad()
    sc2.vehicles.path[0], sc2.vehicles.s[0] = sc2.route_path, sc2.ego_s + EGO_LENGTH / 2
    sc2.vehicles.active[0] = True
    assert sc2.in_collision() and not sc2.is_offroad()


def test_lane_paint_lies_on_the_road_and_shows_in_the_camera():
    cfg = sim_preset("tiny", layouts=("straight",), lidar=False, visibility=False)
    sc = Scenario(cfg, 0, 8)
    paint = sc.road.paint
    assert (paint == 2).any() and (paint == 1).any()  # a yellow centre line and white lines
    assert np.all(np.isin(sc.road.cls[paint > 0], [ROAD, CAR]))  # on the road (or under a parked car)
    cam = Camera(cfg.camera_spec)
    pose, boxes = sc.ego.pose(), np.zeros((0, 8))
    painted = cam.render(sc.road, pose, boxes).astype(int)
    bare = cam.render(dataclasses.replace(sc.road, paint=None), pose, boxes).astype(int)
    changed = np.any(painted != bare, axis=-1)
    assert changed.any() and np.all(painted[changed].sum(-1) > bare[changed].sum(-1))  # bright lines on asphalt


def test_episode_records_each_road_users_velocity():
    """agents_velocity [T, K, 2] holds the ground velocity along the ego's axes: its norm is the road user's speed,
    its direction the box's heading, and the episode passes the data contract."""
    import numpy as np

    from drivewm.data.episode import validate_episode
    from drivewm.sim import sim_preset, simulate_episode

    cfg = sim_preset("micro_street", lidar=False, camera=False, vehicle_density=3.0)
    ep = simulate_episode(cfg, 3, 8)
    vel, boxes, valid = ep["agents_velocity"], ep["agents"], ep["agents_valid"]
    assert vel.dtype == np.float32 and vel.shape == (*valid.shape, 2)
    assert valid.any() and np.linalg.norm(vel[valid], axis=-1).max() > 1.0
    moving = valid & (np.linalg.norm(vel, axis=-1) > 0.5)
    heading = np.arctan2(vel[..., 1], vel[..., 0])
    assert np.allclose(np.cos(heading - boxes[..., 6])[moving], 1.0, atol=1e-4)
    validate_episode(ep, cfg.grid_spec)
