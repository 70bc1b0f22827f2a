"""Camera baselines: the last frame repeated, and the last frame warped into each future frame by the known ego
motion through the road-plane homography (static, flat world).

Conventions are the data contract's: images uint8 [B, T, H, W, 3]; ``camera_intrinsics`` K [3, 3] in pixels
with pixel centres at integer coordinates (OpenCV); ``camera_extrinsics`` E [4, 4] camera-to-ego (camera axes
x right, y down, z forward; ego x forward, y left, z up from the ground); poses (x, y, yaw) in the current ego
frame.

For a future frame f and the last observed frame c, camera f's points X_f on the ground satisfy n^T X_f = d, with
n = -R_E^T e_z (the ground normal, pointing down, in camera axes) and d = E's height above the ground. With
X_c = R X_f + t the camera motion from f to c (R, t from E^-1 T_cf E, T_cf the 3D lift of pose f), every
ground point obeys X_c = (R + t n^T / d) X_f, so pixel p_f of frame f shows what pixel
H p_f = K (R + t n^T / d) K^-1 p_f of frame c shows. Pixels whose ray does not meet the ground ahead (the sky,
the horizon) are treated as infinitely far: H_inf = K R K^-1, the rotation alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from drivewm.baselines.forecasters import future_poses

# A ray meets the ground only if it points down by more than this (n^T ray in camera units): flatter rays
# hit the ground beyond any useful distance, so they count as the horizon.
_MIN_DESCENT = 1e-6


def _past_camera(context: dict) -> torch.Tensor:
    if "camera" not in context:
        raise KeyError("context needs 'camera' [B, Tp, H, W, 3] for a camera baseline")
    cam = context["camera"]
    if cam.ndim != 5:
        raise ValueError(f"context['camera'] must be [B, Tp, H, W, C], got shape {tuple(cam.shape)}")
    return cam


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")


def ego_motion_matrices(pose: torch.Tensor) -> torch.Tensor:
    """4 x 4 transforms [..., 4, 4] of planar poses (x, y, yaw) [..., 3]: frame-to-current, z unchanged."""
    pose = pose.double()
    c, s = torch.cos(pose[..., 2]), torch.sin(pose[..., 2])
    out = torch.zeros(*pose.shape[:-1], 4, 4, dtype=torch.float64, device=pose.device)
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1] = c, -s, s, c
    out[..., 2, 2] = out[..., 3, 3] = 1.0
    out[..., 0, 3], out[..., 1, 3] = pose[..., 0], pose[..., 1]
    return out


def source_pixels(intrinsics: torch.Tensor, extrinsics: torch.Tensor, pose: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Where each pixel of each future frame lies in the current frame's image: (u, v) [B, N, H, W, 2] float64.

    ``intrinsics`` [B, 3, 3] or [3, 3], ``extrinsics`` [B, 4, 4] or [4, 4], ``pose`` [B, N, 3]: the future frames
    in the current ego frame; ``size`` (H, W). Ground pixels follow the road-plane homography, the others the
    rotation alone (points at infinity); see the module docstring.
    """
    b, n = pose.shape[:2]
    K = intrinsics.double().to(pose.device).expand(b, 3, 3)
    E = extrinsics.double().to(pose.device).expand(b, 4, 4)
    E_inv = torch.linalg.inv(E)
    motion = E_inv[:, None] @ ego_motion_matrices(pose) @ E[:, None]  # [B, N, 4, 4]: camera f -> camera c
    R, t = motion[..., :3, :3], motion[..., :3, 3:]  # [B, N, 3, 3], [B, N, 3, 1]
    normal = -E[:, 2, :3]  # [B, 3]: -R_E^T e_z, the ground normal in camera axes
    height = E[:, 2, 3]  # [B]
    if bool((height <= 0).any()):
        raise ValueError(f"camera_extrinsics put the camera at height {height.tolist()} m; it must be above the ground")
    h, w = size
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=pose.device),
                          torch.arange(w, dtype=torch.float64, device=pose.device), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # [P, 3]
    rays = pix @ torch.linalg.inv(K).transpose(-1, -2)  # [B, P, 3]
    descent = rays @ normal[..., None]  # [B, P, 1]
    plane = R + t @ normal[:, None, None, :] / height[:, None, None, None]  # [B, N, 3, 3]
    ground = rays[:, None] @ plane.transpose(-1, -2)  # [B, N, P, 3]
    far = rays[:, None] @ R.transpose(-1, -2)
    # A ground point behind the current camera (reversing) was never seen: it falls back to the far mapping.
    on_ground = (descent[:, None] > _MIN_DESCENT) & (ground[..., 2:] > _MIN_DESCENT)
    cam = torch.where(on_ground, ground, far)
    # A far point behind the current camera (turns beyond the field of view) clamps to the border.
    z = cam[..., 2:].clamp_min(_MIN_DESCENT)
    uv = (cam @ K[:, None].transpose(-1, -2))[..., :2] / z
    return uv.reshape(b, n, h, w, 2)


