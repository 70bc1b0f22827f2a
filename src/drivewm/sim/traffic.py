"""Traffic: vehicles that follow lane paths with the Intelligent Driver Model and pedestrians on sidewalks.

Longitudinal control is the Intelligent Driver Model (IDM) of Treiber, Hennecke and Helbing,
"Congested traffic states in empirical observations and microscopic simulations", Phys. Rev. E 62
(2000), arXiv:cond-mat/0002177:

    a = a_max * (1 - (v / v0)^4 - (s*(v, dv) / gap)^2),   s* = s0 + v T + v dv / (2 sqrt(a_max b)).

The leader of a vehicle is the nearest road user (vehicle, ego or pedestrian) inside its lane
corridor ahead, so vehicles also stop for crossing pedestrians and for traffic in the junction.
Junctions are all-way stops served first-come-first-served: a vehicle stops at the stop line and
enters once no vehicle on a conflicting path is inside the junction and no conflicting vehicle
arrived earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivewm.data.spec import class_id
from drivewm.sim.maps import PATH_SPACING, RoadMap
from drivewm.sim.geometry import polyline_headings

# (class id, length, width, height, probability) of vehicle types.
VEHICLE_TYPES = (
    (class_id("car"), 4.5, 1.9, 1.6, 0.72),
    (class_id("truck"), 7.5, 2.4, 3.0, 0.1),
    (class_id("bus"), 11.0, 2.6, 3.2, 0.08),
    (class_id("motorcycle"), 2.1, 0.8, 1.5, 0.1),
)
PEDESTRIAN = class_id("pedestrian")
PED_SIZE = (0.6, 0.6, 1.75)


@dataclass(kw_only=True)
class IDMParams:
    """Intelligent Driver Model parameters (Treiber et al. 2000, city-traffic values)."""

    a_max: float = 1.5
    """Maximum acceleration (m/s^2)."""
    b: float = 2.0
    """Comfortable deceleration (m/s^2)."""
    headway: float = 1.2
    """Desired time headway T (s)."""
    s0: float = 2.0
    """Jam distance (m)."""
    delta: float = 4.0
    """Acceleration exponent."""


def idm_accel(v: np.ndarray, v0: np.ndarray, gap: np.ndarray, dv: np.ndarray, p: IDMParams) -> np.ndarray:
    """IDM acceleration for speeds v, desired speeds v0, bumper gaps and approach rates dv = v - v_lead."""
    s_star = p.s0 + np.maximum(0.0, v * p.headway + v * dv / (2 * np.sqrt(p.a_max * p.b)))
    gap = np.maximum(gap, 0.1)
    return p.a_max * (1 - (v / np.maximum(v0, 0.1)) ** p.delta - (s_star / gap) ** 2)


class PathTable:
    """All vehicle (or pedestrian) paths padded into one array for vectorized position lookups."""

    def __init__(self, paths: list[np.ndarray], lat_acc: float = 2.5) -> None:
        n = max(len(p) for p in paths)
        self.xy = np.zeros((len(paths), n, 2))
        self.heading = np.zeros((len(paths), n))
        self.vcap = np.full((len(paths), n), np.inf)
        self.length = np.array([(len(p) - 1) * PATH_SPACING for p in paths])
        for i, p in enumerate(paths):
            h = polyline_headings(p)
            self.xy[i, : len(p)], self.xy[i, len(p) :] = p, p[-1]
            self.heading[i, : len(p)], self.heading[i, len(p) :] = h, h[-1]
            kappa = np.abs(np.angle(np.exp(1j * np.diff(h, append=h[-1])))) / PATH_SPACING
            cap = np.sqrt(lat_acc / np.maximum(kappa, 1e-6))
            # Slow down before bends: the cap at s is the smallest cap over the next 20 m.
            win = int(20 / PATH_SPACING)
            padded = np.concatenate([cap, np.full(win, cap[-1])])
            self.vcap[i, : len(p)] = np.lib.stride_tricks.sliding_window_view(padded, win + 1)[: len(p)].min(1)

    def pose(self, path: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World xy [N, 2] and heading [N] at arc lengths s [N] of paths [N]."""
        f = np.clip(s / PATH_SPACING, 0, self.xy.shape[1] - 1.001)
        i = f.astype(np.int64)
        w = (f - i)[:, None]
        xy = self.xy[path, i] * (1 - w) + self.xy[path, i + 1] * w
        return xy, self.heading[path, i]

    def window(self, path: np.ndarray, s: np.ndarray, ahead: float) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, W, 2] of each path from s to s + ahead, and their arc lengths [N, W]."""
        w = int(ahead / PATH_SPACING) + 1
        i = np.clip((s / PATH_SPACING).astype(np.int64)[:, None] + np.arange(w)[None], 0, self.xy.shape[1] - 1)
        return self.xy[path[:, None], i], i * PATH_SPACING


def corridor_leader(window: np.ndarray, window_s: np.ndarray, s: np.ndarray, half_len: np.ndarray,
                    half_wid: np.ndarray, obs_xy: np.ndarray, obs_half_len: np.ndarray, obs_half_wid: np.ndarray,
                    obs_speed: np.ndarray, obs_heading: np.ndarray, heading: np.ndarray,
                    self_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gap (m, bumper to bumper) and speed along our heading of the first obstacle in each corridor.

    window [N, W, 2] points ahead on each follower's path, obstacles [M]; self_index [N] is the
    follower's own index among the obstacles (or -1). Returns gap [N] (inf if none) and speed [N].
    Only (follower, obstacle) pairs ahead and within the window's reach are tested.
    """
    n = len(s)
    gap, v_lead = np.full(n, np.inf), np.zeros(n)
    if len(obs_xy) == 0 or n == 0:
        return gap, v_lead
    # Long obstacles (buses, trucks) also count by their front and rear discs, so that one crossing the
    # corridor at an angle is seen before its centre gets there; each disc's half length is its radius.
    long_ = np.flatnonzero(obs_half_len > 2 * obs_half_wid)
    owner = np.concatenate([np.arange(len(obs_xy)), long_, long_])
    off = np.concatenate([np.zeros(len(obs_xy)), obs_half_len[long_] - obs_half_wid[long_],
                          -(obs_half_len[long_] - obs_half_wid[long_])])
    hd = obs_heading[owner]
    obs_xy = obs_xy[owner] + off[:, None] * np.stack([np.cos(hd), np.sin(hd)], axis=-1)
    obs_half_len = np.where(off != 0, obs_half_wid[owner], obs_half_len[owner])
    obs_half_wid, obs_speed, obs_heading = obs_half_wid[owner], obs_speed[owner], hd
    start = window[:, 0]  # [N, 2]
    rel = obs_xy[None] - start[:, None]  # [N, M, 2]
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=-1)  # [N, 2]
    reach = window_s[:, -1] - window_s[:, 0] + 5.0
    near = (np.einsum("nmk,nk->nm", rel, fwd) > 0) & ((rel**2).sum(-1) < (reach[:, None] + obs_half_len[None]) ** 2)
    near &= owner[None] != self_index[:, None]  # never follow oneself
    fi, oi = np.nonzero(near)  # candidate pairs [P]
    if len(fi) == 0:
        return gap, v_lead
    d2 = ((window[fi] - obs_xy[oi][:, None]) ** 2).sum(-1)  # [P, W]
    radius = half_wid[fi] + obs_half_wid[oi] + 0.3
    inside = d2 < (radius**2)[:, None]
    hit = inside.any(1)
    fi, oi, radius = fi[hit], oi[hit], radius[hit]
    if len(fi) == 0:
        return gap, v_lead
    first = inside[hit].argmax(1)  # first window point inside each obstacle's disc
    g = np.maximum(window_s[fi, first] - s[fi] - half_len[fi] - obs_half_len[oi] + radius, 0.0)
    np.minimum.at(gap, fi, g)
    best = g == gap[fi]  # the pair giving each follower's smallest gap
    v_lead[fi[best]] = np.maximum(obs_speed[oi[best]] * np.cos(obs_heading[oi[best]] - heading[fi[best]]), 0.0)
    return gap, v_lead


