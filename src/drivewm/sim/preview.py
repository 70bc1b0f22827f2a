"""Look at the simulator and drive it without writing a store: a preview picture, the expert's statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drivewm.sim.config import SimConfig


def _top_class(occ: np.ndarray, free_id: int) -> np.ndarray:
    """Class of the highest occupied voxel per column, [X, Y] (free where the column is empty)."""
    occupied = occ != free_id
    top = occ.shape[-1] - 1 - np.argmax(occupied[..., ::-1], axis=-1)
    cls = np.take_along_axis(occ, top[..., None], axis=-1)[..., 0]
    return np.where(occupied.any(-1), cls, free_id)


def preview_png(cfg: SimConfig, out: str | Path, *, seed: int = 0, frames: int = 8, preset: str = "") -> Path:
    """Simulate one episode and save its last frame: BEV occupancy, visibility, LiDAR and camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drivewm.sim.episode import simulate_episode
    from drivewm.sim.sensors.camera import PALETTE

    ep = simulate_episode(cfg, seed, frames)
    grid = cfg.grid_spec
    t = frames - 1
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    extent = (grid.lower[1], grid.upper[1], grid.lower[0], grid.upper[0])
    # Images with x (forward) up and y (left) to the left: flip both axes of [X, Y].
    bev = PALETTE[_top_class(ep["occ"][t], grid.free_id)].astype(np.uint8)
    bev[ep["occ"][t].min(-1) == grid.free_id] = 0
    axes[0].imshow(bev[::-1, ::-1], extent=extent)
    axes[0].set_title(f"occupancy (top class), frame {t}")
    axes[1].imshow(ep["occ_mask"][t].mean(-1)[::-1, ::-1], extent=extent, cmap="gray")
    axes[1].set_title("visible fraction per column")
    o = ep["lidar_offsets"]
    pts = ep["lidar"][o[t] : o[t + 1]]
    axes[2].scatter(-pts[:, 1], pts[:, 0], s=0.2, c=pts[:, 2], cmap="viridis")
    axes[2].set_xlim(-grid.upper[1], -grid.lower[1])
    axes[2].set_ylim(grid.lower[0], grid.upper[0])
    axes[2].set_aspect("equal")
    axes[2].set_title(f"LiDAR ({len(pts)} points, colour = height)")
    axes[3].imshow(ep["camera"][t])
    axes[3].set_title("front camera")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"preset {preset}, seed {seed}: speed {ep['ego_speed'][t]:.1f} m/s, "
                 f"collisions {int(ep['collision'].sum())}, off-road {int(ep['offroad'].sum())}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def drive_expert(cfg: SimConfig, seeds: int, *, noise: float = 0.0) -> list[dict]:
    """Drive the scripted expert in DrivingEnv for seeds 0..seeds-1; the final info dict of each episode."""
    from drivewm.sim.env import DrivingEnv
    from drivewm.sim.expert import ExpertDriver

    env = DrivingEnv(cfg)
    infos = []
    for seed in range(seeds):
        env.reset(seed=seed)
        expert, done, info = ExpertDriver(noise=noise, seed=seed), False, {}
        while not done:
            _, _, term, trunc, info = env.step(expert.act(env))
            done = term or trunc
        infos.append(info)
    return infos
