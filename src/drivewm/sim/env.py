"""DrivingEnv: the simulator behind the gymnasium interface, with per-episode driving statistics.

Observation (dict): `occ` uint8 [X, Y, Z] semantic occupancy (ego frame); `ego_state` float32 [4]
(speed m/s, last acceleration, last steering, yaw rate rad/s); `route` float32 [16, 2] the next
route waypoints (2 m apart) in the ego frame; `goal` float32 [2] the route's end in the ego frame;
plus `occ_mask` and `camera` when the config asks for them (the variable-size LiDAR sweep of the
last frame is `env.last_sensors["lidar"]`). Action: Box [accel m/s^2, steer rad] within the
config's limits. Reward: 0.1 per metre of route progress, -1 on a collision, -0.2 off the road.
`clone()` deep-copies the full state, so a planner can use the simulator itself as a perfect model.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

from drivewm.sim.config import EGO_WHEELBASE, SimConfig, sim_preset
from drivewm.geometry import world_to_ego
from drivewm.sim.scenario import Scenario
from drivewm.sim.sensors.camera import PALETTE
from drivewm.sim.sensors.suite import SensorSuite

ROUTE_POINTS = 16
ROUTE_SPACING = 2.0


class DrivingEnv(gym.Env):
    """Gymnasium environment of the procedural driving simulator (one episode = one seeded scenario)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, cfg: SimConfig | None = None, render_mode: str | None = None) -> None:
        self.cfg = cfg if cfg is not None else sim_preset("tiny")
        if not isinstance(self.cfg, SimConfig):
            raise TypeError(f"DrivingEnv needs a SimConfig, got {type(self.cfg).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self.cfg.hz}
        grid = self.cfg.grid_spec
        spaces: dict[str, gym.Space] = {
            "occ": gym.spaces.Box(0, grid.num_classes - 1, grid.shape, np.uint8),
            "ego_state": gym.spaces.Box(-1e3, 1e3, (4,), np.float32),
            "route": gym.spaces.Box(-1e5, 1e5, (ROUTE_POINTS, 2), np.float32),  # metres, ego frame
            "goal": gym.spaces.Box(-1e5, 1e5, (2,), np.float32),
        }
        if self.cfg.visibility:
            spaces["occ_mask"] = gym.spaces.MultiBinary(list(grid.shape))
        if self.cfg.camera:
            cs = self.cfg.camera_spec
            spaces["camera"] = gym.spaces.Box(0, 255, (cs.height, cs.width, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(np.array([-self.cfg.max_brake, -self.cfg.max_steer], np.float32),
                                           np.array([self.cfg.max_accel, self.cfg.max_steer], np.float32),
                                           dtype=np.float32)
        self.scenario: Scenario | None = None
        self.sensors: SensorSuite | None = None
        self.last_sensors: dict[str, np.ndarray] = {}

    # ----- gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        scenario_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.scenario = Scenario(self.cfg, scenario_seed, self.cfg.episode_steps)
        self.sensors = SensorSuite(self.scenario)
        self._steps = 0
        self._last_action = np.zeros(2)
        self._yaw_rate = 0.0
        self._stats = {"distance": 0.0, "collisions": 0, "offroad": 0, "jerk_sum": 0.0, "steer_rate_sum": 0.0,
                       "speed_sum": 0.0, "progress0": self.scenario.ego_s, "scenario_seed": scenario_seed}
        return self._observe(), self._info()

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self.scenario is None:
            raise RuntimeError("DrivingEnv.step called before reset()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 2 finite numbers (accel m/s^2, steer rad), got {action!r}")
        a = np.clip(a, self.action_space.low, self.action_space.high)
        sc, st, dt = self.scenario, self._stats, 1.0 / self.cfg.hz
        before_xy, before_s = np.array([sc.ego.x, sc.ego.y]), sc.ego_s
        sc.step(a)
        self._steps += 1
        st["distance"] += float(np.hypot(sc.ego.x - before_xy[0], sc.ego.y - before_xy[1]))
        st["collisions"] += int(sc.collided)
        st["offroad"] += int(sc.offroad_now)
        st["jerk_sum"] += abs(a[0] - self._last_action[0]) / dt
        st["steer_rate_sum"] += abs(a[1] - self._last_action[1]) / dt
        st["speed_sum"] += sc.ego.v
        self._yaw_rate = sc.ego.v * np.tan(a[1]) / EGO_WHEELBASE
        self._last_action = a
        progress = sc.ego_s - before_s
        reward = 0.1 * progress - 1.0 * float(sc.collided) - 0.2 * float(sc.offroad_now)
        done_route = sc.ego_s >= sc.route_s1 - 2.0
        terminated = bool(done_route or (sc.collided and self.cfg.terminate_on_collision))
        truncated = bool(self._steps >= self.cfg.episode_steps and not terminated)
        return self._observe(), float(reward), terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """rgb_array: a bird's-eye view of the occupancy (top class per column), uint8 [X, Y, 3]."""
        if self.render_mode != "rgb_array" or "occ" not in self.last_sensors:
            return None
        occ = self.last_sensors["occ"]
        free = occ == self.cfg.grid_spec.free_id
        nz = occ.shape[2]
        top = nz - 1 - np.argmax(~free[..., ::-1], axis=-1)
        cls = np.take_along_axis(occ, top[..., None], axis=-1)[..., 0]
        img = PALETTE[cls].astype(np.uint8)
        img[free.all(-1)] = 0
        return img

    def clone(self) -> "DrivingEnv":
        """An independent deep copy of the full state (static map and sensor tables shared read-only)."""
        new = copy.copy(self)
        if self.scenario is not None:
            new.scenario = self.scenario.clone()
            new._stats = dict(self._stats)
            new._last_action = self._last_action.copy()
        new._np_random = copy.deepcopy(self._np_random)
        new.last_sensors = dict(self.last_sensors)
        return new

    # ----- helpers ---------------------------------------------------------------------------
    def _observe(self) -> dict[str, np.ndarray]:
        sc = self.scenario
        assert sc is not None and self.sensors is not None
        self.last_sensors = self.sensors.read(sc)
        pose = sc.ego.pose()
        s = np.minimum(sc.ego_s + ROUTE_SPACING * (np.arange(ROUTE_POINTS) + 1), sc.route_s1)
        xy, _ = sc.paths.pose(np.full(ROUTE_POINTS, sc.route_path), s)
        goal, _ = sc.paths.pose(np.array([sc.route_path]), np.array([sc.route_s1]))
        obs = {
            "occ": self.last_sensors["occ"],
            "ego_state": np.array([sc.ego.v, *self._last_action, self._yaw_rate], np.float32),
            "route": world_to_ego(xy, pose).astype(np.float32),
            "goal": world_to_ego(goal, pose)[0].astype(np.float32),
        }
        if self.cfg.visibility:
            obs["occ_mask"] = self.last_sensors["occ_mask"].astype(np.int8)
        if self.cfg.camera:
            obs["camera"] = self.last_sensors["camera"]
        return obs

    def _info(self) -> dict[str, Any]:
        """Driving statistics of the episode so far."""
        sc, st = self.scenario, self._stats
        assert sc is not None
        n = max(self._steps, 1)
        total = max(sc.route_s1 - st["progress0"], 1e-6)
        return {
            "route_completion": float(np.clip((sc.ego_s - st["progress0"]) / total, 0.0, 1.0)),
            "distance": st["distance"],
            "collisions": st["collisions"],
            "offroad": st["offroad"],
            "collision": bool(sc.collided),
            "is_offroad": bool(sc.offroad_now),
            "mean_speed": st["speed_sum"] / n,
            "jerk": float(st["jerk_sum"] / n),
            "steer_rate": float(st["steer_rate_sum"] / n),
            "steps": self._steps,
            "scenario_seed": st["scenario_seed"],
            "ego_pose": sc.ego.pose().astype(np.float32),
        }
