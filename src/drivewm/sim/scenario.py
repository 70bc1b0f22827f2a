"""One simulated world: a seeded road map, traffic, pedestrians and the ego, stepped frame by frame.

`Scenario(cfg, seed, frames)` draws everything from `seed` (separate random streams for the map,
the traffic and the sensors, so that changing a sensor setting does not change the world), and
`step(action)` advances one frame (1 / hz seconds) in `cfg.substeps` physics steps.
"""

from __future__ import annotations

import copy

import numpy as np

from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WIDTH, SimConfig
from drivewm.sim.ego import EgoState, bicycle_step
from drivewm.geometry import ego_to_world, world_to_ego, wrap_angle
from drivewm.sim.geometry import box_corners, boxes_overlap, points_in_box
from drivewm.sim.maps import PATH_SPACING, StreetStyle, generate_map
from drivewm.sim.rasterize import CAR, DRIVEABLE
from drivewm.sim.traffic import (PED_SIZE, PEDESTRIAN, IDMParams, PathTable, corridor_leader, idm_accel,
                                 spawn_pedestrians, spawn_vehicles)

LANE_CHANGE_RATE = 1.2  # m/s: lateral speed of a lane change (about 3 s for a 3.5 m lane)
LANE_CHANGE_LOOK = 25.0  # m: a vehicle changes lanes when its leader is this close and slower than it wants
STOP_WAIT = 1.0  # seconds a vehicle stands at an all-way stop before it may enter
RING_CLEARANCE = 14.0  # m: a roundabout entry waits while a vehicle in the ring is this close to it


