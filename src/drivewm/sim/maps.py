"""Procedural road maps: arms from a junction, lanes, sidewalks, crosswalks and roadside objects.

A map is a set of *arms* leaving the origin (two for a straight road or a curve, three for a
T-junction, four for a four-way intersection or a roundabout, whose ring road circles an island). Everything static is rasterized once into a world
frame semantic layer (class id + object height per cell) so that occupancy, collision checks and
ray casting are array lookups. Lanes are polylines (right-hand traffic); vehicle paths chain an
inbound lane, a Bezier connector through the junction and an outbound lane.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivewm.sim.geometry import resample_polyline
from drivewm.sim.rasterize import rasterize_static

LANE_WIDTH = 3.5
PARKING_WIDTH = 2.4
CROSSWALK_WIDTH = 3.0
PATH_SPACING = 0.5
RING_YIELD_MARGIN = 2.0  # m outside the ring where entering traffic waits for a gap


@dataclass
class Arm:
    """A road leaving the origin along heading `angle`, optionally bending (an arc) before going straight."""

    angle: float
    length: float
    lanes: int
    parking: bool
    sidewalk: float
    sides: tuple[str, str]  # roadside kind on the (left, right) side: "urban", "green", "barrier"
    kappa: float = 0.0
    arc_len: float = 0.0
    crosswalk_s: float = -1.0  # arc length of this arm's crosswalk centre

    @property
    def drive_hw(self) -> float:
        return self.lanes * LANE_WIDTH

    @property
    def hw(self) -> float:
        return self.drive_hw + (PARKING_WIDTH if self.parking else 0.0)

    def frame(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre-line points [N, 2] and headings [N] at arc lengths s [N]."""
        s = np.asarray(s, dtype=np.float64)
        sa = np.minimum(s, self.arc_len)
        if self.arc_len > 0:
            k = self.kappa
            th = self.angle + k * sa
            px = (np.sin(th) - np.sin(self.angle)) / k
            py = -(np.cos(th) - np.cos(self.angle)) / k
        else:
            th = np.full_like(sa, self.angle)
            px, py = np.zeros_like(sa), np.zeros_like(sa)
        rest = s - sa
        p = np.stack([px + rest * np.cos(th), py + rest * np.sin(th)], axis=-1)
        return p, th

    def point(self, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """World points [N, 2] at arc length s and signed lateral offset d (left positive)."""
        p, th = self.frame(s)
        d = np.asarray(d, dtype=np.float64)
        return p + d[..., None] * np.stack([-np.sin(th), np.cos(th)], axis=-1)

    def field(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arc length s, signed offset d and distance to the centre line of points x, y (analytic)."""
        end, th_e = self.frame(np.array([self.arc_len]))
        ex, ey, ce, se = end[0, 0], end[0, 1], np.cos(th_e[0]), np.sin(th_e[0])
        sp = (x - ex) * ce + (y - ey) * se  # straight part after the arc
        d = -(x - ex) * se + (y - ey) * ce
        dist = np.hypot(np.minimum(sp, 0.0), d)
        s = self.arc_len + sp
        if self.arc_len > 0:
            sig = np.sign(self.kappa)
            r = 1.0 / abs(self.kappa)
            cx, cy = -sig * r * np.sin(self.angle), sig * r * np.cos(self.angle)
            qx, qy = x - cx, y - cy
            q0x, q0y = -cx, -cy
            u = sig * np.arctan2(q0x * qy - q0y * qx, q0x * qx + q0y * qy)
            rq = np.hypot(qx, qy)
            on_arc = (u >= 0) & (u <= self.arc_len / r)
            dist_arc = np.where(on_arc, np.abs(r - rq), np.inf)
            better = dist_arc < dist
            s = np.where(better, r * u, s)
            d = np.where(better, sig * (r - rq), d)
            dist = np.where(better, dist_arc, dist)
            # Behind the start of the arc: distance to the origin.
            behind = (u < 0) & (np.hypot(x, y) < dist)
            s = np.where(behind, 0.0, s)
            d = np.where(behind, -x * np.sin(self.angle) + y * np.cos(self.angle), d)
            dist = np.where(behind, np.hypot(x, y), dist)
        return s, d, dist


@dataclass(frozen=True)
class StreetStyle:
    """The rows of a street roadside (`drivewm.sim.rasterize`): tree spacing, parking pitch, parked share."""

    tree_spacing: float
    parking_pitch: float
    parked_fraction: float


@dataclass
class RoadMap:
    """The static world: arms, the rasterized semantic layer, vehicle paths and pedestrian paths."""

    layout: str
    arms: list[Arm]
    junction: float  # arc length of the stop lines from the origin (0: no junction)
    res: float
    origin: np.ndarray  # world (x, y) of the corner of raster cell [0, 0]
    cls: np.ndarray  # uint8 [NX, NY] class id of the static world (ground or object)
    height: np.ndarray  # float32 [NX, NY] top of the static object (0 for ground)
    paint: np.ndarray | None = None  # uint8 [NX, NY] lane paint on the road: 0 none, 1 white, 2 yellow
    ring: tuple[float, float] | None = None  # roundabout: inner (island) and outer radius of the ring road
    ring_entry: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # per path: where it joins the ring
    ring_entry_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per path: arc length of that point
    ring_yield_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per path: yield line, clear of the ring
    paths: list[np.ndarray] = field(default_factory=list)  # vehicle paths [N, 2], 0.5 m spacing
    path_arms: list[tuple[int, int, int]] = field(default_factory=list)  # (arm in, arm out, lane)
    stop_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # stop line arc length per path
    exit_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # junction exit arc length per path
    conflicts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # paths crossing in the junction
    ped_paths: list[np.ndarray] = field(default_factory=list)
    ped_cross: list[tuple[float, float]] = field(default_factory=list)  # arc length span of the road crossing
    ped_arm: list[int] = field(default_factory=list)  # per pedestrian path: the arm whose road it crosses
    crosswalks: list[np.ndarray] = field(default_factory=list)  # centre points [2] of crosswalks
    street: StreetStyle | None = None  # None: roadside drawn at random (the first generator)

    def flat_index(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Flat raster index of fractional cell coordinates fx, fy (float arrays, modified in place), clipped."""
        nx, ny = self.cls.shape
        ix = np.minimum(np.maximum(fx, 0, out=fx), nx - 1, out=fx).astype(np.int32)
        iy = np.minimum(np.maximum(fy, 0, out=fy), ny - 1, out=fy).astype(np.int32)
        ix *= ny
        ix += iy
        return ix

    def cell_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raster indices (clipped to the map) of world points [..., 2]."""
        ix = np.floor((xy[..., 0] - self.origin[0]) / self.res).astype(np.int64)
        iy = np.floor((xy[..., 1] - self.origin[1]) / self.res).astype(np.int64)
        return np.clip(ix, 0, self.cls.shape[0] - 1), np.clip(iy, 0, self.cls.shape[1] - 1)


def _arms_for(layout: str, rng: np.random.Generator, lengths: dict[int, float], default_len: float) -> list[Arm]:
    base = rng.uniform(-np.pi, np.pi)
    if layout in ("intersection", "roundabout"):
        angles = [base + k * np.pi / 2 + rng.uniform(-0.12, 0.12) for k in range(4)]
    elif layout == "t_junction":
        angles = [base, base + np.pi, base + np.pi / 2 + rng.uniform(-0.15, 0.15)]
    else:
        angles = [base + np.pi, base]
    lanes = int(rng.choice([1, 2], p=[0.6, 0.4]))
    arms = []
    for i, a in enumerate(angles):
        kinds = tuple(str(rng.choice(["urban", "green", "barrier"], p=[0.55, 0.3, 0.15])) for _ in range(2))
        arm = Arm(angle=float(a), length=lengths.get(i, default_len), lanes=lanes,
                  parking=bool(rng.random() < 0.4), sidewalk=float(rng.uniform(2.5, 4.0)), sides=kinds)  # type: ignore[arg-type]
        arms.append(arm)
    if layout == "curve":
        arc_angle = rng.uniform(np.pi / 6, np.pi / 2) * rng.choice([-1, 1])
        radius = rng.uniform(30.0, 60.0)
        arms[1].kappa = float(np.sign(arc_angle) / radius)
        arms[1].arc_len = float(abs(arc_angle) * radius)
    return arms


def _bezier(p0: np.ndarray, d0: np.ndarray, p3: np.ndarray, d3: np.ndarray) -> np.ndarray:
    k = 0.45 * np.linalg.norm(p3 - p0)
    p1, p2 = p0 + k * d0, p3 - k * d3
    t = np.linspace(0.0, 1.0, 40)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


# Roundabout entries are stop-and-yield: a vehicle stops at the line, enters when no road user in
# the ring is near its entry point (one merging vehicle per arm at a time), and yields again just
# outside the ring. Known limit: after minutes of dense traffic the ring can gridlock (an exiting
# vehicle may treat a vehicle waiting at the next yield line as its leader); episodes of tens of
# seconds at the default density are unaffected in our checks, hence roundabouts are opt-in.
def _ring_connector(ring: tuple[float, float], p0: np.ndarray, d0: np.ndarray, angle_in: float, p3: np.ndarray,
                    d3: np.ndarray, angle_out: float) -> np.ndarray:
    """Enter the roundabout right of arm angle_in, circulate counter-clockwise, leave left of angle_out."""
    r_mid = 0.5 * (ring[0] + ring[1])
    th_in, th_out = angle_in + 0.45, angle_out - 0.45
    sweep = (th_out - th_in) % (2 * np.pi)
    th = th_in + np.linspace(0.0, sweep, max(8, int(sweep * r_mid / 1.0)))
    arc = r_mid * np.stack([np.cos(th), np.sin(th)], axis=1)
    t_in = np.array([-np.sin(th[0]), np.cos(th[0])])
    t_out = np.array([-np.sin(th[-1]), np.cos(th[-1])])
    return np.concatenate([_bezier(p0, d0, arc[0], t_in)[:-1], arc, _bezier(arc[-1], t_out, p3, d3)[1:]])


def _lane_paths(road: RoadMap) -> None:
    """Vehicle paths: inbound lane of arm a -> connector -> outbound lane of arm b, for all a != b."""
    j = road.junction
    for a, arm_a in enumerate(road.arms):
        for b, arm_b in enumerate(road.arms):
            if a == b:
                continue
            for lane in range(arm_a.lanes):
                off = (lane + 0.5) * LANE_WIDTH
                s_in = np.arange(arm_a.length, j - 1e-9, -1.0)
                inbound = arm_a.point(s_in, np.full_like(s_in, off))
                s_out = np.arange(j, arm_b.length + 1e-9, 1.0)
                outbound = arm_b.point(s_out, np.full_like(s_out, -off))
                if j > 0:
                    _, th_a = arm_a.frame(np.array([j]))
                    _, th_b = arm_b.frame(np.array([j]))
                    d0 = -np.array([np.cos(th_a[0]), np.sin(th_a[0])])
                    d3 = np.array([np.cos(th_b[0]), np.sin(th_b[0])])
                    if road.ring is not None:
                        conn = _ring_connector(road.ring, inbound[-1], d0, arm_a.angle, outbound[0], d3, arm_b.angle)
                        th = arm_a.angle + 0.45
                        entry = 0.5 * (road.ring[0] + road.ring[1]) * np.array([np.cos(th), np.sin(th)])
                        road.ring_entry = np.concatenate([road.ring_entry, entry[None]])
                        k = int(np.argmin(np.linalg.norm(conn - entry, axis=1)))
                        l_entry = float(np.linalg.norm(np.diff(conn[: k + 1], axis=0), axis=1).sum())
                        road.ring_entry_s = np.append(road.ring_entry_s, arm_a.length - j + l_entry)
                    else:
                        conn = _bezier(inbound[-1], d0, outbound[0], d3)
                else:
                    conn = inbound[-1:]
                pts = resample_polyline(np.concatenate([inbound, conn, outbound]), PATH_SPACING)
                if road.ring is not None:  # last point before the entry whose radius keeps a car clear of the ring
                    k_entry = int(np.argmin(np.linalg.norm(pts - road.ring_entry[-1], axis=1)))
                    clear = np.flatnonzero(np.linalg.norm(pts[:k_entry], axis=1) >= road.ring[1] + RING_YIELD_MARGIN)
                    road.ring_yield_s = np.append(road.ring_yield_s, clear[-1] * PATH_SPACING)
                road.paths.append(pts)
                road.path_arms.append((a, b, lane))
                l_in = arm_a.length - j
                l_conn = float(np.linalg.norm(np.diff(conn, axis=0), axis=1).sum())
                road.stop_s = np.append(road.stop_s, l_in if j > 0 else np.inf)
                road.exit_s = np.append(road.exit_s, l_in + l_conn if j > 0 else np.inf)
    n = len(road.paths)
    road.conflicts = np.zeros((n, n), bool)
    if j > 0:
        segs = []
        for i, p in enumerate(road.paths):
            s = np.arange(len(p)) * PATH_SPACING
            segs.append(p[(s >= road.stop_s[i]) & (s <= road.exit_s[i])])
        for i in range(n):
            for k in range(i + 1, n):
                dmin = np.min(np.linalg.norm(segs[i][:, None] - segs[k][None], axis=-1))
                road.conflicts[i, k] = road.conflicts[k, i] = dmin < 2.5


def _ped_paths(road: RoadMap, rng: np.random.Generator) -> None:
    """Pedestrian paths: along one sidewalk towards a crosswalk, across the road, then away."""
    for i, arm in enumerate(road.arms):
        s_cross = road.junction - 1.0 - CROSSWALK_WIDTH / 2 if road.junction > 0 else float(rng.uniform(25, 45))
        arm.crosswalk_s = float(s_cross)
        road.crosswalks.append(arm.point(np.array([s_cross]), np.array([0.0]))[0])
        if "barrier" in arm.sides:
            continue  # no sidewalk on a barrier side, so nobody walks here
        dw = arm.hw + arm.sidewalk / 2
        for side in (1.0, -1.0):
            far = arm.length
            s1 = np.arange(far, s_cross, -1.0)
            along = arm.point(s1, np.full_like(s1, side * dw))
            cross = arm.point(np.full(9, s_cross), np.linspace(side * dw, -side * dw, 9))
            back = arm.point(s1[::-1], np.full_like(s1, -side * dw))
            pts = resample_polyline(np.concatenate([along, cross, back]), PATH_SPACING)
            l_along = far - s_cross
            road.ped_paths.append(pts)
            road.ped_cross.append((l_along + arm.sidewalk / 2 - 0.5, l_along + 2 * arm.hw + arm.sidewalk / 2 + 0.5))
            road.ped_arm.append(i)


def generate_map(layout: str, rng: np.random.Generator, res: float, route_arms: tuple[int, int],
                 route_in: float, route_out: float, margin: float, street: StreetStyle | None = None) -> RoadMap:
    """A map of `layout`: the route enters on arm route_arms[0] `route_in` m before the junction and
    leaves on route_arms[1] for `route_out` m; every arm reaches `margin` m further (the sensors' view).
    With `street`, the roadside is built in rows (see `drivewm.sim.rasterize`)."""
    arms = _arms_for(layout, rng, {}, 0.0)
    if street is not None:  # city streets: most urban sides have a parking lane
        for arm in arms:
            arm.parking = bool(rng.random() < (0.75 if "urban" in arm.sides else 0.3))
    max_hw = max(a.hw for a in arms)
    max_sw = max(a.sidewalk for a in arms)
    junction = 0.0 if layout in ("straight", "curve") else max_hw + max_sw + CROSSWALK_WIDTH + 2.0
    ring = None
    if layout == "roundabout":
        island = float(rng.uniform(7.0, 11.0))
        ring = (island, island + 6.5)
        junction = ring[1] + max_sw + CROSSWALK_WIDTH + 8.0  # room to wait between crosswalk and ring
    for i, arm in enumerate(arms):
        need = route_in if i == route_arms[0] else route_out if i == route_arms[1] else 20.0
        arm.length = junction + need + margin
        if arm.arc_len > arm.length:
            arm.arc_len = arm.length
    pts = np.concatenate([a.frame(np.linspace(0, a.length, 64))[0] for a in arms])
    lo = pts.min(0) - margin
    hi = pts.max(0) + margin
    shape = tuple(np.ceil((hi - lo) / res).astype(int))
    road = RoadMap(layout=layout, arms=arms, junction=junction, res=res, origin=lo, ring=ring, street=street,
                   cls=np.zeros(shape, np.uint8), height=np.zeros(shape, np.float32), paint=np.zeros(shape, np.uint8))
    _ped_paths(road, rng)
    rasterize_static(road, rng)
    _lane_paths(road)
    for raster in (road.cls, road.height, road.paint):
        raster.setflags(write=False)
    return road
