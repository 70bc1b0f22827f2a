"""A GIF of one closed-loop drive: BEV occupancy around the ego with its box and the plan drawn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivewm.data.render import bev_extent, bev_image
from drivewm.data.spec import GridSpec
from drivewm.planning.closed_loop import DriveTrace
from drivewm.sim.config import EGO_BOX_OFFSET_X, EGO_LENGTH, EGO_WIDTH


def save_drive_gif(trace: DriveTrace, grid: GridSpec, path: str | Path, title: str = "", fps: float = 2.0) -> Path:
    """Write the frames of a traced drive as a GIF (atomically: a temporary name, then rename)."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not trace.occ:
        raise ValueError("save_drive_gif: the trace holds no frames (was the drive traced?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    ext = bev_extent(grid)
    # Ego box outline in image coordinates (-y right, x up).
    bx = np.array([-1, 1, 1, -1, -1]) * EGO_LENGTH / 2 + EGO_BOX_OFFSET_X
    by = np.array([-1, -1, 1, 1, -1]) * EGO_WIDTH / 2
    for t, (occ, plan) in enumerate(zip(trace.occ, trace.plans)):
        fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
        ax.imshow(bev_image(occ, grid), extent=ext)
        ax.plot(-by, bx, color="red", lw=1.5)
        path_xy = np.concatenate([[[0.0, 0.0]], plan], 0)
        ax.plot(-path_xy[:, 1], path_xy[:, 0], "-o", color="yellow", ms=3, lw=1.5, label="plan")
        ax.set_title(f"{title} t={t / fps:.1f}s", fontsize=9)
        ax.set_xlabel("-y (m)")
        ax.set_ylabel("x (m)")
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    tmp = path.with_name(path.stem + ".tmp.gif")
    imageio.mimsave(tmp, frames, duration=1.0 / fps, loop=0)
    tmp.replace(path)
    return path
