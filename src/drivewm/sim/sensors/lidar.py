"""A spinning LiDAR by ray casting: points (x, y, z, intensity) in the ego frame, float32 [P, 4]."""

from __future__ import annotations

import numpy as np

from drivewm.data.spec import NUM_CLASSES, class_id
from drivewm.sim.config import LidarSpec
from drivewm.sim.maps import RoadMap
from drivewm.sim.sensors.raycast import cast_rays, paint_at

# Reflectivity by class (0..1): paint and metal are bright, vegetation and asphalt dark.
_INTENSITY = {"driveable_surface": 0.08, "other_flat": 0.55, "sidewalk": 0.15, "terrain": 0.2, "manmade": 0.3,
              "vegetation": 0.22, "barrier": 0.6, "car": 0.45, "truck": 0.5, "bus": 0.5, "motorcycle": 0.4,
              "pedestrian": 0.18}
INTENSITY = np.full(256, 0.0, np.float32)
for _name, _val in _INTENSITY.items():
    INTENSITY[class_id(_name)] = _val
INTENSITY[NUM_CLASSES:] = 0.0
PAINT_INTENSITY = 0.55
ROAD = class_id("driveable_surface")


class Lidar:
    """Beams x azimuth steps rays from (0, 0, height) in the ego frame."""

    def __init__(self, spec: LidarSpec) -> None:
        self.spec = spec
        self.elev = np.deg2rad(np.linspace(spec.elevation_min, spec.elevation_max, spec.beams))
        self.az = np.arange(spec.azimuth_steps) * (2 * np.pi / spec.azimuth_steps) - np.pi  # ego frame
        self.slopes = np.broadcast_to(np.tan(self.elev)[None], (spec.azimuth_steps, spec.beams))

    def scan(self, road: RoadMap, pose: np.ndarray, boxes_world: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Points float32 [P, 4] (x, y, z, intensity) in the ego frame at pose (x, y, yaw)."""
        sp = self.spec
        dist, cls = cast_rays(road, pose[:2], sp.height, self.az + pose[2], self.slopes, sp.max_range, boxes_world)
        rng3 = dist * np.sqrt(1 + self.slopes**2)  # [A, B] 3D range
        keep = rng3 <= sp.max_range
        if sp.dropout > 0:
            keep &= rng.random(keep.shape) >= sp.dropout
        scale = np.ones_like(dist)
        if sp.range_noise > 0:
            noisy = np.maximum(rng3 + rng.normal(0.0, sp.range_noise, rng3.shape), 0.05)
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = np.where(keep, noisy / rng3, 1.0)
        intensity = INTENSITY[cls]
        painted = paint_at(road, pose[:2], self.az + pose[2], np.where(cls == ROAD, dist, np.inf)) > 0
        intensity = np.where(painted, PAINT_INTENSITY, intensity)  # retro-reflective lane paint
        a, b = np.nonzero(keep)  # azimuth-major order, like a spinning sensor
        s = dist[a, b] * scale[a, b]
        az = self.az[a]
        pts = np.empty((len(a), 4), np.float32)
        pts[:, 0] = s * np.cos(az)
        pts[:, 1] = s * np.sin(az)
        pts[:, 2] = sp.height + self.slopes[a, b] * s
        pts[:, 3] = intensity[a, b] * (1.0 - 0.3 * rng3[a, b] / sp.max_range)
        return pts
