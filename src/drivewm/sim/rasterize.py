"""Rasterize a road map's static world into a class raster and a height raster (world frame).

Cells are classified from each arm's analytic (arc length, lateral offset) field: road, crosswalk,
sidewalk, barrier, then roadside lots (buildings with setbacks, terrain), then trees, bushes and
parked cars are stamped on top. Class ids are Occ3D's (drivewm.data.spec).

Two roadsides (`RoadMap.street`): None draws lots, trees and parked cars at random along each road (the
first generator; its random stream is kept as it was, so its stores reproduce byte for byte); a
`StreetStyle` builds rows that run on beyond the view, as real streets do: one setback per building
row with gaps at driveways and side streets, trees at a fixed spacing, parking slots at a fixed pitch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from drivewm.data.spec import class_id
from drivewm.sim.geometry import points_in_box

if TYPE_CHECKING:
    from drivewm.sim.maps import RoadMap

ROAD = class_id("driveable_surface")
CROSSWALK = class_id("other_flat")  # painted crossings: flat, distinct from the plain road surface
SIDEWALK = class_id("sidewalk")
TERRAIN = class_id("terrain")
MANMADE = class_id("manmade")
VEGETATION = class_id("vegetation")
BARRIER = class_id("barrier")
CAR = class_id("car")
DRIVEABLE = (ROAD, CROSSWALK)
CHUNK_ROWS = 256


def _lots(rng: np.random.Generator, kind: str, s0: float, s1: float) -> np.ndarray:
    """Roadside lots [M, 6]: start, end, is_building, setback, depth, height."""
    rows, s = [], s0
    while s < s1:
        if kind == "urban" and rng.random() < 0.8:
            w = rng.uniform(10, 30)
            rows.append([s, s + w, 1, rng.uniform(0.0, 5.0), rng.uniform(8, 20), rng.uniform(6, 20)])
        else:
            w = rng.uniform(6, 20)
            rows.append([s, s + w, 0, 0, 0, 0])
        s += w + (rng.uniform(2, 8) if kind == "urban" else 0.0)
    return np.asarray(rows if rows else [[s0, s1, 0, 0, 0, 0]], dtype=np.float64)


def _street_lots(rng: np.random.Generator, kind: str, s0: float, s1: float) -> np.ndarray:
    """Lots [M, 6] of a street side (as `_lots`): an urban side is one building row on one setback and depth,
    facade to facade, broken by driveways (3.5 m) and now and then a side street (12 m); other sides are open."""
    if kind != "urban":
        return np.asarray([[s0, s1, 0, 0, 0, 0]], dtype=np.float64)
    setback, depth = rng.uniform(0.0, 4.0), rng.uniform(10.0, 18.0)
    rows, s = [], s0
    while s < s1:
        w = rng.uniform(14, 30)
        rows.append([s, s + w, 1, setback, depth, rng.uniform(6, 20)])
        u = rng.random()
        s += w + (12.0 if u < 0.08 else 3.5 if u < 0.45 else 0.0)
    return np.asarray(rows, dtype=np.float64)


def _lane_paint(arm, s: np.ndarray, d: np.ndarray, half: float) -> np.ndarray:
    """Road paint of one arm: 2 = yellow centre line, 1 = white lane dividers (dashed) and edge lines."""
    from drivewm.sim.maps import LANE_WIDTH

    paint = np.where(np.abs(d) < half, 2, 0).astype(np.uint8)
    dash = (s % 9.0) < 3.0
    for k in range(1, arm.lanes + 1):
        line = np.abs(np.abs(d) - k * LANE_WIDTH) < half
        paint[line & (dash | (k == arm.lanes))] = 1
    return paint


def _classify_chunk(road: "RoadMap", lots: dict, x: np.ndarray,
                    y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    paint = np.zeros(x.shape, np.uint8)
    cls = np.full(x.shape, TERRAIN, np.uint8)
    h = np.zeros(x.shape, np.float32)
    is_road = np.zeros(x.shape, bool)
    is_cross = np.zeros(x.shape, bool)
    is_walk = np.zeros(x.shape, bool)
    is_barrier = np.zeros(x.shape, bool)
    best = np.full(x.shape, np.inf)
    best_arm = np.zeros(x.shape, np.int64)
    best_s = np.zeros(x.shape)
    best_d = np.zeros(x.shape)
    for i, arm in enumerate(road.arms):
        s, d, dist = arm.field(x, y)
        on_road = dist <= arm.hw
        is_road |= on_road
        is_cross |= on_road & (np.abs(s - arm.crosswalk_s) <= 1.5)
        own = on_road & (s >= road.junction) & (dist <= arm.drive_hw + road.res)  # this arm's lanes
        np.maximum(paint, np.where(own, _lane_paint(arm, s, d, max(0.08, road.res / 2)), 0), out=paint)
        left = d > 0
        barrier_side = np.where(left, arm.sides[0] == "barrier", arm.sides[1] == "barrier")
        edge = (dist > arm.hw) & (s >= road.junction)
        is_barrier |= edge & barrier_side & (dist <= arm.hw + 0.5)
        is_walk |= (dist > arm.hw) & (dist <= arm.hw + arm.sidewalk) & ~(barrier_side & (s >= road.junction))
        closer = dist < best
        best = np.where(closer, dist, best)
        best_arm = np.where(closer, i, best_arm)
        best_s = np.where(closer, s, best_s)
        best_d = np.where(closer, d, best_d)
    if road.ring is not None:  # roundabout: a ring road around a grass island, a sidewalk outside it
        r = np.hypot(x, y)
        island = r < road.ring[0]
        ring = (r >= road.ring[0]) & (r <= road.ring[1])
        is_road = (is_road & ~island) | ring
        is_cross &= ~island
        is_walk = (is_walk & ~island) | ((r > road.ring[1]) & (r <= road.ring[1] + road.arms[0].sidewalk))
        paint[island | ring] = 0
    # Roadside lots of the nearest arm: buildings behind the sidewalk, terrain elsewhere.
    for i, arm in enumerate(road.arms):
        for side, sign in ((0, 1.0), (1, -1.0)):
            table = lots[(i, side)]
            m = (best_arm == i) & (np.sign(best_d) == sign)
            if not m.any():
                continue
            s, rel = best_s[m], np.abs(best_d[m]) - arm.hw - arm.sidewalk
            k = np.clip(np.searchsorted(table[:, 0], s, side="right") - 1, 0, len(table) - 1)
            row = table[k]
            bld = (row[:, 2] > 0) & (s <= row[:, 1]) & (rel >= row[:, 3]) & (rel <= row[:, 3] + row[:, 4])
            sub_c = cls[m]
            sub_h = h[m]
            sub_c[bld] = MANMADE
            sub_h[bld] = row[bld, 5]
            cls[m], h[m] = sub_c, sub_h
    cls[is_walk] = SIDEWALK
    h[is_walk] = 0
    cls[is_barrier] = BARRIER
    h[is_barrier] = 1.0
    cls[is_road] = ROAD
    h[is_road] = 0
    cls[is_cross] = CROSSWALK
    paint[is_cross | ~is_road] = 0
    return cls, h, paint


def _stamp_disc(road: "RoadMap", cx: float, cy: float, r: float, height: float, cls: int) -> None:
    i0, j0 = road.cell_index(np.array([cx - r, cy - r]))
    i1, j1 = road.cell_index(np.array([cx + r, cy + r]))
    xs = road.origin[0] + (np.arange(i0, i1 + 1) + 0.5) * road.res
    ys = road.origin[1] + (np.arange(j0, j1 + 1) + 0.5) * road.res
    inside = (xs[:, None] - cx) ** 2 + (ys[None, :] - cy) ** 2 <= r * r
    block_c = road.cls[i0 : i1 + 1, j0 : j1 + 1]
    block_h = road.height[i0 : i1 + 1, j0 : j1 + 1]
    inside &= ~np.isin(block_c, DRIVEABLE) & (block_c != MANMADE)
    block_c[inside] = cls
    block_h[inside] = height


def _stamp_box(road: "RoadMap", box: tuple[float, float, float, float, float], height: float, cls: int) -> None:
    x, y, _, length, width = box
    r = np.hypot(length, width) / 2
    i0, j0 = road.cell_index(np.array([x - r, y - r]))
    i1, j1 = road.cell_index(np.array([x + r, y + r]))
    xs = road.origin[0] + (np.arange(i0, i1 + 1) + 0.5) * road.res
    ys = road.origin[1] + (np.arange(j0, j1 + 1) + 0.5) * road.res
    inside = points_in_box(xs[:, None], ys[None, :], box)
    road.cls[i0 : i1 + 1, j0 : j1 + 1][inside] = cls
    road.height[i0 : i1 + 1, j0 : j1 + 1][inside] = height


def rasterize_static(road: "RoadMap", rng: np.random.Generator) -> None:
    """Fill road.cls and road.height in place (the map's static semantic layer)."""
    s_lo = road.junction + 2.0 if road.junction > 0 else 0.0
    draw_lots = _lots if road.street is None else _street_lots
    lots = {}
    for i, arm in enumerate(road.arms):
        for side in (0, 1):
            lots[(i, side)] = draw_lots(rng, arm.sides[side], s_lo, arm.length + 200.0)
    nx, ny = road.cls.shape
    ys = road.origin[1] + (np.arange(ny) + 0.5) * road.res
    for r0 in range(0, nx, CHUNK_ROWS):
        xs = road.origin[0] + (np.arange(r0, min(nx, r0 + CHUNK_ROWS)) + 0.5) * road.res
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        c, h, paint = _classify_chunk(road, lots, gx, gy)
        road.cls[r0 : r0 + len(xs)] = c
        road.height[r0 : r0 + len(xs)] = h
        road.paint[r0 : r0 + len(xs)] = paint
    if road.ring is not None:  # a tree and bushes on the roundabout's island
        _stamp_disc(road, 0.0, 0.0, float(rng.uniform(1.5, 2.5)), float(rng.uniform(5, 9)), VEGETATION)
        for a in rng.uniform(-np.pi, np.pi, 3):
            rr = 0.6 * road.ring[0]
            _stamp_disc(road, rr * np.cos(a), rr * np.sin(a), 1.0, 1.2, VEGETATION)
    if road.street is not None:
        _street_objects(road, rng, s_lo)
        return
    # Trees and bushes beside the road, parked cars in the parking lanes.
    for arm in road.arms:
        for side, sign in ((0, 1.0), (1, -1.0)):
            kind = arm.sides[side]
            s = s_lo + rng.uniform(0, 8)
            while s < arm.length + 60:
                if kind == "urban":
                    rel, gap, r, ht = -0.6, rng.uniform(10, 20), rng.uniform(1.2, 2.0), rng.uniform(4, 8)
                else:
                    rel, gap = rng.uniform(1.5, 10.0), rng.uniform(4, 10)
                    bush = rng.random() < 0.35
                    r, ht = (rng.uniform(0.6, 1.2), rng.uniform(0.8, 1.5)) if bush else (rng.uniform(1.2, 2.5), rng.uniform(4, 9))
                if rng.random() < 0.7:
                    p = arm.point(np.array([s]), np.array([sign * (arm.hw + arm.sidewalk + rel)]))[0]
                    _stamp_disc(road, p[0], p[1], r, ht, VEGETATION)
                s += gap
            if arm.parking:
                s = road.junction + 8.0 + rng.uniform(0, 4)
                while s < arm.length + 40:
                    if rng.random() < 0.6 and abs(s - arm.crosswalk_s) > 6.0:
                        p, th = arm.frame(np.array([s]))
                        c = arm.point(np.array([s]), np.array([sign * (arm.drive_hw + PARKING_HALF)]))[0]
                        ln, wd = rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9)
                        _stamp_box(road, (c[0], c[1], float(th[0]), ln, wd), float(rng.uniform(1.4, 1.7)), CAR)
                    s += rng.uniform(6.0, 9.0)


