import numpy as np
import pytest
import torch

from drivewm.baselines import CopyLastCamera, EgoWarpCamera, baselines
from drivewm.baselines.camera import source_pixels
from drivewm.data.spec import grid_preset

H, W = 32, 64
F_PX = 40.0
K = np.array([[F_PX, 0, W / 2 - 0.5], [0, F_PX, H / 2 - 0.5], [0, 0, 1]])
# Camera 1.5 m ahead of the rear axle, 1.6 m up, looking forward, pitched down a little (camera-to-ego).
PITCH = np.deg2rad(4.0)
_level = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # camera axes -> ego axes
_pitch = np.array([[1, 0, 0], [0, np.cos(PITCH), np.sin(PITCH)], [0, -np.sin(PITCH), np.cos(PITCH)]])
E = np.eye(4)
E[:3, :3] = _level @ _pitch.T  # optical axis turned down by PITCH
E[:3, 3] = [1.5, 0.0, 1.6]


def ground_point(pixels, pose):
    """World (x, y) [N, 2] of the ground seen at pixels (u, v) [N, 2] from ego pose (x, y, yaw), and a mask of
    the rays that meet the ground."""
    rays = np.c_[pixels, np.ones(len(pixels))] @ np.linalg.inv(K).T @ E[:3, :3].T  # ego axes
    hits = rays[:, 2] < -1e-6
    s = -E[2, 3] / np.where(hits, rays[:, 2], -1.0)
    ego = E[:3, 3][None, :2] + s[:, None] * rays[:, :2]
    c, sn = np.cos(pose[2]), np.sin(pose[2])
    world = ego @ np.array([[c, sn], [-sn, c]]) + pose[:2]
    return world, hits


def project(world, pose):
    """Pixels (u, v) [N, 2] of world ground points (x, y) [N, 2] in the camera at ego pose (x, y, yaw)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    ego = (world - pose[:2]) @ np.array([[c, -s], [s, c]])
    ego3 = np.c_[ego, np.zeros(len(ego))]
    cam = (ego3 - E[:3, 3]) @ E[:3, :3]  # ego -> camera axes (R^T (x - t))
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:], cam[:, 2]


def pixel_grid():
    v, u = np.meshgrid(np.arange(H, dtype=float), np.arange(W, dtype=float), indexing="ij")
    return np.c_[u.ravel(), v.ravel()]


def texture(world):
    """A flat road texture: smooth stripes along and across the road."""
    x, y = world[:, 0], world[:, 1]
    return 128 + 60 * np.sin(0.9 * x) * np.cos(0.7 * y) + 40 * np.sin(0.3 * x + 0.5 * y)


def render(pose):
    """Camera image [H, W, 3] of the textured flat world (sky grey) from ego pose (x, y, yaw)."""
    world, hits = ground_point(pixel_grid(), np.asarray(pose, float))
    value = np.where(hits, texture(world), 200.0)
    return np.repeat(value.reshape(H, W, 1), 3, -1)


POSES = [(2.0, 0.0, 0.0), (3.0, 0.4, 0.05), (1.0, -0.3, -0.08)]  # future frame in the current frame


@pytest.mark.parametrize("pose", POSES)
def test_homography_matches_the_analytic_projection_of_the_ground(pose):
    future = np.asarray(pose, float)
    src = source_pixels(torch.tensor(K), torch.tensor(E), torch.tensor(future)[None, None], (H, W))[0, 0].reshape(-1, 2)
    world, hits = ground_point(pixel_grid(), future)
    expect, depth = project(world, np.zeros(3))
    ok = hits & (depth > 0)
    assert ok.sum() > H * W // 3
    np.testing.assert_allclose(src.numpy()[ok], expect[ok], atol=1e-9)


def test_warp_of_a_flat_road_under_forward_translation_is_exact():
    # A ground texture that is affine in the current image's pixels: bilinear sampling reproduces it exactly,
    # so the warped frame must equal the true future view wherever the future pixel saw the ground in view.
    pixels = pixel_grid()
    current = (3.0 * pixels[:, 0] - 2.0 * pixels[:, 1] + 100.0).reshape(H, W, 1).repeat(3, -1)
    future = np.array([2.5, 0.0, 0.0])  # pure forward translation
    world, hits = ground_point(pixels, future)
    seen, depth = project(world, np.zeros(3))
    truth = 3.0 * seen[:, 0] - 2.0 * seen[:, 1] + 100.0
    inside = hits & (depth > 0) & (seen[:, 0] >= 0) & (seen[:, 0] <= W - 1) & (seen[:, 1] >= 0) & (seen[:, 1] <= H - 1)
    assert inside.sum() > H * W // 3
    context = {"camera": torch.tensor(current)[None, None],
               "rel_pose": torch.tensor(np.stack([np.zeros(3), future]))[None]}
    warped = EgoWarpCamera(torch.tensor(K), torch.tensor(E)).warp(context, 1)[0, 0, ..., 0].numpy().ravel()
    np.testing.assert_allclose(warped[inside], truth[inside], atol=1e-9)


def test_ego_warp_beats_copy_last_on_a_rendered_road_and_is_the_identity_at_rest():
    poses = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [4.0, 0.2, 0.03]], dtype=torch.float64)[None]
    frames = torch.tensor(np.stack([render(p) for p in poses[0].numpy()])).round().to(torch.uint8)[None]
    context = {"camera": frames[:, :1], "ego_pose": poses}
    warp = EgoWarpCamera()
    calibrated = {**context, "camera_intrinsics": torch.tensor(K)[None], "camera_extrinsics": torch.tensor(E)[None]}
    out = warp.forecast(calibrated, 2)
    copy = CopyLastCamera().forecast(context, 2)
    assert out.dtype == copy.dtype == torch.uint8 and out.shape == copy.shape == (1, 2, H, W, 3)
    _, hits = ground_point(pixel_grid(), np.zeros(3))
    rows = torch.tensor(hits.reshape(H, W))
    rows[: H // 2 + 4] = False  # near road only: the far road leaves the view's top rows
    err_warp = (out.float() - frames[:, 1:].float()).abs()[:, :, rows].mean()
    err_copy = (copy.float() - frames[:, 1:].float()).abs()[:, :, rows].mean()
    assert err_warp < err_copy / 3, (err_warp, err_copy)  # interpolation and uint8 rounding remain
    still = {**calibrated, "ego_pose": torch.zeros(1, 2, 3, dtype=torch.float64)}
    assert torch.equal(warp.forecast(still, 1)[:, 0], frames[:, 0])
    with pytest.raises(KeyError, match="camera_intrinsics"):
        warp.forecast(context, 1)


def test_camera_rows_of_the_baseline_list():
    rows = baselines(grid_preset("micro"), "camera", calibration=(torch.tensor(K), torch.tensor(E)))
    assert [(r.name, r.modality) for r in rows] == [("copy_last_camera", "camera"), ("ego_warp_camera", "camera")]
    with pytest.raises(ValueError, match="camera"):
        baselines(grid_preset("micro"), "radar")
