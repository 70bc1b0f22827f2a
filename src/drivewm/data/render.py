"""Pictures of episodes: the class colour palette, top-down (BEV) occupancy images, LiDAR and camera panels.

Image convention of every BEV picture here: the ego's forward axis (+x) points up and its left (+y)
points left, as a driver looks at a map; row 0 is the far end of the grid ahead of the ego.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivewm.data.spec import GridSpec

# RGB colours per Occ3D class id (the palette of the Occ3D / SurroundOcc / OccWorld visualisations).
OCC3D_PALETTE = np.array(
    [
        [0, 0, 0],  # others
        [255, 120, 50],  # barrier
        [255, 192, 203],  # bicycle
        [255, 255, 0],  # bus
        [0, 150, 245],  # car
        [0, 255, 255],  # construction_vehicle
        [200, 180, 0],  # motorcycle
        [255, 0, 0],  # pedestrian
        [255, 240, 150],  # traffic_cone
        [135, 60, 0],  # trailer
        [160, 32, 240],  # truck
        [255, 0, 255],  # driveable_surface
        [139, 137, 137],  # other_flat
        [75, 0, 75],  # sidewalk
        [150, 240, 80],  # terrain
        [230, 230, 250],  # manmade
        [0, 175, 0],  # vegetation
        [255, 255, 255],  # free
    ],
    dtype=np.uint8,
)
UNOBSERVED_RGB = np.array([96, 96, 96], np.uint8)


def class_palette(grid: GridSpec) -> np.ndarray:
    """uint8 [num_classes, 3] colours for a grid's class table (Occ3D colours, others from a colour map)."""
    if grid.num_classes <= len(OCC3D_PALETTE):
        return OCC3D_PALETTE[: grid.num_classes].copy()
    import matplotlib

    extra = matplotlib.colormaps["tab20"](np.linspace(0, 1, grid.num_classes - len(OCC3D_PALETTE)))[:, :3]
    return np.concatenate([OCC3D_PALETTE, (extra * 255).astype(np.uint8)])


def bev_classes(occ: np.ndarray, free_id: int) -> np.ndarray:
    """Class id [X, Y] of the highest non-free voxel of each column of occ [X, Y, Z] (free_id if none)."""
    nonfree = occ != free_id  # [X, Y, Z]
    top = occ.shape[-1] - 1 - np.argmax(nonfree[..., ::-1], axis=-1)  # highest occupied z per column
    cls = np.take_along_axis(occ, top[..., None], axis=-1)[..., 0]
    return np.where(nonfree.any(axis=-1), cls, free_id)


def bev_image(occ: np.ndarray, grid: GridSpec, mask: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [X, Y, 3] top-down picture of occ [X, Y, Z] (x forward up, y left on the left).

    Each pixel shows the class of the highest non-free voxel of its column; with ``mask``
    [X, Y, Z] columns in which no voxel was observed are grey.
    """
    if occ.shape != grid.shape:
        raise ValueError(f"bev_image: occ shape {occ.shape} does not match the grid {grid.shape}")
    rgb = class_palette(grid)[bev_classes(occ, grid.free_id)]  # [X, Y, 3]
    if mask is not None:
        rgb[~mask.any(axis=-1)] = UNOBSERVED_RGB
    return np.ascontiguousarray(rgb[::-1, ::-1])  # x up, y left


def bev_extent(grid: GridSpec) -> tuple[float, float, float, float]:
    """matplotlib imshow extent (left, right, bottom, top) in metres for bev_image, plotting -y right, x up."""
    (x0, y0, _), (x1, y1, _) = grid.lower, grid.upper
    return (-y1, -y0, x0, x1)


def save_frame_png(
    path: str | Path,
    grid: GridSpec,
    *,
    occ: np.ndarray | None = None,
    occ_mask: np.ndarray | None = None,
    lidar: np.ndarray | None = None,
    camera: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """One PNG with a panel per given sensor: BEV occupancy, LiDAR BEV scatter (coloured by height), camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = [p for p, v in (("occ", occ), ("lidar", lidar), ("camera", camera)) if v is not None]
    if not panels:
        raise ValueError("save_frame_png: give at least one of occ, lidar, camera")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "occ":
            ax.imshow(bev_image(occ, grid, occ_mask), extent=bev_extent(grid), interpolation="nearest")
            ax.set_title("occupancy (BEV, top voxel)")
            present = np.unique(occ)
            pal = class_palette(grid) / 255.0
            ax.legend(handles=[Patch(color=pal[c], label=grid.classes[c]) for c in present if c != grid.free_id],
                      fontsize=6, loc="lower left")
        elif panel == "lidar":
            pts = lidar[np.linspace(0, len(lidar) - 1, min(len(lidar), 20000)).astype(int)] if len(lidar) else lidar
            sc = ax.scatter(-pts[:, 1], pts[:, 0], c=pts[:, 2], s=0.5, cmap="viridis")
            fig.colorbar(sc, ax=ax, label="z (m)", fraction=0.046)
            ax.set_aspect("equal")
            ax.set_title(f"LiDAR BEV ({len(lidar)} points)")
        else:
            ax.imshow(camera)
            ax.set_title("front camera")
        ax.set_xlabel("-y (m, right)" if panel != "camera" else "")
        ax.set_ylabel("x (m, forward)" if panel != "camera" else "")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
