"""Typed config of the window datasets that every trainable model reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class DataConfig:
    path: str = "data/tiny"
    """Directory of an episode store written by `drivewm data generate` or `drivewm data convert`."""
    past: int = 4
    """Frames of context in each window (the current frame included)."""
    future: int = 6
    """Frames after the current one in each window (0 for single-frame models such as tokenizers)."""
    stride: int = 1
    """Step between consecutive window starts within an episode."""
    keys: list[str] = field(default_factory=lambda: ["occ", "action", "ego_pose"])
    """Arrays of the data contract to load for each window."""
    val_fraction: float = 0.1
    """Fraction of episodes (the last ones, in store order) held out for validation."""
    lidar_max_points: int = 0
    """Points per frame in a window's padded `lidar` [T, N, 4] (0: the store's largest frame; more are subsampled evenly)."""
    skip_bad: bool = False
    """Leave out (and report) episodes whose files do not match the manifest instead of failing."""