def _street_objects(road: "RoadMap", rng: np.random.Generator, s_lo: float) -> None:
    """Tree rows and parked-car rows of a street: each side draws its row once (offset, spacing, crown), then
    plants every slot; a slot stays empty only now and then (a missing tree, a free parking place)."""
    style = road.street
    for arm in road.arms:
        for side, sign in ((0, 1.0), (1, -1.0)):
            kind = arm.sides[side]
            spacing = style.tree_spacing * rng.uniform(0.9, 1.1)
            # Urban: tree pits on the sidewalk's outer edge; elsewhere a row on the verge (behind a barrier).
            rel = -0.6 if kind == "urban" else rng.uniform(2.0, 5.0) + (1.0 if kind == "barrier" else 0.0)
            r, ht = rng.uniform(1.2, 2.0), rng.uniform(4, 8)
            planted = kind != "green" or rng.random() < 0.8  # some green sides are open fields
            s = s_lo + rng.uniform(0, spacing)
            while planted and s < arm.length + 60:
                if rng.random() < 0.95:
                    p = arm.point(np.array([s]), np.array([sign * (arm.hw + arm.sidewalk + rel)]))[0]
                    _stamp_disc(road, p[0], p[1], r, ht, VEGETATION)
                s += spacing
            if arm.parking:
                s = road.junction + 8.0 + rng.uniform(0, style.parking_pitch)
                while s < arm.length + 40:
                    if rng.random() < style.parked_fraction and abs(s - arm.crosswalk_s) > 6.0:
                        _, th = arm.frame(np.array([s]))
                        c = arm.point(np.array([s]), np.array([sign * (arm.drive_hw + PARKING_HALF)]))[0]
                        ln, wd = rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9)
                        _stamp_box(road, (c[0], c[1], float(th[0]), ln, wd), float(rng.uniform(1.4, 1.7)), CAR)
                    s += style.parking_pitch


PARKING_HALF = 1.2
