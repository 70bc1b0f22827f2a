"""Grid specs and the semantic class table shared by the simulator, the store, the models and the metrics.

The default grid mirrors Occ3D-nuScenes (Tian et al., 2023): 200 x 200 x 16 voxels of 0.4 m over
[-40, 40] x [-40, 40] x [-1, 5.4] m in the ego frame, 18 class ids with ``free`` = 17, so a model
configured for the simulator reads the real data unchanged. Smaller presets keep the same class
table and vertical extent and only coarsen the voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Occ3D-nuScenes class ids (index = id).
OCC3D_CLASSES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
FREE_ID = 17
NUM_CLASSES = len(OCC3D_CLASSES)


def class_id(name: str) -> int:
    """Id of a class by name; a clear error for an unknown name."""
    try:
        return OCC3D_CLASSES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; valid: {', '.join(OCC3D_CLASSES)}") from None


@dataclass(kw_only=True)
class GridSpec:
    """A voxel grid in the ego frame: x forward, y left, z up; voxel (0, 0, 0) at the minimum corner."""

    shape: tuple[int, int, int] = (200, 200, 16)
    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)
    voxel_size: float = 0.4
    classes: tuple[str, ...] = field(default_factory=lambda: OCC3D_CLASSES)
    free_id: int = FREE_ID

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]
        self.lower = tuple(float(v) for v in self.lower)  # type: ignore[assignment]
        self.classes = tuple(self.classes)
        if len(self.shape) != 3 or min(self.shape) <= 0:
            raise ValueError(f"grid shape must be three positive ints, got {self.shape}")
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if not 0 <= self.free_id < len(self.classes):
            raise ValueError(f"free_id {self.free_id} outside the class table of {len(self.classes)}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def upper(self) -> tuple[float, float, float]:
        return tuple(lo + n * self.voxel_size for lo, n in zip(self.lower, self.shape))  # type: ignore[return-value]

    def voxel_centers(self, axis: int) -> np.ndarray:
        """Centre coordinates (m) of the voxels along one axis."""
        return self.lower[axis] + (np.arange(self.shape[axis]) + 0.5) * self.voxel_size

    def to_index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices [N, 3] of points [N, >=3] (metres) and a mask of those inside the grid."""
        idx = np.floor((points[:, :3] - np.asarray(self.lower)) / self.voxel_size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
        return idx, inside

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "lower": list(self.lower),
            "voxel_size": self.voxel_size,
            "classes": list(self.classes),
            "free_id": self.free_id,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        return cls(
            shape=tuple(d["shape"]),
            lower=tuple(d["lower"]),
            voxel_size=float(d["voxel_size"]),
            classes=tuple(d["classes"]),
            free_id=int(d["free_id"]),
        )


# Presets: same class table and z range [-1, 5.4] m, coarser voxels for CPU work.
GRID_PRESETS: dict[str, GridSpec] = {
    "occ3d": GridSpec(shape=(200, 200, 16), lower=(-40.0, -40.0, -1.0), voxel_size=0.4),
    "small": GridSpec(shape=(128, 128, 16), lower=(-25.6, -25.6, -1.0), voxel_size=0.4),
    "tiny": GridSpec(shape=(64, 64, 8), lower=(-25.6, -25.6, -1.0), voxel_size=0.8),
    "micro": GridSpec(shape=(32, 32, 4), lower=(-25.6, -25.6, -1.0), voxel_size=1.6),
    # Copilot4D's LiDAR range (arXiv 2311.01017): +-80 m, 128 x 128 tokens after 4x downsampling.
    "lidar80": GridSpec(shape=(512, 512, 16), lower=(-80.0, -80.0, -1.0), voxel_size=0.3125),
}


def grid_preset(name: str) -> GridSpec:
    """A copy of a named grid preset; a clear error naming the valid presets."""
    if name not in GRID_PRESETS:
        raise KeyError(f"unknown grid preset {name!r}; valid: {', '.join(GRID_PRESETS)}")
    g = GRID_PRESETS[name]
    return GridSpec.from_dict(g.to_dict())
