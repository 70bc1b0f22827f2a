"""Fixtures of the simulator tests: a flat synthetic world (road everywhere) and static blocks on it."""

from __future__ import annotations

import numpy as np
import pytest

from drivewm.sim.maps import RoadMap
from drivewm.sim.rasterize import MANMADE, ROAD


def _flat_map(res: float = 0.2, half: float = 80.0) -> RoadMap:
    n = int(round(2 * half / res))
    return RoadMap(layout="flat", arms=[], junction=0.0, res=res, origin=np.array([-half, -half]),
                   cls=np.full((n, n), ROAD, np.uint8), height=np.zeros((n, n), np.float32))


def _add_block(road: RoadMap, x0: float, x1: float, y0: float, y1: float, height: float, cls: int = MANMADE) -> None:
    """A static axis-aligned block covering the cells whose centres lie in [x0, x1] x [y0, y1]."""
    xs = road.origin[0] + (np.arange(road.cls.shape[0]) + 0.5) * road.res
    ys = road.origin[1] + (np.arange(road.cls.shape[1]) + 0.5) * road.res
    m = ((xs >= x0) & (xs <= x1))[:, None] & ((ys >= y0) & (ys <= y1))[None]
    road.cls[m] = cls
    road.height[m] = height


@pytest.fixture
def flat_map():
    """Factory of flat road worlds: flat_map(res=0.2, half=80.0)."""
    return _flat_map


@pytest.fixture
def add_block():
    """add_block(road, x0, x1, y0, y1, height, cls=MANMADE) raises a static block in place."""
    return _add_block
