"""Grid specs and the semantic class table shared by the simulator, the store, the models and the metrics.

The default grid mirrors Occ3D-nuScenes (Tian et al., 2023): 200 x 200 x 16 voxels of 0.4 m over
[-40, 40] x [-40, 40] x [-1, 5.4] m in the ego frame, 18 class ids with ``free`` = 17, so a model
configured for the simulator reads the real data unchanged. Smaller presets keep the same class
table and vertical extent and only coarsen the voxels.

A model config's ``grid`` is one of three things, and ``resolve_grid`` is the one reader of it:

- a preset name (``occ3d``, ``small``, ``tiny``, ``micro``);
- a grid written out as a mapping: ``{shape: [32, 32, 2], voxel_size: 2.0}`` plus, optionally, ``lower``
  (the minimum corner in metres; default: x and y centred on the ego, z from -1 m), ``classes`` (the class
  table; default Occ3D's) and ``free_id`` (default: the index of ``free`` in the table);
- ``from_store``: the grid the episode store's manifest records, bound when a run starts (``bind_model_grids``).

Before a run trains or evaluates, ``bind_model_grids`` compares every grid a model config holds with the
store's (shape, voxel size, extent, class table) and raises ``GridMismatchError`` naming both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivewm.errors import DrivewmError

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

    def describe(self) -> str:
        """One line: shape, voxel size, minimum corner and class table."""
        lower = ", ".join(f"{v:g}" for v in self.lower)
        return (f"{'x'.join(map(str, self.shape))} voxels of {self.voxel_size:g} m from ({lower}) m, "
                f"{self.num_classes} classes (free = {self.classes[self.free_id]!r})")

    def difference(self, other: "GridSpec") -> str | None:
        """None when two grids hold the same voxels and class table, else what differs first."""
        if self.shape != other.shape:
            return "shape"
        if not math.isclose(self.voxel_size, other.voxel_size, rel_tol=1e-6):
            return "voxel size"
        if not all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(self.lower, other.lower)):
            return "extent"
        if self.classes != other.classes or self.free_id != other.free_id:
            return "class table"
        return None

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


FROM_STORE = "from_store"
"""A model config's ``grid: from_store``: the episode store's grid, bound when a run starts."""

GRID_KEYS = ("shape", "voxel_size", "lower", "classes", "free_id")


class GridError(DrivewmError):
    """A model config's ``grid`` that names no preset or is not a valid grid mapping."""


class GridMismatchError(DrivewmError):
    """A model's grid that is not the episode store's (shape, voxel size, extent or class table)."""


def grid_from_mapping(d: dict, where: str = "grid") -> GridSpec:
    """A grid written out: ``shape`` and ``voxel_size`` required; ``lower`` defaults to x and y centred on
    the ego and z from -1 m (the presets' floor), ``classes`` to Occ3D's table, ``free_id`` to ``free``."""
    unknown = sorted(set(d) - set(GRID_KEYS))
    if unknown:
        raise GridError(f"{where}: unknown key {unknown[0]!r}; a grid mapping has {', '.join(GRID_KEYS)}")
    for key in ("shape", "voxel_size"):
        if key not in d:
            raise GridError(f"{where}: a grid mapping needs {key!r} (shape: [X, Y, Z], voxel_size: metres)")
    try:
        shape = tuple(int(s) for s in d["shape"])
        voxel = float(d["voxel_size"])
        if len(shape) != 3:
            raise ValueError(f"shape must be [X, Y, Z], got {list(shape)}")
        classes = tuple(str(c) for c in d.get("classes", OCC3D_CLASSES))
        lower = d.get("lower", (-shape[0] * voxel / 2, -shape[1] * voxel / 2, -1.0))
        if "free_id" in d:
            free_id = int(d["free_id"])
        elif "free" in classes:
            free_id = classes.index("free")
        else:
            raise ValueError("the class table has no 'free'; give free_id")
        return GridSpec(shape=shape, lower=tuple(lower), voxel_size=voxel, classes=classes, free_id=free_id)
    except (TypeError, ValueError) as e:
        raise GridError(f"{where}: {e}") from None


def resolve_grid(value: Any, where: str = "model.grid") -> GridSpec:
    """The GridSpec a model config's ``grid`` names: a preset name or a grid mapping (``from_store`` is
    bound to the store's grid before a model is built, so here it is an error naming the fix)."""
    if isinstance(value, GridSpec):
        return GridSpec.from_dict(value.to_dict())
    if isinstance(value, dict):
        return grid_from_mapping(value, where)
    if value == FROM_STORE:
        raise GridError(f"{where}: {FROM_STORE} is the grid of the episode store, which only a run on a store "
                        f"binds (data=DIR); outside one, name a preset or write the grid out")
    if isinstance(value, str) and value in GRID_PRESETS:
        return grid_preset(value)
    raise GridError(f"{where}: {value!r} is no grid; name a preset ({', '.join(GRID_PRESETS)}), write one out "
                    f"({{shape: [X, Y, Z], voxel_size: m}}) or say {FROM_STORE}")


def check_grid(model_grid: GridSpec, where: str, store_grid: GridSpec, store: str) -> None:
    """GridMismatchError naming both grids unless the model's grid is the store's."""
    diff = model_grid.difference(store_grid)
    if diff is not None:
        raise GridMismatchError(f"{where} is {model_grid.describe()}, but the store {store} holds "
                                f"{store_grid.describe()} ({diff} differs)")


def bind_model_grids(cfg: Any, store_grid: GridSpec, store: str, where: str = "model", *, compare: bool = True) -> None:
    """Bind every ``grid: from_store`` in a model config (a dataclass, nested dataclasses and dicts, e.g. a
    world model's nested tokenizer) to the store's grid, written out, so the run records it; check every
    other grid against the store's (GridMismatchError naming both) unless `compare` is off (a LiDAR model's grid
    is the range it voxelizes points over, not the layout of arrays in the store). An occupancy encoder that
    states its input as ``grid_shape`` and ``num_classes`` (the JEPA encoders) is checked on those."""
    if dataclasses.is_dataclass(cfg):
        items = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg)]
    elif isinstance(cfg, dict):
        items = list(cfg.items())
    else:
        return

    def put(key: str, value: Any) -> None:
        if isinstance(cfg, dict):
            cfg[key] = value
        else:
            setattr(cfg, key, value)

    for key, value in items:
        path = f"{where}.{key}"
        if key == "grid" and isinstance(value, (str, dict)):
            if value == FROM_STORE:
                put(key, store_grid.to_dict())
            elif compare:
                check_grid(resolve_grid(value, path), path, store_grid, store)
        elif dataclasses.is_dataclass(value) or isinstance(value, dict):
            bind_model_grids(value, store_grid, store, path, compare=compare)
    get = cfg.get if isinstance(cfg, dict) else (lambda k: getattr(cfg, k, None))
    shape, classes = get("grid_shape"), get("num_classes")
    reads_occ = compare and shape is not None and get("modality") == "occ"
    if reads_occ and (tuple(shape) != store_grid.shape or classes != store_grid.num_classes):
        raise GridMismatchError(
            f"{where} reads occupancy of {'x'.join(map(str, shape))} voxels and {classes} classes "
            f"(grid_shape, num_classes), but the store {store} holds {store_grid.describe()}")
