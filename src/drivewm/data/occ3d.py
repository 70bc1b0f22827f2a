"""Reader of Occ3D-nuScenes ground truth (Tian et al., 2023, arXiv:2304.14365).

Layout: ``gts/<scene>/<token>/labels.npz`` with ``semantics`` uint8 [200, 200, 16] (x, y, z; class
ids 0..17 of drivewm.data.spec.OCC3D_CLASSES, 17 = free), ``mask_lidar`` and ``mask_camera``
uint8/bool [200, 200, 16] (1 = voxel observed by the LiDAR / the cameras). Occ3D's own benchmark
evaluates inside ``mask_camera``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from drivewm.data.spec import GridSpec
from drivewm.errors import DrivewmError

OCC3D_KEYS = ("semantics", "mask_lidar", "mask_camera")


def occ3d_labels_path(gts: str | Path, scene: str, token: str) -> Path:
    return Path(gts) / scene / token / "labels.npz"


def read_occ3d_labels(path: str | Path, grid: GridSpec) -> dict[str, np.ndarray]:
    """``{'semantics': uint8 [X,Y,Z], 'mask_lidar': bool, 'mask_camera': bool}`` of one labels.npz.

    Errors name the file and the problem: missing file, not an npz, missing key, wrong shape, class
    ids outside the grid's class table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Occ3D labels file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in OCC3D_KEYS if k in npz.files}
            present = list(npz.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DrivewmError(f"{path}: not a readable .npz file ({e})") from None
    for key in OCC3D_KEYS:
        if key not in raw:
            raise DrivewmError(f"{path}: missing key {key!r} (has {present})")
        if raw[key].shape != grid.shape:
            raise DrivewmError(f"{path}: key {key!r} has shape {list(raw[key].shape)}, the grid needs {list(grid.shape)}")
    sem = raw["semantics"]
    if not np.issubdtype(sem.dtype, np.integer):
        raise DrivewmError(f"{path}: key 'semantics' must hold integer class ids, got {sem.dtype}")
    if sem.size and (sem.min() < 0 or sem.max() >= grid.num_classes):
        raise DrivewmError(
            f"{path}: key 'semantics' has class id {int(sem.max() if sem.max() >= grid.num_classes else sem.min())} "
            f"outside the class table (0..{grid.num_classes - 1})"
        )
    return {
        "semantics": sem.astype(np.uint8),
        "mask_lidar": raw["mask_lidar"].astype(bool),
        "mask_camera": raw["mask_camera"].astype(bool),
    }
