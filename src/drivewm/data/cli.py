"""`drivewm data ...`: generate, inspect, merge and convert episode stores."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Generate, inspect, merge and convert episode stores.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert real dataset layouts into an episode store.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")


def _fail(err: Exception) -> None:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(2)


def _warn(msg: str) -> None:
    typer.secho(f"warning: {msg}", fg="yellow", err=True)


BAD_INPUT = (ValueError, KeyError, FileNotFoundError, IndexError)  # StoreError/EpisodeError are ValueErrors


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from drivewm.sim.generate import generate_store, parse_shard

    try:
        shard_t = parse_shard(shard)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()) as bar:
            task = bar.add_task(f"simulating {preset} episodes", total=None)
            m = generate_store(
                out, preset=preset, episodes=episodes, frames=frames, seed=seed, workers=workers, shard=shard_t,
                skip_bad=skip_bad, chunk_frames=chunk_frames, expert_noise=expert_noise,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total), report=_warn,
            )
    except BAD_INPUT as e:
        _fail(e)
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

    try:
        st = EpisodeStore(store, skip_bad=skip_bad, report=_warn)
        summary = summarize(st, sample_episodes=sample_episodes, verify=verify)
        print_summary(summary)
        if png is not None:
            typer.echo(f"wrote {frame_png(st, png, episode=episode, frame=frame)}")
    except BAD_INPUT as e:
        _fail(e)
    if summary.get("verify_failures"):
        raise typer.Exit(1)


@app.command()
def merge(
    out: Path = typer.Argument(..., help="Store to create or extend."),
    sources: Optional[List[Path]] = typer.Argument(None, help="Shard stores to copy in (none: rebuild OUT's manifest)."),
) -> None:
    """Join shard stores into one (checked, no index claimed twice), or rebuild a store's manifest."""
    from drivewm.data.merge import merge_stores

    try:
        m = merge_stores(out, list(sources or []))
    except BAD_INPUT as e:
        _fail(e)
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

    try:
        m = convert_occ3d(gts, poses, out, mask=mask, skip_bad=skip_bad, report=_warn)
    except BAD_INPUT as e:
        _fail(e)
    typer.echo(f"{out}: {len(m['episodes'])} episodes, {len(m['skipped'])} skipped")


@convert_app.command("nuscenes-lidar")
def convert_nuscenes_cmd(
    samples: Path = typer.Option(..., "--samples", help="Scene file: JSON {scenes: {scene: [{lidar, ego_pose}, ...]}}."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write."),
    grid: str = typer.Option("occ3d", "--grid", help="Grid preset recorded in the manifest (occ3d, small, tiny, micro)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a scene with a bad file."),
) -> None:
    """nuScenes .pcd.bin LiDAR sweeps (N x 5 float32) into an episode store, one episode per scene."""
    from drivewm.data.convert import convert_nuscenes_lidar
    from drivewm.data.spec import grid_preset

    try:
        m = convert_nuscenes_lidar(samples, out, grid=grid_preset(grid), skip_bad=skip_bad, report=_warn)
    except BAD_INPUT as e:
        _fail(e)
    typer.echo(f"{out}: {len(m['episodes'])} episodes, {len(m['skipped'])} skipped")
