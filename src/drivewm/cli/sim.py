"""`drivewm sim ...`: look at the simulator and drive it without writing a store."""

from __future__ import annotations

from pathlib import Path

import typer

from drivewm.cli.common import sim_config

app = typer.Typer(help="Preview and drive the procedural driving simulator.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command()
def preview(
    out: Path = typer.Option(Path("sim_preview.png"), "--out", "-o", help="PNG file to write."),
    preset: str = typer.Option("tiny", "--preset", help="Simulator preset: occ3d, small, tiny, micro."),
    seed: int = typer.Option(0, "--seed", help="Scenario seed (map, traffic, ego start)."),
    frames: int = typer.Option(8, "--frames", "-t", help="Frames to simulate; the last one is drawn."),
    noise: float = typer.Option(0.0, "--noise", help="Expert action noise scale (0 = clean expert)."),
) -> None:
    """Simulate one episode and save its last frame: BEV occupancy, visibility, LiDAR and camera."""
    from drivewm.sim.preview import preview_png

    cfg = sim_config(preset, expert_noise=noise)
    typer.echo(f"wrote {preview_png(cfg, out, seed=seed, frames=frames, preset=preset)}")


@app.command()
def drive(
    preset: str = typer.Option("tiny", "--preset", help="Simulator preset: occ3d, small, tiny, micro."),
    seeds: int = typer.Option(4, "--seeds", help="Episodes to drive (seeds 0..N-1)."),
    steps: int = typer.Option(40, "--steps", help="Frames per episode."),
    noise: float = typer.Option(0.0, "--noise", help="Expert action noise scale (0 = clean expert)."),
) -> None:
    """Drive the scripted expert in DrivingEnv and print its driving statistics per episode."""
    from drivewm.sim.preview import drive_expert

    cfg = sim_config(preset, episode_steps=steps, lidar=False, camera=False, visibility=False)
    for seed, info in enumerate(drive_expert(cfg, seeds, noise=noise)):
        typer.echo(f"seed {seed}: route {info['route_completion']:.2f}, distance {info['distance']:.1f} m, "
                   f"collisions {info['collisions']}, off-road {info['offroad']}, jerk {info['jerk']:.2f} m/s^3, "
                   f"steer rate {info['steer_rate']:.3f} rad/s")
