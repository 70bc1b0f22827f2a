import numpy as np
import pytest
import torch

from drivewm.baselines import CopyLastCamera, EgoWarpCamera

from drivewm.data.episode import validate_episode
from drivewm.sim.config import CameraSpec, sim_preset
from drivewm.sim.episode import simulate_episode
from drivewm.sim.sensors.camera import CAMERA_X, Camera


@pytest.mark.parametrize("spec", [CameraSpec(height=64, width=128), CameraSpec(height=17, width=40, fov=60.0,
                                                                                mount_height=2.1)])
def test_ground_seen_by_each_ray_projects_to_its_pixel_through_the_recorded_calibration(spec):
    cam = Camera(spec)
    K, E = cam.intrinsics().astype(np.float64), cam.extrinsics().astype(np.float64)
    # The simulator's own rays: azimuth per column, tan(elevation) per (column, row); those looking down hit the
    # ground at horizontal distance mount_height / -slope from the camera.
    col, row = np.meshgrid(np.arange(spec.width), np.arange(spec.height), indexing="ij")  # [W, H]
    down = cam.slopes < 0
    dist = spec.mount_height / -cam.slopes[down]
    az = np.broadcast_to(cam.az[:, None], cam.slopes.shape)[down]
    ground = np.stack([CAMERA_X + dist * np.cos(az), dist * np.sin(az), np.zeros_like(dist)], -1)  # ego frame
    in_camera = (ground - E[:3, 3]) @ E[:3, :3]  # ego -> camera axes
    uvw = in_camera @ K.T
    uv = uvw[:, :2] / uvw[:, 2:]
    assert down.sum() == spec.width * (spec.height // 2)  # the lower half of the image sees the ground
    np.testing.assert_allclose(uv[:, 0], col[down], atol=1e-6)
    np.testing.assert_allclose(uv[:, 1], row[down], atol=1e-6)


def test_camera_presets_record_their_calibration_and_older_presets_do_not():
    cfg = sim_preset("tiny_camera", lidar=False, visibility=False)
    assert (cfg.camera_spec.height, cfg.camera_spec.width) == (64, 128)
    assert (sim_preset("small_camera").camera_spec.width, sim_preset("occ3d_camera").camera_spec.width) == (256, 512)
    ep = simulate_episode(cfg, seed=3, frames=2)
    validate_episode(ep, cfg.grid_spec, "sim")
    assert ep["camera"].shape == (2, 64, 128, 3)
    cam = Camera(cfg.camera_spec)
    np.testing.assert_array_equal(ep["camera_intrinsics"], cam.intrinsics())
    np.testing.assert_array_equal(ep["camera_extrinsics"], cam.extrinsics())
    assert ep["camera_extrinsics"][2, 3] == cfg.camera_spec.mount_height
    plain = simulate_episode(sim_preset("micro", lidar=False, visibility=False), seed=3, frames=1)
    assert "camera" in plain and "camera_intrinsics" not in plain and "camera_extrinsics" not in plain


def test_recorded_calibration_warps_the_rendered_road_into_the_next_frames():
    # The road-plane warp with the recorded K, mount and poses must predict the simulator's own next frames on the
    # lower half of the image (the road) much better than a copy, and better than with a wrong mount height.
    cfg = sim_preset("tiny_camera", lidar=False, visibility=False, hz=10.0)
    err = {"warp": 0.0, "copy": 0.0, "wrong_height": 0.0}
    for seed in (1, 2, 3):
        ep = simulate_episode(cfg, seed=seed, frames=4)
        K, E = torch.tensor(ep["camera_intrinsics"])[None], torch.tensor(ep["camera_extrinsics"])[None]
        context = {"camera": torch.tensor(ep["camera"][None, :2]), "ego_pose": torch.tensor(ep["ego_pose"][None]),
                   "camera_intrinsics": K, "camera_extrinsics": E}
        truth = torch.tensor(ep["camera"][None, 2:]).float()[:, :, 40:]
        wrong = E.clone()
        wrong[:, 2, 3] *= 1.5
        for name, forecaster, ctx in (("warp", EgoWarpCamera(), context), ("copy", CopyLastCamera(), context),
                                      ("wrong_height", EgoWarpCamera(), {**context, "camera_extrinsics": wrong})):
            err[name] += (forecaster.forecast(ctx, 2).float()[:, :, 40:] - truth).abs().mean().item()
    assert err["warp"] * 1.3 < err["copy"] and err["warp"] * 1.2 < err["wrong_height"], err
