"""Simulator sensor throughput (frames/s on one core) against a naive per-ray / per-column Python loop.

Cases, at the occ3d (200x200x16, 32x1024 LiDAR) and tiny presets: occupancy alone, occupancy +
LiDAR, all sensors (occupancy, visibility, LiDAR, camera); the front camera alone at 64 x 128 (the
tiny_camera preset, beside occupancy there); and the full simulate_episode (world stepping + expert + all
sensors). The naive reference renders the same frame with plain Python
loops (one ray / one voxel column at a time), timed on a subset and scaled to a full frame.
Times are process CPU seconds with one thread, so other work on the machine does not count.
Prints one JSON line per comparison: ratio = ours / reference frames per second (> 1: ours faster).

    python benchmarks/bench_sim.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from drivewm.sim import ExpertDriver, Scenario, sim_preset, simulate_episode  # noqa: E402
from drivewm.sim.sensors.occupancy import voxels_below  # noqa: E402
from drivewm.sim.sensors.suite import SensorSuite  # noqa: E402

TARGETS = {("occ3d", "occupancy"): 200.0, ("occ3d", "occupancy+lidar"): 20.0, ("tiny_camera", "camera"): 100.0}


def cpu_time(fn, repeats: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t0) / repeats


def naive_occupancy_columns(sc: Scenario, pose: np.ndarray, boxes: np.ndarray, valid: np.ndarray, cols: int) -> None:
    """One voxel column at a time: world lookup, then every agent box tested for the column."""
    grid, road = sc.grid, sc.road
    nx, ny, nz = grid.shape
    occ = np.full(grid.shape, grid.free_id, np.uint8)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    g = int(np.floor((-0.01 - grid.lower[2]) / grid.voxel_size))
    for k in range(cols):
        i, j = divmod(k, ny)
        ex = grid.lower[0] + (i + 0.5) * grid.voxel_size
        ey = grid.lower[1] + (j + 0.5) * grid.voxel_size
        wx, wy = pose[0] + c * ex - s * ey, pose[1] + s * ex + c * ey
        ci = min(max(int((wx - road.origin[0]) / road.res), 0), road.cls.shape[0] - 1)
        cj = min(max(int((wy - road.origin[1]) / road.res), 0), road.cls.shape[1] - 1)
        h = float(road.height[ci, cj])
        n = int(voxels_below(grid, np.array([h]))[0]) if h > 0 else 1
        for z in range(g, g + n):
            occ[i, j, z] = road.cls[ci, cj]
        for b, ok in zip(boxes, valid):
            if not ok:
                continue
            dx, dy = ex - b[0], ey - b[1]
            lx, ly = math.cos(b[6]) * dx + math.sin(b[6]) * dy, -math.sin(b[6]) * dx + math.cos(b[6]) * dy
            if abs(lx) <= b[3] / 2 and abs(ly) <= b[4] / 2:
                for z in range(g, g + int(voxels_below(grid, np.array([b[5]]))[0])):
                    occ[i, j, z] = int(b[7])


def naive_ray(sc: Scenario, pose: np.ndarray, az: float, slope: float, max_s: float, boxes: np.ndarray, sz: float) -> float:
    """March one ray cell by cell; at each step test the height raster and every agent box."""
    road = sc.road
    ca, sa = math.cos(az), math.sin(az)
    d = road.res
    while d <= max_s:
        x, y, z = pose[0] + ca * d, pose[1] + sa * d, sz + slope * d
        ci = min(max(int((x - road.origin[0]) / road.res), 0), road.cls.shape[0] - 1)
        cj = min(max(int((y - road.origin[1]) / road.res), 0), road.cls.shape[1] - 1)
        if z <= road.height[ci, cj]:
            return d
        for b in boxes:
            dx, dy = x - b[0], y - b[1]
            lx, ly = math.cos(b[6]) * dx + math.sin(b[6]) * dy, -math.sin(b[6]) * dx + math.cos(b[6]) * dy
            if abs(lx) <= b[3] / 2 and abs(ly) <= b[4] / 2 and z <= b[5]:
                return d
        d += road.res
    return math.inf


def bench_preset(preset: str, quick: bool) -> list[dict]:
    cfg = sim_preset(preset)
    sc = Scenario(cfg, seed=0, frames=40)
    suite, expert = SensorSuite(sc), ExpertDriver()
    states = []
    for _ in range(4 if quick else 10):  # realistic states along the expert's drive
        sc.step(expert.act(sc))
        boxes_ego, valid = sc.agents_ego_frame()
        bw, _, active = sc.agent_boxes_world()
        states.append((sc.ego.pose(), boxes_ego, valid, bw[active]))
    reps = 1 if quick else 2

    def run(parts: tuple[str, ...]) -> float:
        def frame_all() -> None:
            for pose, be, va, bw in states:
                if "camera_only" in parts:
                    suite.camera.render(sc.road, pose, bw)
                    continue
                occ = suite.occupancy.render(pose, be, va)
                if "vis" in parts:
                    suite.visibility.mask(occ)
                if "lidar" in parts:
                    suite.lidar.scan(sc.road, pose, bw, sc.sensor_rng)
                if "camera" in parts:
                    suite.camera.render(sc.road, pose, bw)
        return len(states) / cpu_time(frame_all, reps)

    pose, be, va, bw = states[-1]
    cols = 400 if quick else 2000
    t_occ = cpu_time(lambda: naive_occupancy_columns(sc, pose, be, va, cols), 1) * (np.prod(cfg.grid_spec.shape[:2]) / cols)
    ls, cs = cfg.lidar_spec, cfg.camera_spec
    rays = 24 if quick else 96
    rng = np.random.default_rng(0)
    az = rng.uniform(-np.pi, np.pi, rays)
    slopes = np.tan(np.deg2rad(rng.uniform(ls.elevation_min, ls.elevation_max, rays)))
    t_ray = cpu_time(lambda: [naive_ray(sc, pose, a, t, ls.max_range, bw, ls.height) for a, t in zip(az, slopes)], 1) / rays
    t_lidar = t_ray * ls.beams * ls.azimuth_steps
    t_cam = t_ray * cs.height * cs.width * cs.max_range / ls.max_range
    t_vis = t_ray * np.prod(cfg.grid_spec.shape[:2])  # at least one naive ray per column
    if preset.endswith("_camera"):  # the camera at its training size, beside the occupancy it comes with
        cases = {"occupancy": (run(()), 1 / t_occ), "camera": (run(("camera_only",)), 1 / t_cam)}
    else:
        cases = {
            "occupancy": (run(()), 1 / t_occ),
            "occupancy+lidar": (run(("lidar",)), 1 / (t_occ + t_lidar)),
            "all_sensors": (run(("vis", "lidar", "camera")), 1 / (t_occ + t_lidar + t_cam + t_vis)),
        }
    lines = []
    for case, (ours, ref) in cases.items():
        lines.append({"bench": "sim", "case": f"{preset}/{case}", "unit": "frames/s (1 core CPU time)",
                      "ours": round(ours, 2), "reference": round(ref, 4), "ratio": round(ours / ref, 1),
                      "target": TARGETS.get((preset, case))})
    return lines


def bench_episode(preset: str, quick: bool) -> dict:
    """Whole simulate_episode (map generation, traffic, expert, all sensors) frames/s vs sensors alone."""
    frames = 8 if quick else 24
    cfg = sim_preset(preset)
    t = cpu_time(lambda: simulate_episode(cfg, seed=1, frames=frames), 1)
    return {"bench": "sim", "case": f"{preset}/simulate_episode_{frames}f", "unit": "frames/s (1 core CPU time)",
            "ours": round(frames / t, 2), "reference": None, "ratio": None, "target": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames and naive rays (under a minute)")
    args = ap.parse_args()
    for preset in ("occ3d", "tiny", "tiny_camera"):
        for line in bench_preset(preset, args.quick):
            print(json.dumps(line), flush=True)
    print(json.dumps(bench_episode("tiny", args.quick)), flush=True)


if __name__ == "__main__":
    main()
