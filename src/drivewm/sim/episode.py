"""simulate_episode: one seeded episode of the expert driving, every sensor recorded (the data contract)."""

from __future__ import annotations

import numpy as np

from drivewm.sim.config import SimConfig
from drivewm.sim.expert import ExpertDriver
from drivewm.sim.scenario import Scenario
from drivewm.sim.sensors.suite import SensorSuite


def simulate_episode(cfg: SimConfig, seed: int, frames: int) -> dict[str, np.ndarray]:
    """Arrays of one episode (deterministic: the same cfg, seed and frames give byte-identical arrays).

    The world (layout, map, traffic, ego start) is drawn from `seed`; its size follows `frames`
    (the route is as long as the expert can drive in that time), so a longer episode of the same
    seed is a different world.

    Keys: occ uint8 [T, X, Y, Z]; occ_mask bool [T, X, Y, Z] (cfg.visibility); lidar float32 [P, 4]
    with lidar_offsets int64 [T + 1] (cfg.lidar); camera uint8 [T, H, W, 3] (cfg.camera);
    ego_pose float32 [T, 3] (x, y, yaw, world); action float32 [T, 2] (accel, steer applied from
    t to t + 1); agents float32 [T, K, 8] (x, y, z, length, width, height, yaw, class; ego frame) +
    agents_valid bool [T, K], K = max_vehicles + max_pedestrians (padding is invalid); agents_velocity float32
    [T, K, 2] (ground velocity vx, vy in m/s along the ego's axes, the same slots); ego_speed float32
    [T]; collision bool [T]; offroad bool [T]; route float32 [R, 2] (world waypoints, 2 m apart);
    camera_intrinsics float32 [3, 3] and camera_extrinsics float32 [4, 4] (cfg.camera and cfg.camera_calibration).
    """
    if not isinstance(cfg, SimConfig):
        raise TypeError(f"cfg must be a SimConfig, got {type(cfg).__name__}")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    sc = Scenario(cfg, seed, int(frames))
    sensors = SensorSuite(sc)
    expert = ExpertDriver(noise=cfg.expert_noise, seed=int(np.random.SeedSequence(int(seed)).generate_state(1)[0]))
    rec: dict[str, list] = {k: [] for k in ("occ", "occ_mask", "lidar", "camera", "agents", "agents_valid",
                                            "agents_velocity", "ego_pose", "action", "ego_speed", "collision", "offroad")}
    collided, offroad = sc.in_collision(), sc.is_offroad()
    for t in range(frames):
        for k, v in sensors.read(sc).items():
            rec[k].append(v)
        rec["ego_pose"].append(sc.ego.pose())
        rec["ego_speed"].append(sc.ego.v)
        rec["collision"].append(collided)
        rec["offroad"].append(offroad)
        action = expert.act(sc)
        rec["action"].append(action)
        if t < frames - 1:
            sc.step(action)
            collided, offroad = sc.collided, sc.offroad_now
    k_max = cfg.max_vehicles + cfg.max_pedestrians  # the same K for every episode of a config
    out = {
        "occ": np.stack(rec["occ"]).astype(np.uint8),
        "ego_pose": np.asarray(rec["ego_pose"], np.float32),
        "action": np.asarray(rec["action"], np.float32),
        "agents": _pad(np.stack(rec["agents"]).astype(np.float32), k_max),
        "agents_valid": _pad(np.stack(rec["agents_valid"]).astype(bool), k_max),
        "agents_velocity": _pad(np.stack(rec["agents_velocity"]).astype(np.float32), k_max),
        "ego_speed": np.asarray(rec["ego_speed"], np.float32),
        "collision": np.asarray(rec["collision"], bool),
        "offroad": np.asarray(rec["offroad"], bool),
        "route": sc.route_points(),
    }
    if cfg.visibility:
        out["occ_mask"] = np.stack(rec["occ_mask"]).astype(bool)
    if cfg.lidar:
        counts = [len(p) for p in rec["lidar"]]
        out["lidar"] = np.concatenate(rec["lidar"]).astype(np.float32).reshape(-1, 4)
        out["lidar_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if cfg.camera:
        out["camera"] = np.stack(rec["camera"]).astype(np.uint8)
        if cfg.camera_calibration:
            out["camera_intrinsics"] = sensors.camera.intrinsics()
            out["camera_extrinsics"] = sensors.camera.extrinsics()
    return out


def _pad(a: np.ndarray, k: int) -> np.ndarray:
    """Pad axis 1 (agents) with zeros / False up to k slots."""
    if a.shape[1] >= k:
        return a
    pad = np.zeros((a.shape[0], k - a.shape[1], *a.shape[2:]), a.dtype)
    return np.concatenate([a, pad], axis=1)
