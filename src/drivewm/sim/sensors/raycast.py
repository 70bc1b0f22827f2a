"""Vectorized ray casting against the static height raster and analytic agent boxes.

Rays are grouped by azimuth: every ray of one azimuth (LiDAR beams of one firing, pixels of one
camera column) shares the same horizontal path. Along that path the static world is sampled once
(cell height h at horizontal distance s), and a ray of elevation slope t (dz per metre) first
hits the world at the first sample where (h - z_sensor) / s >= t. With a running maximum along
the path that condition is monotone, so every ray's hit is found by one `searchsorted` over all
azimuths at once. Ground hits are refined to the exact plane intersection. Agent boxes (upright
boxes standing on the ground) are intersected analytically (2D slab test, then side or roof).
"""

from __future__ import annotations

import numpy as np

from drivewm.sim.maps import RoadMap

SLOPE_CLIP = 100.0
NO_HIT = 255


def cast_rays(road: RoadMap, origin: np.ndarray, sensor_z: float, azimuth: np.ndarray, slopes: np.ndarray,
              max_s: float, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal hit distance [A, B] (inf: none) and class [A, B] (NO_HIT: none) of rays.

    origin (x, y) world; azimuth [A] world-frame angles; slopes [A, B] tan(elevation) per ray;
    max_s horizontal distance to search; boxes [K, 8] world-frame (x, y, z, l, w, h, yaw, class).
    """
    a_n = len(azimuth)
    ds = road.res
    n = int(np.ceil(max_s / ds))
    s = (np.arange(n) + 1) * ds  # [n]
    ca, sa = np.cos(azimuth), np.sin(azimuth)
    steps = np.arange(1, n + 1, dtype=np.float32)[None]  # samples one cell apart along each azimuth
    fx = ((origin[0] - road.origin[0]) / ds + ca[:, None].astype(np.float32) * steps)  # [A, n] cell coords
    fy = ((origin[1] - road.origin[1]) / ds + sa[:, None].astype(np.float32) * steps)
    flat = road.flat_index(fx, fy)
    h = road.height.ravel().take(flat)  # [A, n]
    c = road.cls.ravel().take(flat)
    inv_s = (1.0 / s).astype(np.float32)[None]
    need = (h - np.float32(sensor_z)) * inv_s  # slope needed to pass over each sample
    run = np.maximum.accumulate(need, axis=1)  # [A, n] monotone along each azimuth
    np.minimum(run, SLOPE_CLIP, out=run)
    # Rows are made one sorted array by per-azimuth offsets (float64: slopes differ by ~1e-2 per beam).
    lo = min(float(run[:, 0].min()), -SLOPE_CLIP)
    offsets = np.arange(a_n, dtype=np.float64)[:, None] * (SLOPE_CLIP - lo + 1.0)
    t = np.clip(slopes, lo + 1e-3, SLOPE_CLIP - 1e-3)
    pos = np.searchsorted((run + offsets).ravel(), (t + offsets).ravel(), side="left").reshape(t.shape)
    local = pos - np.arange(a_n)[:, None] * n  # [A, B] sample index of the first hit (n: none)
    hit = local < n
    li = np.minimum(local, n - 1)
    rows = np.arange(a_n)[:, None]
    h_hit, c_hit, s_hit = h[rows, li], c[rows, li], s[li]
    with np.errstate(divide="ignore", invalid="ignore"):
        plane = (h_hit - sensor_z) / t  # where the ray reaches the cell's top surface
    dist = np.where(h_hit <= 0, plane, s_hit - ds / 2)
    top = (h_hit > 0) & (t < 0) & (plane > s_hit - ds / 2)
    dist = np.where(top, np.minimum(plane, s_hit), dist)
    dist = np.where(hit, np.maximum(dist, ds / 2), np.inf)
    cls = np.where(hit, c_hit, NO_HIT).astype(np.uint8)
    if len(boxes):
        _cast_boxes(origin, sensor_z, ca, sa, t, max_s, boxes, dist, cls)
    return dist, cls


def _cast_boxes(origin: np.ndarray, sz: float, ca: np.ndarray, sa: np.ndarray, t: np.ndarray, max_s: float,
                boxes: np.ndarray, dist: np.ndarray, cls: np.ndarray) -> None:
    """Overwrite dist/cls [A, B] in place where a ray meets an agent box first."""
    bx, by, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 6]
    hl, hw, bh = boxes[:, 3] / 2, boxes[:, 4] / 2, boxes[:, 5]
    near = np.hypot(bx - origin[0], by - origin[1]) < max_s + hl + hw
    if not near.any():
        return
    bx, by, yaw, hl, hw, bh, bc = bx[near], by[near], yaw[near], hl[near], hw[near], bh[near], boxes[near, 7]
    cy, sy = np.cos(yaw), np.sin(yaw)
    ox = cy * (origin[0] - bx) + sy * (origin[1] - by)  # [K] ray origin in each box frame
    oy = -sy * (origin[0] - bx) + cy * (origin[1] - by)
    dx = ca[:, None] * cy[None] + sa[:, None] * sy[None]  # [A, K] ray direction in each box frame
    dy = -ca[:, None] * sy[None] + sa[:, None] * cy[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_x = 1.0 / np.where(np.abs(dx) < 1e-12, 1e-12, dx)
        inv_y = 1.0 / np.where(np.abs(dy) < 1e-12, 1e-12, dy)
    tx1, tx2 = (-hl - ox) * inv_x, (hl - ox) * inv_x
    ty1, ty2 = (-hw - oy) * inv_y, (hw - oy) * inv_y
    t_in = np.maximum(np.minimum(tx1, tx2), np.minimum(ty1, ty2))
    t_out = np.minimum(np.maximum(tx1, tx2), np.maximum(ty1, ty2))
    a_idx, k_idx = np.nonzero((t_out >= np.maximum(t_in, 0)) & (t_in < max_s))
    if len(a_idx) == 0:
        return
    s_in = np.maximum(t_in[a_idx, k_idx], 0.0)[:, None]  # [M, 1]
    s_out = t_out[a_idx, k_idx][:, None]
    h = bh[k_idx][:, None]
    tt = t[a_idx]  # [M, B]
    z_in = sz + tt * s_in
    with np.errstate(divide="ignore", invalid="ignore"):
        s_top = (h - sz) / tt
    s_box = np.where((z_in >= 0) & (z_in <= h), s_in, np.inf)
    s_box = np.where((z_in > h) & (tt < 0) & (s_top <= s_out), s_top, s_box)
    best = np.full(dist.shape, np.inf)
    np.minimum.at(best, a_idx, s_box)
    win = (s_box == best[a_idx]) & np.isfinite(s_box)
    m, b = np.nonzero(win)
    box_cls = np.full(dist.shape, NO_HIT, np.uint8)
    box_cls[a_idx[m], b] = bc[k_idx[m]].astype(np.uint8)
    closer = best < dist
    dist[closer] = best[closer]
    cls[closer] = box_cls[closer]


def paint_at(road: RoadMap, origin: np.ndarray, azimuth: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Lane paint (0 none, 1 white, 2 yellow) under each ray's hit [A, B]; 0 where nothing was hit."""
    if road.paint is None:
        return np.zeros(dist.shape, np.uint8)
    d = np.where(np.isfinite(dist), dist, 0.0)
    fx = (origin[0] - road.origin[0] + np.cos(azimuth)[:, None] * d) / road.res
    fy = (origin[1] - road.origin[1] + np.sin(azimuth)[:, None] * d) / road.res
    out = road.paint.ravel().take(road.flat_index(fx, fy))
    return np.where(np.isfinite(dist), out, 0).astype(np.uint8)
