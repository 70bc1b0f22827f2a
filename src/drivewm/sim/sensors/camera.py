"""A forward pinhole camera rendered by ray casting, shaded by class colour and distance (uint8 [H, W, 3]).

The camera is level, looks along the ego's x axis from CAMERA_X ahead of the rear axle at the spec's mount height,
and casts one ray through each pixel centre; `Camera.intrinsics` / `Camera.extrinsics` give that model in the
data contract's terms (OpenCV pinhole K with pixel centres at integers, camera-to-ego transform)."""

from __future__ import annotations

import numpy as np

from drivewm.data.spec import class_id
from drivewm.geometry import ego_to_world
from drivewm.sim.config import CameraSpec
from drivewm.sim.maps import RoadMap
from drivewm.sim.sensors.raycast import NO_HIT, cast_rays, paint_at

ROAD = class_id("driveable_surface")
CAMERA_X = 1.5  # metres ahead of the rear axle (windscreen)
_COLOURS = {"driveable_surface": (70, 70, 75), "other_flat": (220, 220, 220), "sidewalk": (160, 150, 140),
            "terrain": (110, 150, 70), "manmade": (180, 120, 90), "vegetation": (40, 110, 40),
            "barrier": (230, 170, 40), "car": (30, 60, 200), "truck": (150, 40, 150), "bus": (220, 200, 30),
            "motorcycle": (200, 40, 40), "pedestrian": (240, 60, 60)}
PALETTE = np.full((256, 3), 128.0, np.float32)
for _name, _rgb in _COLOURS.items():
    PALETTE[class_id(_name)] = _rgb
PAINT_RGB = np.array([[0, 0, 0], [235, 235, 235], [235, 200, 40]], np.float32)  # none, white, yellow
SKY_TOP, SKY_HORIZON = np.array([90.0, 140.0, 220.0]), np.array([200.0, 215.0, 235.0])


class Camera:
    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        f = self.focal = (spec.width / 2) / np.tan(np.deg2rad(spec.fov) / 2)  # pixels, square pixels
        u = (np.arange(spec.width) + 0.5 - spec.width / 2) / f  # right of the optical axis
        v = (np.arange(spec.height) + 0.5 - spec.height / 2) / f  # below the optical axis
        self.az = np.arctan(-u)  # [W] ego-frame azimuth of each column (left positive)
        self.slopes = -v[None, :] / np.sqrt(1 + u[:, None] ** 2)  # [W, H] tan(elevation)

    def intrinsics(self) -> np.ndarray:
        """Pinhole K float32 [3, 3] of the rendered images: pixel (i, j)'s centre is at (j, i), so the optical
        axis, which passes between the middle pixels, is at ((W - 1) / 2, (H - 1) / 2)."""
        sp = self.spec
        return np.array([[self.focal, 0.0, (sp.width - 1) / 2], [0.0, self.focal, (sp.height - 1) / 2],
                         [0.0, 0.0, 1.0]], np.float32)

    def extrinsics(self) -> np.ndarray:
        """Camera-to-ego transform float32 [4, 4]: camera x right = ego -y, y down = ego -z, z forward = ego x;
        the camera sits CAMERA_X ahead of the ego origin at the mount height (ego z = 0 is the ground)."""
        out = np.zeros((4, 4), np.float32)
        out[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
        out[:3, 3] = [CAMERA_X, 0.0, self.spec.mount_height]
        out[3, 3] = 1.0
        return out

    def render(self, road: RoadMap, pose: np.ndarray, boxes_world: np.ndarray) -> np.ndarray:
        sp = self.spec
        origin = ego_to_world(np.array([CAMERA_X, 0.0]), pose)
        dist, cls = cast_rays(road, origin, sp.mount_height, self.az + pose[2], self.slopes, sp.max_range, boxes_world)
        rng3 = dist * np.sqrt(1 + self.slopes**2)  # [W, H]
        hit = (cls != NO_HIT) & (rng3 <= sp.max_range)
        fog = np.clip(rng3 / sp.max_range, 0, 1)[..., None] ** 0.8
        elev = np.clip(self.slopes, 0, 0.6)[..., None] / 0.6
        sky = SKY_HORIZON * (1 - elev) + SKY_TOP * elev
        surface = PALETTE[cls]
        paint = np.where(cls == ROAD, paint_at(road, origin, self.az + pose[2], dist), 0)
        surface = np.where(paint[..., None] > 0, PAINT_RGB[paint], surface)  # lane lines on the road
        base = surface * (1 - 0.35 * fog) + SKY_HORIZON * 0.35 * fog
        img = np.where(hit[..., None], base, sky)  # [W, H, 3]
        return np.clip(img, 0, 255).astype(np.uint8).transpose(1, 0, 2)  # -> [H, W, 3]
