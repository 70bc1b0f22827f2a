"""Pictures of a drive: a frame as an RGB image (occupancy from above with the ego's box, camera as it is),
enlarged, as PNG bytes, as a GIF, and as coloured half-block characters for a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from drivewm.data.render import bev_image
from drivewm.data.spec import GridSpec
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WIDTH

EGO_RGB = np.array([0, 0, 128], np.uint8)  # navy: no class of the Occ3D palette is near it
UPPER_HALF = "\u2580"  # the foreground colours the top pixel, the background the bottom one


def ego_cells(grid: GridSpec) -> np.ndarray:
    """bool [X, Y]: the columns whose centre lies in the ego's footprint (the grid is in the ego frame)."""
    x, y = grid.voxel_centers(0), grid.voxel_centers(1)
    in_x = np.abs(x - EGO_BOX_OFFSET_X) <= EGO_LENGTH / 2
    in_y = np.abs(y) <= EGO_WIDTH / 2
    cells = in_x[:, None] & in_y[None, :]
    if not cells.any():  # voxels coarser than the car: mark the column holding the box centre
        cells[np.abs(x - EGO_BOX_OFFSET_X).argmin(), np.abs(y).argmin()] = True
    return cells


def frame_image(frame: np.ndarray, modality: str, grid: GridSpec | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3] of one frame: occupancy [X, Y, Z] from above (x forward up, the ego's box navy),
    a camera image [H, W, 3] as it is."""
    if modality == "camera":
        return np.ascontiguousarray(frame, dtype=np.uint8)
    if grid is None:
        raise ValueError("an occupancy frame needs its grid to be drawn")
    rgb = bev_image(frame, grid)
    rgb[ego_cells(grid)[::-1, ::-1]] = EGO_RGB  # bev_image's flips: x up, y left
    return rgb


def enlarge(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """The image repeated by the smallest whole factor that makes its longer side at least `min_side` pixels."""
    factor = max(1, -(-min_side // max(image.shape[:2])))
    return image.repeat(factor, 0).repeat(factor, 1) if factor > 1 else image


def png_bytes(image: np.ndarray) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", image, extension=".png")


def save_gif(images: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write frames as a looping GIF at `fps`, atomically (a temporary name, then rename)."""
    import imageio.v2 as imageio

    if not images:
        raise ValueError("save_gif: no frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.gif")
    imageio.mimsave(tmp, [enlarge(im) for im in images], duration=1.0 / fps, loop=0)
    tmp.replace(path)
    return path


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of image [H, W, 3] to the largest size within width x height keeping its aspect,
    with an even number of rows (two per character line)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nh, nw = max(2, int(h * scale) // 2 * 2), max(1, int(w * scale))
    rows = np.minimum((np.arange(nh) + 0.5) * h / nh, h - 1).astype(int)
    cols = np.minimum((np.arange(nw) + 0.5) * w / nw, w - 1).astype(int)
    return image[rows][:, cols]


def half_blocks(image: np.ndarray):
    """A rich Text of image [H, W, 3] (H even): one line per two pixel rows, each character an upper half block
    coloured by the top pixel with the bottom pixel as background."""
    from rich.style import Style
    from rich.text import Text

    text = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple, Style] = {}
    for r in range(0, image.shape[0] - 1, 2):
        for top, bottom in zip(image[r].tolist(), image[r + 1].tolist()):
            key = (*top, *bottom)
            style = styles.get(key)
            if style is None:
                style = styles[key] = Style.parse(f"rgb({top[0]},{top[1]},{top[2]}) on rgb({bottom[0]},{bottom[1]},{bottom[2]})")
            text.append(UPPER_HALF, style)
        text.append("\n")
    return text
