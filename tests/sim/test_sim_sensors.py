"""Sensor geometry with known answers: a box at a known place, ground-plane ranges, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from drivewm.data.spec import FREE_ID, class_id, grid_preset
from drivewm.sim.config import CameraSpec, LidarSpec
from drivewm.sim.rasterize import MANMADE, ROAD
from drivewm.sim.sensors.camera import Camera
from drivewm.sim.sensors.lidar import Lidar
from drivewm.sim.sensors.occupancy import OccupancyRenderer, ground_voxel
from drivewm.sim.sensors.raycast import cast_rays
from drivewm.sim.sensors.visibility import VisibilityCaster

CAR = class_id("car")
# An agent box in the ego frame: centre (10, 0), 4 m long, 2 m wide, 1.5 m tall, aligned with x.
BOX = np.array([[10.0, 0.0, 0.75, 4.0, 2.0, 1.5, 0.0, CAR]], np.float32)


def test_box_fills_exactly_its_voxels(flat_map):
    grid = grid_preset("occ3d")
    road = flat_map()
    occ = OccupancyRenderer(road, grid).render(np.zeros(3), BOX, np.array([True]))
    g = ground_voxel(grid)
    assert g == 2  # occ3d: z in [-1, 5.4], voxel [-0.2, 0.2) holds the ground surface
    xc, yc, zc = grid.voxel_centers(0), grid.voxel_centers(1), grid.voxel_centers(2)
    in_x = (xc >= 8.0) & (xc <= 12.0)
    in_y = (yc >= -1.0) & (yc <= 1.0)
    in_z = (np.arange(16) >= g) & (grid.lower[2] + np.arange(16) * 0.4 < 1.5)
    expect = np.where(in_x[:, None, None] & in_y[None, :, None] & in_z[None, None, :], CAR, FREE_ID)
    expect[..., g] = np.where(in_x[:, None] & in_y[None, :], CAR, ROAD)
    np.testing.assert_array_equal(occ, expect)
    # x centres 8.2..11.8 (10), y centres -1.0..1.0 on the closed box edges (6), z voxels 2..6 below 1.5 m (5).
    assert (occ == CAR).sum() == 10 * 6 * 5


def test_rotated_pose_moves_the_static_world(flat_map, add_block):
    grid = grid_preset("tiny")
    road = flat_map(res=0.4)
    add_block(road, 10.0, 14.0, -2.0, 2.0, 3.0)  # a building 10..14 m east of the world origin
    ren = OccupancyRenderer(road, grid)
    # Ego at the origin facing north (+y world): the block lies to the ego's right (negative y).
    occ = ren.static(np.array([0.0, 0.0, np.pi / 2]))
    idx = np.argwhere(occ == MANMADE)
    pts = grid.lower[0] + (idx[:, :2] + 0.5) * grid.voxel_size
    assert np.all(np.abs(pts[:, 0]) <= 2.0 + 1e-6) and np.all((pts[:, 1] >= -14 - 1e-6) & (pts[:, 1] <= -10 + 1e-6))


def test_lidar_hits_box_at_its_range(flat_map):
    road = flat_map()
    spec = LidarSpec(beams=3, azimuth_steps=360, elevation_min=-1.0, elevation_max=1.0, max_range=60.0, height=1.0)
    boxes_world = BOX.copy()  # ego at the origin with yaw 0: ego frame == world frame
    pts = Lidar(spec).scan(road, np.zeros(3), boxes_world, np.random.default_rng(0))
    ahead = pts[(np.abs(pts[:, 1]) < 1e-3) & (pts[:, 0] > 0)]
    # Beams at -1, 0, +1 degrees from 1 m height all meet the box's rear face (x = 8 m) below its 1.5 m top.
    assert len(ahead) == 3
    np.testing.assert_allclose(ahead[:, 0], 8.0, atol=1e-4)
    np.testing.assert_allclose(np.sort(ahead[:, 2]), 1.0 + 8.0 * np.tan(np.deg2rad([-1, 0, 1])), atol=1e-4)
    assert np.allclose(ahead[:, 3], ahead[0, 3]) and ahead[0, 3] > 0.3  # a car's intensity, not the road's


def test_lidar_ground_range_is_exact_and_blocks_occlude(flat_map, add_block):
    road = flat_map()
    add_block(road, -30.0, -20.0, -30.0, 30.0, 8.0)  # a wall behind the ego
    tilt = np.deg2rad(-10.0)
    dist, cls = cast_rays(road, np.zeros(2), 1.8, np.array([0.0, np.pi]), np.full((2, 1), np.tan(tilt)), 70.0,
                          np.zeros((0, 8)))
    np.testing.assert_allclose(dist[0, 0], 1.8 / np.tan(-tilt), rtol=1e-5)  # the ground plane, exactly
    assert cls[0, 0] == ROAD
    flat, cls2 = cast_rays(road, np.zeros(2), 1.8, np.array([np.pi]), np.zeros((1, 1)), 70.0, np.zeros((0, 8)))
    assert cls2[0, 0] == MANMADE and abs(flat[0, 0] - 20.0) <= road.res


def test_visibility_shadow_behind_a_box(flat_map):
    grid = grid_preset("occ3d")
    road = flat_map()
    occ = OccupancyRenderer(road, grid).render(np.zeros(3), BOX, np.array([True]))
    mask = VisibilityCaster(grid, 1.84).mask(occ)
    g = ground_voxel(grid)
    ix = lambda x: int((x - grid.lower[0]) / grid.voxel_size)  # noqa: E731
    iy0 = int((0.0 - grid.lower[1]) / grid.voxel_size)
    assert mask[ix(5.0), iy0, g] and mask[ix(8.2), iy0, g + 1]  # ground before it, its rear face
    assert not mask[ix(14.0), iy0, g]  # the road right behind it is hidden
    assert mask[ix(-14.0), iy0, g]  # the same range behind the ego is seen
    assert not mask[:, :, :g].any()  # nothing below the ground is observed


def test_camera_sees_the_box_in_the_middle_and_sky_on_top(flat_map):
    road = flat_map()
    img = Camera(CameraSpec(height=32, width=64, fov=90.0)).render(road, np.zeros(3), BOX)
    assert img.shape == (32, 64, 3) and img.dtype == np.uint8
    centre = img[17, 30:34].astype(int)  # just below the horizon, straight ahead: the car (blue-ish)
    assert np.all(centre[:, 2] > centre[:, 0])
    assert img[0, 0, 2] > 180  # sky at the top


@pytest.mark.parametrize("preset", ["tiny", "micro"])
def test_small_box_still_marks_its_voxel(preset, flat_map):
    grid = grid_preset(preset)
    ped = np.array([[3.1, -2.2, 0.9, 0.5, 0.5, 1.75, 0.3, class_id("pedestrian")]], np.float32)
    occ = OccupancyRenderer(flat_map(res=0.4), grid).render(np.zeros(3), ped, np.array([True]))
    i, j = (np.floor((ped[0, :2] - np.array(grid.lower[:2])) / grid.voxel_size)).astype(int)
    assert occ[i, j, ground_voxel(grid)] == class_id("pedestrian")


def test_rotated_boxes_match_a_point_in_box_reference(flat_map):
    from drivewm.sim.geometry import points_in_box

    grid = grid_preset("occ3d")
    rng = np.random.default_rng(3)
    boxes = np.array([[*rng.uniform(-30, 30, 2), 0.0, *rng.uniform([3, 1.5], [11, 2.6]), 2.0, rng.uniform(-3, 3), CAR]
                      for _ in range(6)], np.float32)
    occ = OccupancyRenderer(flat_map(), grid).render(np.zeros(3), boxes, np.ones(6, bool))
    gx, gy = np.meshgrid(grid.voxel_centers(0), grid.voxel_centers(1), indexing="ij")
    ref = np.zeros(gx.shape, bool)
    for b in boxes.astype(np.float64):
        ref |= points_in_box(gx, gy, (b[0], b[1], b[6], b[3], b[4]))
    np.testing.assert_array_equal(occ[..., ground_voxel(grid)] == CAR, ref)
