"""Camera helpers the converters share: image reading and resizing, intrinsics under a resize, poses.

Conventions (those of the data contract): images are uint8 RGB [H, W, 3]; a size is (height, width)
in pixels; intrinsics are a 3 x 3 pinhole matrix in pixels with pixel centres at integer coordinates
(OpenCV); extrinsics are a 4 x 4 camera-to-ego transform in metres with camera axes x right, y down,
z forward (as nuScenes and Argoverse 2 calibrate them); an ego pose is (x, y, yaw) in metres and
radians in the log's world frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import numpy as np

from drivewm.errors import DrivewmError

Item = TypeVar("Item")


def parse_size(size: tuple[int, int] | list[int], where: str = "size") -> tuple[int, int]:
    """(height, width) as two positive ints; DrivewmError naming ``where`` otherwise."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DrivewmError(f"{where} must be (height, width) in pixels, got {size!r}") from None
    if h < 1 or w < 1:
        raise DrivewmError(f"{where} must be positive (height, width) in pixels, got {size!r}")
    return h, w


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file (JPEG, PNG, ...); DrivewmError naming the file if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DrivewmError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DrivewmError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] resized to size = (height, width), bilinear with antialiasing when shrinking."""
    from PIL import Image

    h, w = size
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image, dtype=np.uint8)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def scale_intrinsics(K: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """The pinhole matrix of an image of size ``src`` (h, w) after resizing it to ``dst`` (h, w).

    A pixel centre u maps to (u + 0.5) * s - 0.5 under a scale s, so fx' = fx * sx and
    cx' = (cx + 0.5) * sx - 0.5 (likewise y).
    """
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    out = np.asarray(K, dtype=np.float64).copy()
    out[0, :] *= sx
    out[1, :] *= sy
    out[0, 2] += 0.5 * sx - 0.5
    out[1, 2] += 0.5 * sy - 0.5
    return out.astype(np.float32)


def check_intrinsics(K: object, where: str) -> np.ndarray:
    """A finite 3 x 3 pinhole matrix with positive focal lengths, float64; DrivewmError naming ``where``."""
    m = np.asarray(K, dtype=np.float64) if K is not None else np.zeros(0)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or m[0, 0] <= 0 or m[1, 1] <= 0:
        raise DrivewmError(f"{where}: camera intrinsics must be a finite 3 x 3 matrix with fx, fy > 0, got {m.tolist()}")
    return m


def quaternion_matrix(wxyz: object, where: str) -> np.ndarray:
    """Rotation matrix [3, 3] of a unit quaternion (w, x, y, z), normalised; DrivewmError naming ``where``."""
    q = np.asarray(wxyz, dtype=np.float64)
    n = np.linalg.norm(q) if q.shape == (4,) else 0.0
    if not (np.isfinite(n) and n > 1e-9):
        raise DrivewmError(f"{where}: rotation must be a non-zero quaternion [w, x, y, z], got {np.asarray(wxyz).tolist()}")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rigid_matrix(rotation: np.ndarray, translation: object, where: str) -> np.ndarray:
    """4 x 4 float64 transform from a rotation [3, 3] and a translation [3] (m); DrivewmError naming ``where``."""
    t = np.asarray(translation, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise DrivewmError(f"{where}: translation must be 3 finite numbers (m), got {np.asarray(translation).tolist()}")
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, t
    return m


def planar_pose(transform: np.ndarray) -> np.ndarray:
    """(x, y, yaw) float64 of a 4 x 4 pose: the position's x, y and the heading of the rotated x axis."""
    return np.array([transform[0, 3], transform[1, 3], np.arctan2(transform[1, 0], transform[0, 0])])


def nearest_in_time(items: Iterable[tuple[float, Item]], hz: float) -> Iterator[Item]:
    """From (time s, item) in increasing time, the item nearest to each tick t0 + k / hz (ties: the earlier).

    Streams: holds one item back, so a long video is never held in memory. Ticks after the last
    item's time are not produced; an item nearest to two ticks is yielded once.
    """
    t0 = prev = last = None
    k = 0
    for t, item in items:
        cur = (t, item)
        if t0 is None:
            t0 = t
        target = t0 + k / hz
        while target <= t + 1e-9:
            pick = prev if prev is not None and target - prev[0] <= t - target else cur
            if pick is not last:
                yield pick[1]
                last = pick
            k += 1
            target = t0 + k / hz
        prev = cur


def select_frames(times_s: np.ndarray, hz: float) -> np.ndarray:
    """Indices of the frames nearest to the ticks t0, t0 + 1/hz, ... (``nearest_in_time`` over an array).

    Frame selection keeps every image a real one (no blending), so it only lowers a rate: callers
    refuse an ``hz`` above the source's (the result would skip ticks).
    """
    return np.fromiter(nearest_in_time(zip(np.asarray(times_s, dtype=np.float64).tolist(), range(len(times_s))), hz),
                       dtype=np.int64)
