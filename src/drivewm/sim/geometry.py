"""Polylines and oriented boxes for the map generator, traffic and sensors (numpy, vectorized); poses and
frame changes are `drivewm.geometry`'s."""

from __future__ import annotations

import numpy as np

from drivewm.geometry import world_to_ego


def rot(yaw: float) -> np.ndarray:
    """2x2 rotation matrix of angle yaw (rad)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def resample_polyline(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points [N, 2] re-sampled at a constant arc-length spacing (first and last point kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    points = points[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    if s[-1] <= 0:
        return points[:1].copy()
    n = max(2, int(np.ceil(s[-1] / spacing)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def polyline_headings(points: np.ndarray) -> np.ndarray:
    """Heading (rad) at each point [N, 2] of a polyline (forward difference, last repeated)."""
    d = np.diff(points, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    return np.concatenate([h, h[-1:]]) if len(h) else np.zeros(len(points))


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """Corners [4, 2] of an oriented rectangle, counter-clockwise."""
    hl, hw = length / 2, width / 2
    local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
    return local @ rot(yaw).T + np.array([x, y])


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex polygons given as corners [4, 2]."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        pa, pb = a @ normals.T, b @ normals.T  # [4, 4] projections
        if np.any((pa.max(0) < pb.min(0)) | (pb.max(0) < pa.min(0))):
            return False
    return True


def points_in_box(px: np.ndarray, py: np.ndarray, box: tuple[float, float, float, float, float]) -> np.ndarray:
    """Mask of points inside the oriented rectangle (x, y, yaw, length, width)."""
    local = world_to_ego(np.stack(np.broadcast_arrays(px, py), -1), np.array(box[:3]))  # [..., 2] in the box frame
    return (np.abs(local[..., 0]) <= box[3] / 2) & (np.abs(local[..., 1]) <= box[4] / 2)
