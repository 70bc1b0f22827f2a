"""All sensors of one scenario, built once (the static tables) and read every frame."""

from __future__ import annotations

import numpy as np

from drivewm.sim.scenario import Scenario
from drivewm.sim.sensors.camera import Camera
from drivewm.sim.sensors.lidar import Lidar
from drivewm.sim.sensors.occupancy import OccupancyRenderer
from drivewm.sim.sensors.visibility import VisibilityCaster


class SensorSuite:
    """Occupancy (always), visibility, LiDAR and camera as the scenario's config asks."""

    def __init__(self, sc: Scenario) -> None:
        cfg = sc.cfg
        self.occupancy = OccupancyRenderer(sc.road, sc.grid)
        self.visibility = VisibilityCaster(sc.grid, cfg.lidar_spec.height) if cfg.visibility else None
        self.lidar = Lidar(cfg.lidar_spec) if cfg.lidar else None
        self.camera = Camera(cfg.camera_spec) if cfg.camera else None

    def read(self, sc: Scenario) -> dict[str, np.ndarray]:
        """One frame: occ [X, Y, Z] (+ occ_mask, lidar [P, 4], camera [H, W, 3]), agents [K, 8] + valid [K] +
        velocity [K, 2]."""
        pose = sc.ego.pose()
        boxes_ego, valid = sc.agents_ego_frame()
        out = {"agents": boxes_ego, "agents_valid": valid, "agents_velocity": sc.agents_velocity_ego_frame()}
        out["occ"] = self.occupancy.render(pose, boxes_ego, valid)
        if self.visibility is not None:
            out["occ_mask"] = self.visibility.mask(out["occ"])
        if self.lidar is not None or self.camera is not None:
            boxes_w, _, active = sc.agent_boxes_world()
            boxes_w = boxes_w[active]
            if self.lidar is not None:
                out["lidar"] = self.lidar.scan(sc.road, pose, boxes_w, sc.sensor_rng)
            if self.camera is not None:
                out["camera"] = self.camera.render(sc.road, pose, boxes_w)
        return out