class Scenario:
    """The full mutable state of one episode (deep-copyable; the static map is shared read-only)."""

    def __init__(self, cfg: SimConfig, seed: int, frames: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames!r}")
        self.cfg = cfg
        self.grid = cfg.grid_spec
        self.dt = 1.0 / (cfg.hz * cfg.substeps)
        map_rng, traffic_rng, self.sensor_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3))
        layout = cfg.layouts[int(map_rng.integers(len(cfg.layouts)))]
        n_arms = {"intersection": 4, "roundabout": 4, "t_junction": 3}.get(layout, 2)
        a_in, a_out = (0, 1) if n_arms == 2 else tuple(int(a) for a in map_rng.choice(n_arms, 2, replace=False))
        self.route_len = frames / cfg.hz * cfg.target_speed * 1.1 + 15.0
        half_extent = max(abs(v) for v in (*self.grid.lower[:2], *self.grid.upper[:2]))
        margin = half_extent * 1.45 + 5.0
        # The ego starts on the inbound lane some way before the junction (or the middle of the road).
        d_in = float(map_rng.uniform(0.25, 0.6)) * self.route_len
        street = StreetStyle(cfg.tree_spacing, cfg.parking_pitch, cfg.parked_fraction) if cfg.roadside == "street" else None
        self.road = generate_map(layout, map_rng, cfg.raster_resolution, (a_in, a_out), d_in + 10.0,
                                 self.route_len - d_in + 10.0, margin, street)
        road = self.road
        self.paths = PathTable(road.paths)
        self.ped_paths = PathTable(road.ped_paths) if road.ped_paths else None
        lane = int(traffic_rng.integers(road.arms[a_in].lanes))
        self.route_path = road.path_arms.index((a_in, a_out, lane))
        s_start = road.arms[a_in].length - road.junction - d_in
        xy, yaw = self.paths.pose(np.array([self.route_path]), np.array([s_start]))
        self.ego = EgoState(x=float(xy[0, 0]), y=float(xy[0, 1]), yaw=float(yaw[0]),
                            v=float(cfg.target_speed * traffic_rng.uniform(0.3, 0.8)))
        self.route_s0 = s_start
        self.route_s1 = min(s_start + self.route_len, self.paths.length[self.route_path])
        self.ego_s = s_start
        self.ego_arrived, self.ego_cleared = np.inf, False
        lane_len = sum(2 * a.lanes * (a.length - road.junction) for a in road.arms)
        walk_len = sum(2 * (a.length - road.junction) for a in road.arms if "barrier" not in a.sides)
        n_veh = min(cfg.max_vehicles, int(round(cfg.vehicle_density * lane_len / 100)))
        n_ped = min(cfg.max_pedestrians, int(round(cfg.pedestrian_density * walk_len / 100))) if road.ped_paths else 0
        self.vehicles = spawn_vehicles(road, self.paths, traffic_rng, n_veh, cfg.target_speed, xy)
        self.peds = spawn_pedestrians(road, self.ped_paths, traffic_rng, n_ped)
        self.traffic_rng = traffic_rng
        self.ped_walking = np.ones(len(self.peds.s))  # 0 while waiting at the kerb
        self.idm = IDMParams()
        self.time = 0.0
        self.collided = False
        self.offroad_now = False
        # Signalled junctions: arms along one axis share a phase; the cycle starts at a random point.
        self.light_phase: np.ndarray | None = None
        if cfg.traffic_lights and road.junction > 0 and road.ring is None:
            rel = np.array([a.angle - road.arms[0].angle for a in road.arms])
            self.light_phase = (np.abs(np.sin(rel)) > 0.5).astype(np.int64)
            self.light_offset = float(traffic_rng.uniform(0, 2 * (cfg.light_green + cfg.light_clear)))
            self.path_arm_in = np.array([a for a, _, _ in road.path_arms])

    # ----- geometry of the road users -------------------------------------------------------
    def vehicle_poses(self) -> tuple[np.ndarray, np.ndarray]:
        xy, yaw = self.paths.pose(self.vehicles.path, self.vehicles.s)
        if not self.cfg.lane_changes:
            return xy, yaw
        lat = self.vehicles.lat
        xy = xy + lat[:, None] * np.stack([-np.sin(yaw), np.cos(yaw)], axis=-1)
        # Heading towards the new lane while the offset closes at LANE_CHANGE_RATE.
        return xy, yaw - np.sign(lat) * np.arctan2(np.where(lat != 0, LANE_CHANGE_RATE, 0.0),
                                                  np.maximum(self.vehicles.v, 1.0))

    def ped_poses(self) -> tuple[np.ndarray, np.ndarray]:
        if self.ped_paths is None or len(self.peds.s) == 0:
            return np.zeros((0, 2)), np.zeros(0)
        return self.ped_paths.pose(self.peds.path, self.peds.s)

    def agent_boxes_world(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes [K, 8] (x, y, z, length, width, height, yaw, class) in the world, speeds [K], active [K]."""
        vxy, vyaw = self.vehicle_poses()
        pxy, pyaw = self.ped_poses()
        nv, npd = len(vxy), len(pxy)
        boxes = np.zeros((nv + npd, 8))
        boxes[:nv, :2], boxes[:nv, 3:6], boxes[:nv, 6], boxes[:nv, 7] = vxy, self.vehicles.size, vyaw, self.vehicles.cls
        boxes[nv:, :2], boxes[nv:, 3:6], boxes[nv:, 6], boxes[nv:, 7] = pxy, PED_SIZE, pyaw, PEDESTRIAN
        boxes[:, 2] = boxes[:, 5] / 2
        speed = np.concatenate([self.vehicles.v, self.peds.v0 * self.ped_walking])
        active = np.concatenate([self.vehicles.active, self.peds.active])
        return boxes, speed, active

    def agents_ego_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [K, 8] in the ego frame and a mask of those active and inside the grid's footprint."""
        boxes, _, active = self.agent_boxes_world()
        pose = self.ego.pose()
        out = boxes.copy()
        out[:, :2] = world_to_ego(boxes[:, :2], pose)
        out[:, 6] = wrap_angle(boxes[:, 6] - pose[2])
        lo, hi = self.grid.lower, self.grid.upper
        inside = (out[:, 0] >= lo[0]) & (out[:, 0] < hi[0]) & (out[:, 1] >= lo[1]) & (out[:, 1] < hi[1])
        return out.astype(np.float32), active & inside

    def agents_velocity_ego_frame(self) -> np.ndarray:
        """float32 [K, 2]: each road user's ground velocity (vx, vy, m/s) along the ego's axes, the same slots as
        `agents_ego_frame`: its speed along its heading, as a tracker would report it."""
        boxes, speed, _ = self.agent_boxes_world()
        yaw = boxes[:, 6] - self.ego.pose()[2]
        return np.stack([speed * np.cos(yaw), speed * np.sin(yaw)], axis=-1).astype(np.float32)

    def route_points(self, spacing: float = 2.0) -> np.ndarray:
        s = np.arange(self.route_s0, self.route_s1 + 1e-6, spacing)
        xy, _ = self.paths.pose(np.full(len(s), self.route_path), s)
        return xy.astype(np.float32)

    # ----- junction rule ---------------------------------------------------------------------
    def _in_junction(self, path: np.ndarray, s: np.ndarray, half_len: np.ndarray, cleared: np.ndarray) -> np.ndarray:
        stop, exit_ = self.road.stop_s[path], self.road.exit_s[path]
        return cleared & (s - half_len < exit_) & (s + half_len > stop - 5.0)

    def green_arms(self, time: float | None = None) -> np.ndarray:
        """bool [arms]: which arms' signals show green at `time` (default now); all True without lights."""
        if self.light_phase is None:
            return np.ones(len(self.road.arms), bool)
        g, c = self.cfg.light_green, self.cfg.light_clear
        t = ((self.time if time is None else time) + self.light_offset) % (2 * (g + c))
        phase = 0 if t < g else 1 if g + c <= t < 2 * g + c else -1  # -1: all red, the junction clears
        return self.light_phase == phase

    def _update_lights(self) -> None:
        """On green a road user enters once its front is within stopping reach of the line (a comfortable stop
        would end past it); on red it stops at the line, so the ones behind queue until the next green."""
        veh, road = self.vehicles, self.road
        green = self.green_arms()
        reach = lambda v: np.maximum(3.0, v * v / (2 * self.idm.b) + 2.0)  # noqa: E731
        front = road.stop_s[veh.path] - (veh.s + veh.size[:, 0] / 2)
        veh.cleared |= veh.active & green[self.path_arm_in[veh.path]] & (front < reach(veh.v))
        ego_front = road.stop_s[self.route_path] - (self.ego_s + EGO_BOX_OFFSET_X + EGO_LENGTH / 2)
        if ego_front < -0.5 or (green[self.path_arm_in[self.route_path]] and ego_front < float(reach(self.ego.v))):
            self.ego_cleared = True

    def _update_junction(self) -> None:
        if self.road.junction <= 0:
            return
        if self.light_phase is not None:
            self._update_lights()
            return
        veh = self.vehicles
        hl = veh.size[:, 0] / 2
        stop = self.road.stop_s[veh.path]
        at_line = ~veh.cleared & veh.active & (stop - (veh.s + hl) < 3.0) & (veh.v < 0.3)
        veh.arrived = np.where(at_line & np.isinf(veh.arrived), self.time, veh.arrived)
        ego_hl = EGO_LENGTH / 2
        ego_front = self.ego_s + EGO_BOX_OFFSET_X
        ego_stop = self.road.stop_s[self.route_path]
        if not self.ego_cleared and ego_stop - (ego_front + ego_hl) < 3.0 and self.ego.v < 0.3 and np.isinf(self.ego_arrived):
            self.ego_arrived = self.time
        if not self.ego_cleared and ego_front + ego_hl > ego_stop + 0.5:
            self.ego_cleared = True  # ran the line or was let in: the ego is in the junction
        occupied = self._in_junction(veh.path, veh.s, hl, veh.cleared & veh.active)
        ego_in = self.ego_cleared and ego_front - ego_hl < self.road.exit_s[self.route_path]
        waiting = np.flatnonzero(np.isfinite(veh.arrived) & ~veh.cleared)
        cands = [(float(veh.arrived[i]), 0, int(i)) for i in waiting]
        if np.isfinite(self.ego_arrived) and not self.ego_cleared:
            cands.append((float(self.ego_arrived), 1, -1))
        conf = self.road.conflicts
        ring = self.road.ring is not None
        if ring:  # roundabout entries yield to circulating traffic near the entry point
            arm_in = np.array([a for a, _, _ in self.road.path_arms])
            vxy, _ = self.vehicle_poses()
            inside_xy = np.concatenate([vxy[occupied], [self.ego.box()[:2]] if ego_in else np.zeros((0, 2))])
        for t_arr, _, i in sorted(cands):
            p = self.route_path if i < 0 else veh.path[i]
            if self.time - t_arr < STOP_WAIT:
                continue
            if ring:
                near = np.linalg.norm(inside_xy - self.road.ring_entry[p], axis=1) < RING_CLEARANCE
                # Lanes of one arm merge into the single ring lane: one entering vehicle at a time per arm.
                merging = occupied & (arm_in[veh.path] == arm_in[p]) & (veh.s < self.road.ring_entry_s[veh.path] + 5.0)
                ego_merging = ego_in and arm_in[self.route_path] == arm_in[p] and i >= 0 and \
                    self.ego_s < self.road.ring_entry_s[self.route_path] + 5.0
                blocked = bool(near.any() or merging.any() or ego_merging)
            else:
                blocked = np.any(occupied & conf[p, veh.path]) or (ego_in and i >= 0 and conf[p, self.route_path])
            if not ring:  # all-way stop: first come, first served among conflicting paths
                earlier = [c for c in cands if c[0] < t_arr and not (veh.cleared[c[2]] if c[2] >= 0 else self.ego_cleared)]
                blocked |= any(conf[p, self.route_path if c[2] < 0 else veh.path[c[2]]] for c in earlier)
            if not blocked:
                if i < 0:
                    self.ego_cleared = True
                    ego_in = True
                else:
                    veh.cleared[i] = True
                    occupied[i] = True
                if ring:
                    inside_xy = np.concatenate([inside_xy, self.road.ring_entry[p][None]])

    # ----- stepping --------------------------------------------------------------------------
    def _ped_moving(self) -> np.ndarray:
        """1 for pedestrians walking, 0 for those waiting: at the kerb while a vehicle is near the crossing
        (on it, or approaching within 18 m at more than 0.5 m/s), anywhere while a vehicle is in the way."""
        if len(self.peds.s) == 0:
            return np.zeros(0)
        moving = np.ones(len(self.peds.s))
        veh = self.vehicles
        vxy, vyaw = self.vehicle_poses()
        ego_box = self.ego.box()
        # Never walk into a vehicle: stop when the next step would enter a (slightly inflated) box.
        ahead, _ = self.ped_paths.pose(self.peds.path, self.peds.s + 0.8)
        boxes = [(x, y, h, ln + 0.8, w + 0.8) for (x, y), h, (ln, w) in
                 zip(vxy[veh.active], vyaw[veh.active], veh.size[veh.active, :2])]
        for b in [*boxes, (ego_box[0], ego_box[1], ego_box[2], ego_box[3] + 0.8, ego_box[4] + 0.8)]:
            if abs(b[0] - ahead[:, 0]).min() < 8 and abs(b[1] - ahead[:, 1]).min() < 8:
                moving[points_in_box(ahead[:, 0], ahead[:, 1], b)] = 0.0
        cross = np.array([self.road.ped_cross[p] for p in self.peds.path])  # [N, 2] arc lengths
        near_kerb = (self.peds.s > cross[:, 0] - 1.0) & (self.peds.s < cross[:, 0])
        if self.light_phase is not None:  # signalled crossing: wait while the traffic crossed has green
            crossed_green = self.green_arms()[np.asarray(self.road.ped_arm)[self.peds.path]]
            moving[near_kerb & crossed_green] = 0.0
        if not near_kerb.any():
            return moving
        xy = np.concatenate([vxy[veh.active], [ego_box[:2]]])
        v = np.concatenate([veh.v[veh.active], [self.ego.v]])
        hl = np.concatenate([veh.size[veh.active, 0] / 2, [ego_box[3] / 2]])
        k = np.flatnonzero(near_kerb)
        a, _ = self.ped_paths.pose(self.peds.path[k], cross[k, 0])
        b, _ = self.ped_paths.pose(self.peds.path[k], cross[k, 1])
        ab = b - a  # [n, 2] the crossing segment
        t = np.clip(np.einsum("nmk,nk->nm", xy[None] - a[:, None], ab) / np.maximum((ab**2).sum(-1), 1e-6)[:, None], 0, 1)
        d = np.linalg.norm(xy[None] - (a[:, None] + t[..., None] * ab[:, None]), axis=-1)  # [n, M]
        wait = ((d < 18.0) & (v[None] > 0.5)) | (d < hl[None] + 1.5)
        moving[k[wait.any(1)]] = 0.0
        return moving

    def _substep(self, accel: float, steer: float) -> None:
        cfg, veh, dt = self.cfg, self.vehicles, self.dt
        self._update_junction()
        boxes, speed, active = self.agent_boxes_world()
        ego_box = self.ego.box()
        obs_xy = np.concatenate([boxes[active, :2], [ego_box[:2]]])
        obs_hl = np.concatenate([boxes[active, 3] / 2, [EGO_LENGTH / 2]])
        obs_hw = np.concatenate([boxes[active, 4] / 2, [EGO_WIDTH / 2]])
        obs_v = np.concatenate([speed[active], [self.ego.v]])
        obs_yaw = np.concatenate([boxes[active, 6], [self.ego.yaw]])
        idx_map = np.cumsum(active) - 1
        n = len(veh.s)
        if n:
            win, win_s = self.paths.window(veh.path, veh.s, 50.0)
            self_idx = np.where(veh.active, idx_map[:n], -1)
            gap, v_lead = corridor_leader(win, win_s, veh.s, veh.size[:, 0] / 2, veh.size[:, 1] / 2, obs_xy, obs_hl,
                                          obs_hw, obs_v, obs_yaw, boxes[:n, 6], self_idx)
            stop = self.road.stop_s[veh.path]
            must_stop = ~veh.cleared & (veh.s < stop)
            stop_gap = np.where(must_stop, stop - veh.s - veh.size[:, 0] / 2, np.inf)
            if self.road.ring is not None:  # merge into the roundabout only into a gap in the ring
                stop_gap = np.minimum(stop_gap, self.ring_yield_gap(veh.path, veh.s, veh.size[:, 0] / 2))
            use_stop = stop_gap < gap
            gap, v_lead = np.where(use_stop, stop_gap, gap), np.where(use_stop, 0.0, v_lead)
            cap = self.paths.vcap[veh.path, np.clip((veh.s / PATH_SPACING).astype(int), 0, self.paths.vcap.shape[1] - 1)]
            if cfg.lane_changes:
                self._change_lanes(gap, v_lead, dt)
            a = idm_accel(veh.v, np.minimum(veh.v0, cap), gap, veh.v - v_lead, self.idm)
            a = np.clip(a, -9.0, self.idm.a_max)
            v_new = np.maximum(veh.v + a * dt, 0.0)
            veh.s = np.where(veh.active, veh.s + 0.5 * (veh.v + v_new) * dt, veh.s)
            veh.v = np.where(veh.active, v_new, veh.v)
            self._respawn_vehicles()
        if len(self.peds.s):
            self.ped_walking = self._ped_moving()
            self.peds.s = self.peds.s + self.peds.v0 * self.ped_walking * dt
            done = self.peds.s >= self.ped_paths.length[self.peds.path] - 0.5
            if done.any():
                self.peds.path[done] = self.traffic_rng.integers(len(self.road.ped_paths), size=int(done.sum()))
                self.peds.s[done] = 0.0
        self.ego = bicycle_step(self.ego, accel, steer, dt, cfg.max_speed)
        self._project_ego()
        self.time += dt
        self.collided |= self.in_collision()
        self.offroad_now |= self.is_offroad()

    def ring_yield_gap(self, path: np.ndarray, s: np.ndarray, half_len: np.ndarray, include_ego: bool = True) -> np.ndarray:
        """Gap to a yield line before the ring for road users whose entry has ring traffic within clearance."""
        road = self.road
        vxy, _ = self.vehicle_poses()
        xy = np.concatenate([vxy[self.vehicles.active], [self.ego.box()[:2]] if include_ego else np.zeros((0, 2))])
        r = np.hypot(xy[:, 0], xy[:, 1])
        circ = xy[(r > road.ring[0] - 1.0) & (r < road.ring[1] + 0.5)]  # road users in the ring
        gap = np.full(len(s), np.inf)
        if len(circ) == 0:
            return gap
        near = np.linalg.norm(circ[None] - road.ring_entry[path][:, None], axis=-1) < RING_CLEARANCE  # [N, C]
        line = road.ring_yield_s[path]  # the front stops here, clear of the circulating lane
        before = s + half_len < line + 0.5
        return np.where(near.any(1) & before, line - s - half_len, gap)

    def _change_lanes(self, gap: np.ndarray, v_lead: np.ndarray, dt: float) -> None:
        """Close the offsets of lane changes under way; start one for a vehicle stuck behind a slower leader on a
        multi-lane road when the other lane is free from 12 m behind to 20 m ahead (not within 25 m of a junction)."""
        veh, road = self.vehicles, self.road
        veh.lat = np.sign(veh.lat) * np.maximum(np.abs(veh.lat) - LANE_CHANGE_RATE * dt, 0.0)
        stop = np.where(np.isfinite(road.stop_s[veh.path]), road.stop_s[veh.path], self.paths.length[veh.path])
        want = (veh.active & (veh.lat == 0) & (gap < LANE_CHANGE_LOOK) & (v_lead < veh.v0 - 2.0)
                & (veh.s < stop - 25.0) & (veh.s > 5.0))
        if not want.any():
            return
        xy, _ = self.vehicle_poses()
        ahead = np.arange(-12.0, 20.1, 2.0)  # the stretch of the other lane that must be free
        for i in np.flatnonzero(want):
            others = np.concatenate([xy[veh.active & (np.arange(len(veh.s)) != i)], [[self.ego.x, self.ego.y]]])
            a, b, lane = road.path_arms[veh.path[i]]
            if road.arms[a].lanes < 2:
                continue
            other = road.path_arms.index((a, b, 1 - lane)) if (a, b, 1 - lane) in road.path_arms else -1
            if other < 0:
                continue
            pts, _ = self.paths.pose(np.full(len(ahead), other), np.maximum(veh.s[i] + ahead, 0.0))
            if np.min(np.linalg.norm(others[:, None] - pts[None], axis=-1)) < 2.5:
                continue  # the other lane is taken (its centre line within 2.5 m of a road user)
            new_xy, new_yaw = self.paths.pose(np.array([other]), veh.s[i : i + 1])
            normal = np.array([-np.sin(new_yaw[0]), np.cos(new_yaw[0])])
            veh.lat[i] = float((xy[i] - new_xy[0]) @ normal)
            veh.path[i] = other

    def _respawn_vehicles(self) -> None:
        veh = self.vehicles
        done = veh.active & (veh.s >= self.paths.length[veh.path] - 3.0)
        veh.active &= ~done
        for i in np.flatnonzero(~veh.active):
            p = int(self.traffic_rng.integers(len(self.road.paths)))
            start, _ = self.paths.pose(np.array([p]), np.array([0.0]))
            vxy, _ = self.vehicle_poses()
            others = np.concatenate([vxy[veh.active], [[self.ego.x, self.ego.y]]])
            if np.min(np.linalg.norm(others - start[0], axis=1)) > 15.0:
                veh.path[i], veh.s[i], veh.v[i], veh.active[i] = p, 0.0, veh.v0[i] * 0.6, True
                veh.arrived[i], veh.cleared[i], veh.lat[i] = np.inf, False, 0.0

    def _project_ego(self) -> None:
        """Track the ego's arc length on its route path (local search around the last value)."""
        s = self.ego_s + np.arange(-20.0, 30.0, 0.25)
        s = np.clip(s, 0, self.paths.length[self.route_path])
        xy, _ = self.paths.pose(np.full(len(s), self.route_path), s)
        self.ego_s = float(s[np.argmin(np.linalg.norm(xy - [self.ego.x, self.ego.y], axis=1))])

    def step(self, action: np.ndarray) -> None:
        """Advance one frame with action (accel m/s^2, steer rad), clipped to the configured limits."""
        accel = float(np.clip(action[0], -self.cfg.max_brake, self.cfg.max_accel))
        steer = float(np.clip(action[1], -self.cfg.max_steer, self.cfg.max_steer))
        self.collided, self.offroad_now = False, False
        for _ in range(self.cfg.substeps):
            self._substep(accel, steer)

    # ----- events ----------------------------------------------------------------------------
    def in_collision(self) -> bool:
        """The ego footprint overlaps another road user or a static obstacle (building, tree, parked car...)."""
        ego_box = self.ego.box()
        boxes, _, active = self.agent_boxes_world()
        corners = box_corners(*ego_box)
        near = active & (np.linalg.norm(boxes[:, :2] - ego_box[:2], axis=1) < 10.0)
        for b in boxes[near]:
            if boxes_overlap(corners, box_corners(b[0], b[1], b[6], b[3], b[4])):
                return True
        r = self.road
        lx, ly = np.meshgrid(np.linspace(-EGO_LENGTH / 2, EGO_LENGTH / 2, 9), np.linspace(-EGO_WIDTH / 2, EGO_WIDTH / 2, 5))
        pts = ego_to_world(np.stack([lx, ly], -1), np.asarray(ego_box[:3]))
        ix, iy = r.cell_index(pts)
        return bool(np.any(r.height[ix, iy] > 0.3))

    def is_offroad(self) -> bool:
        """A corner of the ego footprint lies off the driveable surface (road, crosswalk, parking lane)."""
        corners = box_corners(*self.ego.box())
        ix, iy = self.road.cell_index(corners)
        cls = self.road.cls[ix, iy]
        return bool(np.any(~np.isin(cls, (*DRIVEABLE, CAR))))

    def clone(self) -> "Scenario":
        """An independent copy of the mutable state; the read-only static map is shared."""
        memo = {id(self.road): self.road, id(self.paths): self.paths, id(self.ped_paths): self.ped_paths,
                id(self.cfg): self.cfg, id(self.grid): self.grid}
        return copy.deepcopy(self, memo)