def sample_bilinear(images: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Images [B, H, W, C] read at pixel coordinates (u, v) [B, N, H', W', 2] (pixel centres at integers),
    bilinear, outside the image the nearest border pixel: float64 [B, N, H', W', C]."""
    b, h, w, c = images.shape
    n, ho, wo = pixels.shape[1:4]
    img = images.double().permute(0, 3, 1, 2).repeat_interleave(n, 0)  # [B * N, C, H, W]
    # align_corners=False puts pixel i's centre at normalised (2 i + 1) / size - 1.
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64, device=pixels.device)
    grid = (pixels.double().reshape(b * n, ho, wo, 2) + 0.5) * scale - 1.0
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(b, n, ho, wo, c)


class CopyLastCamera:
    """Repeat the last observed camera frame for every future step."""

    name = "copy_last_camera"
    modality = "camera"
    sees_future = False

    def forecast(self, context: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_horizon(horizon)
        cam = _past_camera(context)
        return cam[:, -1:].expand(-1, horizon, -1, -1, -1).clone()  # [B, H, h, w, C]


class EgoWarpCamera:
    """The last camera frame warped into each future frame by the recorded ego motion through the road-plane
    homography; the area it did not see is filled from its border.

    The calibration comes from ``context['camera_intrinsics']`` [B, 3, 3] / ``context['camera_extrinsics']``
    [B, 4, 4] when the context carries them, else from the constructor (one camera for the whole table).
    """

    name = "ego_warp_camera"
    modality = "camera"
    sees_future = False

    def __init__(self, intrinsics: torch.Tensor | None = None, extrinsics: torch.Tensor | None = None) -> None:
        if (intrinsics is None) != (extrinsics is None):
            raise ValueError("EgoWarpCamera needs both intrinsics and extrinsics, or neither (read from the context)")
        if intrinsics is not None:
            intrinsics, extrinsics = torch.as_tensor(intrinsics), torch.as_tensor(extrinsics)
            if intrinsics.shape[-2:] != (3, 3) or extrinsics.shape[-2:] != (4, 4):
                raise ValueError(f"intrinsics must be [3, 3] and extrinsics [4, 4], got "
                                 f"{tuple(intrinsics.shape)} and {tuple(extrinsics.shape)}")
        self.intrinsics, self.extrinsics = intrinsics, extrinsics

    def _calibration(self, context: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if "camera_intrinsics" in context and "camera_extrinsics" in context:
            return context["camera_intrinsics"], context["camera_extrinsics"]
        if self.intrinsics is None:
            raise KeyError(f"{self.name} needs 'camera_intrinsics' and 'camera_extrinsics' in the context or given "
                           "to its constructor")
        return self.intrinsics, self.extrinsics

    def warp(self, context: dict, horizon: int) -> torch.Tensor:
        """The warped frames before rounding: float64 [B, H, h, w, C]."""
        _check_horizon(horizon)
        cam = _past_camera(context)
        b, past, h, w, _ = cam.shape
        K, E = self._calibration(context)
        poses = future_poses(context, past, horizon, "known").to(cam.device)  # [B, H, 3]
        return sample_bilinear(cam[:, -1], source_pixels(K, E, poses, (h, w)))

    def forecast(self, context: dict, horizon: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        cam = _past_camera(context)
        out = self.warp(context, horizon)
        if cam.dtype == torch.uint8:
            return out.round().clamp(0, 255).to(torch.uint8)
        return out.to(cam.dtype)
