"""The scripted expert: pure-pursuit route following plus IDM speed control, with optional noise.

Steering is pure pursuit (Coulter, "Implementation of the pure pursuit path tracking algorithm",
CMU-RI-TR-92-01, 1992) towards a look-ahead point on the route; acceleration is the Intelligent
Driver Model (Treiber et al. 2000, arXiv:cond-mat/0002177) against the first road user in the
route corridor or the stop line of an all-way stop. Noise is an Ornstein-Uhlenbeck process on
both actions so that recorded data also holds smooth off-expert deviations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WHEELBASE, EGO_WIDTH
from drivewm.geometry import world_to_ego
from drivewm.sim.maps import PATH_SPACING
from drivewm.sim.scenario import Scenario
from drivewm.sim.traffic import corridor_leader, idm_accel

NOISE_ACCEL_STD = 1.5  # m/s^2 at expert_noise = 1
NOISE_STEER_STD = 0.08  # rad at expert_noise = 1
NOISE_TAU = 1.5  # s, correlation time of the OU noise


class ExpertDriver:
    """Route following + IDM; `act(env_or_scenario)` returns float32 [2] (accel, steer)."""

    def __init__(self, noise: float = 0.0, seed: int = 0) -> None:
        if noise < 0:
            raise ValueError(f"ExpertDriver noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros(2)

    def clean_action(self, sc: Scenario) -> np.ndarray:
        cfg, ego = sc.cfg, sc.ego
        # Pure pursuit on the route: look-ahead grows with speed.
        look = float(np.clip(3.0 + 0.8 * ego.v, 5.0, 18.0))
        target_s = min(sc.ego_s + look, sc.paths.length[sc.route_path])
        txy, _ = sc.paths.pose(np.array([sc.route_path]), np.array([target_s]))
        local = world_to_ego(txy, ego.pose())[0]
        ld2 = max(float(local @ local), 1.0)
        steer = float(np.arctan(2.0 * local[1] * EGO_WHEELBASE / ld2))
        # IDM: first road user in the corridor ahead on the route, or the stop line.
        boxes, speed, active = sc.agent_boxes_world()
        win, win_s = sc.paths.window(np.array([sc.route_path]), np.array([sc.ego_s]), 50.0)
        gap, v_lead = corridor_leader(win, win_s, np.array([sc.ego_s]), np.array([EGO_LENGTH / 2 + EGO_BOX_OFFSET_X]),
                                      np.array([EGO_WIDTH / 2]), boxes[active, :2], boxes[active, 3] / 2,
                                      boxes[active, 4] / 2, speed[active], boxes[active, 6], np.array([ego.yaw]),
                                      np.array([-1]))
        gap, v_lead = float(gap[0]), float(v_lead[0])
        stop = sc.road.stop_s[sc.route_path]
        if not sc.ego_cleared and sc.ego_s < stop:
            stop_gap = stop - sc.ego_s - EGO_BOX_OFFSET_X - EGO_LENGTH / 2
            if stop_gap < gap:
                gap, v_lead = stop_gap, 0.0
        if sc.road.ring is not None:  # merge into the roundabout only into a gap
            centre_s = sc.ego_s + EGO_BOX_OFFSET_X
            ring_gap = float(sc.ring_yield_gap(np.array([sc.route_path]), np.array([centre_s]),
                                               np.array([EGO_LENGTH / 2]), include_ego=False)[0])
            if ring_gap < gap:
                gap, v_lead = ring_gap, 0.0
        i = int(np.clip(sc.ego_s / PATH_SPACING, 0, sc.paths.vcap.shape[1] - 1))
        v0 = min(cfg.target_speed, float(sc.paths.vcap[sc.route_path, i]))
        remaining = sc.route_s1 - sc.ego_s
        if remaining < 30.0:  # come to a stop at the goal
            gap, v_lead = min(gap, max(remaining - 2.0, 0.0)), 0.0
        accel = float(idm_accel(np.array([ego.v]), np.array([v0]), np.array([gap]), np.array([ego.v - v_lead]), sc.idm)[0])
        # A frame lasts 1/hz s: do not command more than reaches the IDM's speed in that time, nor reverse.
        frame = 1.0 / cfg.hz
        accel = max(accel, -ego.v / frame)
        return np.array([np.clip(accel, -cfg.max_brake, cfg.max_accel), np.clip(steer, -cfg.max_steer, cfg.max_steer)])

    def act(self, env_or_scenario: Any) -> np.ndarray:
        """Action float32 [2] for a DrivingEnv or a Scenario, with this driver's noise added."""
        sc = env_or_scenario if isinstance(env_or_scenario, Scenario) else getattr(env_or_scenario, "scenario", None)
        if not isinstance(sc, Scenario):
            raise TypeError(f"ExpertDriver.act needs a DrivingEnv or a Scenario, got {type(env_or_scenario).__name__}")
        action = self.clean_action(sc)
        if self.noise > 0:
            dt = 1.0 / sc.cfg.hz
            decay = np.exp(-dt / NOISE_TAU)
            std = self.noise * np.array([NOISE_ACCEL_STD, NOISE_STEER_STD])
            self.state = decay * self.state + np.sqrt(1 - decay**2) * std * self.rng.standard_normal(2)
            action = action + self.state
        cfg = sc.cfg
        return np.array([np.clip(action[0], -cfg.max_brake, cfg.max_accel),
                         np.clip(action[1], -cfg.max_steer, cfg.max_steer)], dtype=np.float32)
