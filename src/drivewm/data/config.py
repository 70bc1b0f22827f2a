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
    end_margin: int = 0
    """Frames of each episode after a window's last that must exist: an episode of L frames gives
    (L - past - future - end_margin) // stride + 1 windows. OccWorld's validation set
    (`nuScenesSceneDatasetLidarTraverse`) reads 12 frames for 5 + 6 and starts at 0 .. L - 13, L - 12
    windows per scene: end_margin 2."""
    keys: list[str] = field(default_factory=lambda: ["occ", "action", "ego_pose"])
    """Arrays of the data contract to load for each window."""
    val_fraction: float = 0.1
    """Fraction of episodes (the last ones, in store order) held out for validation (when `splits` is unset)."""
    splits: str = ""
    """Explicit scene-list splits: a YAML/JSON file of {train: [episode names] or a file of names (one a line),
    val: ...} (a relative name file lies beside it); empty: the last `val_fraction` of the episodes are 'val'."""
    lidar_max_points: int = 0
    """Points per frame in a window's padded `lidar` [T, N, 4] (0: the store's largest frame; more are subsampled evenly)."""
    skip_bad: bool = False
    """Leave out (and report) episodes whose files do not match the manifest instead of failing."""
