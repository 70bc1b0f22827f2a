"""Procedural driving simulator: seeded road maps, IDM traffic, pedestrians, a bicycle-model ego and sensors.

Public API: `SimConfig`, `sim_preset`, `simulate_episode`, `DrivingEnv`, `ExpertDriver`, and the
ego footprint constants (nuScenes / ST-P3 ego box 4.084 m x 1.85 m).
`gymnasium.make("drivewm/Driving-v0", cfg=sim_preset("tiny"))` builds the environment too.
"""

import gymnasium

from drivewm.sim.config import (DEFAULT_LAYOUTS, EGO_BOX_OFFSET_X, EGO_HEIGHT, EGO_LENGTH, EGO_WHEELBASE, EGO_WIDTH, LAYOUTS,
                                CameraSpec, LidarSpec, SimConfig, sim_preset)
from drivewm.sim.env import DrivingEnv
from drivewm.sim.episode import simulate_episode
from drivewm.sim.expert import ExpertDriver
from drivewm.sim.scenario import Scenario

GYM_ID = "drivewm/Driving-v0"
if GYM_ID not in gymnasium.registry:
    gymnasium.register(id=GYM_ID, entry_point="drivewm.sim.env:DrivingEnv")

__all__ = ["SimConfig", "LidarSpec", "CameraSpec", "sim_preset", "simulate_episode", "DrivingEnv", "ExpertDriver", "Scenario",
           "EGO_LENGTH", "EGO_WIDTH", "EGO_HEIGHT", "EGO_WHEELBASE", "EGO_BOX_OFFSET_X", "LAYOUTS", "DEFAULT_LAYOUTS", "GYM_ID"]
