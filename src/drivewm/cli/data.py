"""`drivewm data ...`: generate, inspect, merge and convert episode stores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer

from drivewm.cli.common import check_sim_preset, progress_bar

app = typer.Typer(help="Generate, inspect, merge and convert episode stores.", no_args_is_help=True,
                  rich_markup_mode=None)
convert_app = typer.Typer(help="Convert real dataset layouts into an episode store.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(convert_app, name="convert")
log = logging.getLogger("drivewm")


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write (resumed if it holds this run)."),
    preset: str = typer.Option("tiny", "--preset", help="Simulator preset: occ3d, small, tiny, micro."),
    episodes: int = typer.Option(8, "--episodes", "-n", help="Episodes in the whole run (all shards together)."),
    frames: int = typer.Option(40, "--frames", "-t", help="Frames per episode."),
    seed: int = typer.Option(0, "--seed", help="Run seed; episode i uses SeedSequence([seed, i])."),
    workers: int = typer.Option(1, "--workers", "-w", help="Parallel processes (results do not depend on it)."),
    shard: str = typer.Option("0/1", "--shard", help="i/n: make only the episodes with index = i mod n."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip an episode that fails, instead of stopping."),
    chunk_frames: int = typer.Option(4, "--chunk-frames", help="Frames per chunk of occupancy and camera arrays."),
    expert_noise: float = typer.Option(
        0.0, "--expert-noise",
        help="Scale of the expert's temporally correlated action noise (0 = clean). Action-conditioned models "
             "(V-JEPA 2-AC, planning) need it: with a clean expert the action is a function of the scene."),
) -> None:
    """Simulate episodes into a chunked, compressed store with a manifest (deterministic, resumable)."""
    from drivewm.data.generate import generate_store, parse_shard

    check_sim_preset(preset)
    shard_t = parse_shard(shard)
    with progress_bar(f"simulating {preset} episodes") as update:
        m = generate_store(
            out, preset=preset, episodes=episodes, frames=frames, seed=seed, workers=workers, shard=shard_t,
            skip_bad=skip_bad, chunk_frames=chunk_frames, expert_noise=expert_noise, on_progress=update,
            report=log.warning,
        )
    typer.echo(f"{out}: {len(m['episodes'])} episodes complete, {len(m['skipped'])} skipped")


@app.command()
def inspect(
    store: Path = typer.Argument(..., help="Store directory."),
    png: Optional[Path] = typer.Option(None, "--png", help="Save BEV occupancy / LiDAR / camera of one frame here."),
    episode: int = typer.Option(0, "--episode", help="Episode (position in the store) for --png."),
    frame: int = typer.Option(0, "--frame", help="Frame for --png."),
    sample_episodes: int = typer.Option(16, "--sample-episodes", help="Episodes read for the class frequencies."),
    verify: bool = typer.Option(False, "--verify", help="Re-read every chunk and compare the episode checksums."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report episodes that do not match the manifest and go on."),
) -> None:
    """Summary table of a store (episodes, frames, class frequencies, point counts, disk size) and a PNG."""
    from drivewm.data.inspect import frame_png, print_summary, summarize
    from drivewm.data.store import EpisodeStore

    st = EpisodeStore(store, skip_bad=skip_bad, report=log.warning)
    summary = summarize(st, sample_episodes=sample_episodes, verify=verify)
    print_summary(summary)
    if png is not None:
        typer.echo(f"wrote {frame_png(st, png, episode=episode, frame=frame)}")
    if summary.get("verify_failures"):
        raise typer.Exit(1)


@app.command()
def merge(
    out: Path = typer.Argument(..., help="Store to create or extend."),
    sources: Optional[List[Path]] = typer.Argument(None, help="Shard stores to copy in (none: rebuild OUT's manifest)."),
) -> None:
    """Join shard stores into one (checked, no index claimed twice), or rebuild a store's manifest."""
    from drivewm.data.merge import merge_stores

    m = merge_stores(out, list(sources or []))
    typer.echo(f"{out}: {len(m['episodes'])} episodes")


@convert_app.command("occ3d")
def convert_occ3d_cmd(
    gts: Path = typer.Option(..., "--gts", help="Occ3D-nuScenes gts/ directory (gts/<scene>/<token>/labels.npz)."),
    poses: Path = typer.Option(..., "--poses", help="Scene file: JSON {scenes: {scene: [{token, ego_pose}, ...]}}."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write."),
    mask: str = typer.Option("camera", "--mask", help="Which Occ3D mask becomes occ_mask: camera or lidar."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a scene with a bad file."),
) -> None:
    """Occ3D-nuScenes occupancy (+ optional LiDAR sweeps) into an episode store, one episode per scene."""
    from drivewm.data.convert import convert_occ3d

    m = convert_occ3d(gts, poses, out, mask=mask, skip_bad=skip_bad, report=log.warning)
    typer.echo(f"{out}: {len(m['episodes'])} episodes, {len(m['skipped'])} skipped")


@convert_app.command("nuscenes-lidar")
def convert_nuscenes_cmd(
    samples: Path = typer.Option(..., "--samples", help="Scene file: JSON {scenes: {scene: [{lidar, ego_pose}, ...]}}."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write."),
    grid: str = typer.Option("occ3d", "--grid", help="Grid preset recorded in the manifest (occ3d, small, tiny, micro)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a scene with a bad file."),
) -> None:
    """nuScenes .pcd.bin LiDAR sweeps (N x 5 float32) into an episode store, one episode per scene."""
    from drivewm.config import ConfigError
    from drivewm.data.convert import convert_nuscenes_lidar
    from drivewm.data.spec import grid_preset

    try:
        grid_spec = grid_preset(grid)
    except KeyError as e:
        raise ConfigError(f"--grid: {e.args[0]}") from None
    m = convert_nuscenes_lidar(samples, out, grid=grid_spec, skip_bad=skip_bad, report=log.warning)
    typer.echo(f"{out}: {len(m['episodes'])} episodes, {len(m['skipped'])} skipped")
