"""The store's manifest: one JSON file that says what a directory of episodes holds.

``DIR/manifest.json``::

    {
      "format": "drivewm-episode-store",
      "schema_version": 1,
      "hz": 2.0,
      "grid": {shape, lower, voxel_size, classes, free_id},   # GridSpec.to_dict(); classes = class table
      "sensors": {...},            # camera size, lidar beams ... as the writer knows them
      "generator": {...},          # name, preset, seed, frames, settings (simulator config) or converter args
      "episodes": [                # sorted by index; the store's order
        {"name": "ep_000000", "index": 0, "frames": 40, "seed": 123, "source": "...",
         "arrays": {"occ": {"shape": [...], "dtype": "uint8"}, ...},
         "lidar_max_points": 30000, "checksum": "sha256:..."}, ...
      ],
      "skipped": [{"index": 7, "source": "...", "error": "..."}]   # bad episodes reported with --skip-bad
    }

The same episode record is stored in each episode group's attributes, so an episode directory is
self-describing and a manifest can be rebuilt from the directories (``drivewm data merge``).
The manifest is written to a temporary file and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from drivewm.errors import DrivewmError
from drivewm.data.spec import GridSpec

SCHEMA_VERSION = 1
FORMAT = "drivewm-episode-store"
MANIFEST = "manifest.json"
EPISODES_DIR = "episodes"


class StoreError(DrivewmError):
    """A store on disk that is missing, inconsistent or corrupt; the message names the file and problem."""


def episode_index(index: object, where: str | Path) -> int:
    """`index` as an int; StoreError naming `where` unless it is a non-negative integer."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise StoreError(f"{where}: episode index must be a non-negative integer, got {index!r}")
    return int(index)


def episode_name(index: int) -> str:
    return f"ep_{index:06d}"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_manifest(*, grid: GridSpec, hz: float, sensors: dict | None = None, generator: dict | None = None) -> dict:
    if hz <= 0:
        raise ValueError(f"hz must be > 0, got {hz}")
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "hz": float(hz),
        "grid": grid.to_dict(),
        "sensors": dict(sensors or {}),
        "generator": dict(generator or {}),
        "episodes": [],
        "skipped": [],
    }


def read_manifest(store_dir: str | Path) -> dict:
    """Read and check ``DIR/manifest.json``; StoreError names the file and problem."""
    path = Path(store_dir) / MANIFEST
    if not Path(store_dir).is_dir():
        raise StoreError(f"episode store not found: {store_dir} is not a directory")
    if not path.is_file():
        raise StoreError(
            f"{path}: no manifest; is {store_dir} an episode store (written by `drivewm data generate/convert`)?"
        )
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise StoreError(f"{path}: not a drivewm episode store manifest (format {m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema_version {m.get('schema_version')!r}, this drivewm reads version {SCHEMA_VERSION}"
        )
    for field in ("hz", "grid", "episodes"):
        if field not in m:
            raise StoreError(f"{path}: missing field {field!r}")
    try:
        GridSpec.from_dict(m["grid"])
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: bad grid spec ({e})") from None
    names = [ep.get("name") for ep in m["episodes"]]
    if len(set(names)) != len(names):
        raise StoreError(f"{path}: an episode is listed twice")
    m.setdefault("skipped", [])
    return m


def write_manifest(store_dir: str | Path, manifest: dict) -> None:
    manifest = dict(manifest)
    manifest["episodes"] = sorted(manifest["episodes"], key=lambda r: r["index"])
    atomic_write_json(Path(store_dir) / MANIFEST, manifest)


def same_layout(a: dict, b: dict) -> str | None:
    """None if two manifests describe the same kind of data (grid, hz, schema), else the difference."""
    for field in ("schema_version", "hz", "grid"):
        if a.get(field) != b.get(field):
            return f"{field} differs: {a.get(field)!r} vs {b.get(field)!r}"
    return None
