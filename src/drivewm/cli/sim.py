"""`drivewm sim ...`: look at the simulator and drive it without writing a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

app = typer.Typer(help="Preview and drive the procedural driving simulator.", no_args_is_help=True)


def _fail(err: Exception) -> None:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _top_class(occ: np.ndarray, free_id: int) -> np.ndarray:
    """Class of the highest occupied voxel per column, [X, Y] (free where the column is empty)."""
    occupied = occ != free_id
    top = occ.shape[-1] - 1 - np.argmax(occupied[..., ::-1], axis=-1)
    cls = np.take_along_axis(occ, top[..., None], axis=-1)[..., 0]
    return np.where(occupied.any(-1), cls, free_id)


@app.command()
def preview(
    out: Path = typer.Option(Path("sim_preview.png"), "--out", "-o", help="PNG file to write."),
    preset: str = typer.Option("tiny", "--preset", help="Simulator preset: occ3d, small, tiny, micro."),
    seed: int = typer.Option(0, "--seed", help="Scenario seed (map, traffic, ego start)."),
    frames: int = typer.Option(8, "--frames", "-t", help="Frames to simulate; the last one is drawn."),
    noise: float = typer.Option(0.0, "--noise", help="Expert action noise scale (0 = clean expert)."),
) -> None:
    """Simulate one episode and save its last frame: BEV occupancy, visibility, LiDAR and camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drivewm.sim import sim_preset, simulate_episode
    from drivewm.sim.sensors.camera import PALETTE

    try:
        cfg = sim_preset(preset, expert_noise=noise)
        ep = simulate_episode(cfg, seed, frames)
    except (ValueError, KeyError) as e:
        _fail(e)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    typer.echo(f"wrote {out}")


@app.command()
def drive(
    preset: str = typer.Option("tiny", "--preset", help="Simulator preset: occ3d, small, tiny, micro."),
    seeds: int = typer.Option(4, "--seeds", help="Episodes to drive (seeds 0..N-1)."),
    steps: int = typer.Option(40, "--steps", help="Frames per episode."),
    noise: float = typer.Option(0.0, "--noise", help="Expert action noise scale (0 = clean expert)."),
) -> None:
    """Drive the scripted expert in DrivingEnv and print its driving statistics per episode."""
    from drivewm.sim import DrivingEnv, ExpertDriver, sim_preset

    try:
        cfg = sim_preset(preset, episode_steps=steps, lidar=False, camera=False, visibility=False)
    except (ValueError, KeyError) as e:
        _fail(e)
    env = DrivingEnv(cfg)
    for seed in range(seeds):
        env.reset(seed=seed)
        expert, done, info = ExpertDriver(noise=noise, seed=seed), False, {}
        while not done:
            _, _, term, trunc, info = env.step(expert.act(env))
            done = term or trunc
        typer.echo(f"seed {seed}: route {info['route_completion']:.2f}, distance {info['distance']:.1f} m, "
                   f"collisions {info['collisions']}, off-road {info['offroad']}, jerk {info['jerk']:.2f} m/s^3, "
                   f"steer rate {info['steer_rate']:.3f} rad/s")