@dataclass
class Vehicles:
    path: np.ndarray
    s: np.ndarray
    v: np.ndarray
    v0: np.ndarray
    size: np.ndarray  # [N, 3] length, width, height
    cls: np.ndarray
    active: np.ndarray
    arrived: np.ndarray  # time of arrival at the stop line (inf: not there)
    cleared: np.ndarray  # allowed into the junction
    lat: np.ndarray | None = None  # m left of the path's centre line while changing lanes (0 when in lane)


@dataclass
class Pedestrians:
    path: np.ndarray
    s: np.ndarray
    v0: np.ndarray
    active: np.ndarray


def spawn_vehicles(road: RoadMap, table: PathTable, rng: np.random.Generator, count: int,
                   target_speed: float, avoid_xy: np.ndarray) -> Vehicles:
    """Place `count` vehicles on random paths away from each other, the junction and avoid_xy [M, 2]."""
    probs = np.array([t[4] for t in VEHICLE_TYPES])
    kinds = rng.choice(len(VEHICLE_TYPES), size=count, p=probs / probs.sum())
    size = np.array([[VEHICLE_TYPES[k][1], VEHICLE_TYPES[k][2], VEHICLE_TYPES[k][3]] for k in kinds]).reshape(-1, 3)
    size *= rng.uniform(0.92, 1.08, size=(count, 1))
    veh = Vehicles(path=np.zeros(count, np.int64), s=np.zeros(count), v=np.zeros(count),
                   v0=target_speed * rng.uniform(0.75, 1.15, count), size=size,
                   cls=np.array([VEHICLE_TYPES[k][0] for k in kinds], np.int64), active=np.zeros(count, bool),
                   arrived=np.full(count, np.inf), cleared=np.zeros(count, bool), lat=np.zeros(count))
    placed = [p for p in avoid_xy]
    for i in range(count):
        for _ in range(30):
            p = int(rng.integers(len(road.paths)))
            s = float(rng.uniform(0, table.length[p] * 0.9))
            if road.stop_s[p] - 6 < s < road.exit_s[p] + 4:
                continue
            xy, _ = table.pose(np.array([p]), np.array([s]))
            if all(np.linalg.norm(xy[0] - q) > 14.0 for q in placed):
                veh.path[i], veh.s[i], veh.active[i] = p, s, True
                veh.v[i] = veh.v0[i] * 0.6 if s > road.stop_s[p] or s < road.stop_s[p] - 30 else 0.0
                veh.cleared[i] = s > road.stop_s[p]
                placed.append(xy[0])
                break
    return veh


def spawn_pedestrians(road: RoadMap, table: PathTable | None, rng: np.random.Generator, count: int) -> Pedestrians:
    if table is None or count == 0:
        z = np.zeros(0)
        return Pedestrians(path=z.astype(np.int64), s=z, v0=z, active=z.astype(bool))
    path = rng.integers(len(road.ped_paths), size=count)
    s = rng.uniform(0, table.length[path] * 0.95)
    return Pedestrians(path=path, s=s, v0=rng.uniform(1.0, 1.6, count), active=np.ones(count, bool))
