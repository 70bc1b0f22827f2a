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
    from drivewm.sim.generate import generate_store, parse_shard

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
    verify: bool = typer.Option(False, "--verify", help="Re-read every episode: data contract and checksum."),
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


def _size(text: str) -> tuple[int, int]:
    """'64x128' -> (64, 128): the stored image height and width in pixels."""
    from drivewm.config import ConfigError

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--size: expected HEIGHTxWIDTH in pixels (e.g. 64x128), got {text!r}")
    return int(parts[0]), int(parts[1])


def _converted(out: Path, m: dict) -> None:
    typer.echo(f"{out}: {len(m['episodes'])} episodes, {len(m['skipped'])} skipped")


@convert_app.command("nuscenes-camera")
def convert_nuscenes_camera_cmd(
    dataroot: Path = typer.Option(..., "--dataroot", help="nuScenes root (holds samples/ and the VERSION/ tables)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write (resumed if it holds this run)."),
    version: str = typer.Option("v1.0-mini", "--version", help="Table folder under the root."),
    channel: str = typer.Option("CAM_FRONT", "--channel", help="Camera channel."),
    size: str = typer.Option("64x128", "--size", help="Stored image size, HEIGHTxWIDTH pixels."),
    scenes: Optional[str] = typer.Option(None, "--scenes", help="Comma-separated scene names (default: all)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a scene with a bad file."),
) -> None:
    """nuScenes camera keyframes (2 Hz) with intrinsics, extrinsics and ego poses, one episode per scene."""
    from drivewm.data.nuscenes_camera import convert_nuscenes_camera

    names = [s for s in scenes.split(",") if s] if scenes else None
    _converted(out, convert_nuscenes_camera(dataroot, out, version=version, channel=channel, size=_size(size),
                                            scenes=names, skip_bad=skip_bad, report=log.warning))


@convert_app.command("av2")
def convert_av2_cmd(
    root: Path = typer.Option(..., "--root", help="An Argoverse 2 sensor log, or a split directory of logs."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write (resumed if it holds this run)."),
    camera: str = typer.Option("ring_front_center", "--camera", help="Camera of the ring."),
    hz: float = typer.Option(2.0, "--hz", help="Frame rate of the store (Hz)."),
    size: str = typer.Option("64x128", "--size", help="Stored image size, HEIGHTxWIDTH pixels."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a log with a bad file."),
) -> None:
    """Argoverse 2 sensor logs (camera, intrinsics, city poses) through the av2 package, one episode per log."""
    from drivewm.data.argoverse2 import convert_av2_sensor

    _converted(out, convert_av2_sensor(root, out, camera=camera, hz=hz, size=_size(size), skip_bad=skip_bad,
                                       report=log.warning))


@convert_app.command("av2-scenarios")
def convert_av2_scenarios_cmd(
    root: Path = typer.Option(..., "--root", help="Directory of Argoverse 2 motion-forecasting scenarios."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write (resumed if it holds this run)."),
    hz: float = typer.Option(2.0, "--hz", help="Frame rate of the store (Hz)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a scenario with a bad file."),
) -> None:
    """Argoverse 2 scenarios: the ego track as poses, the other tracks as agents, one episode per scenario."""
    from drivewm.data.argoverse2 import convert_av2_scenarios

    _converted(out, convert_av2_scenarios(root, out, hz=hz, skip_bad=skip_bad, report=log.warning))


@convert_app.command("video")
def convert_video_cmd(
    files: List[Path] = typer.Argument(..., help="Video files (mp4 or anything FFmpeg reads)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory to write (resumed if it holds this run)."),
    hz: float = typer.Option(2.0, "--hz", help="Frame rate of the store (Hz): the nearest frame to each tick."),
    size: str = typer.Option("64x128", "--size", help="Stored image size, HEIGHTxWIDTH pixels."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Report and skip a file that fails."),
) -> None:
    """Video files into camera-only episodes (no poses), one episode per file, through PyAV."""
    from drivewm.data.video import convert_video

    _converted(out, convert_video(files, out, hz=hz, size=_size(size), skip_bad=skip_bad, report=log.warning))


export_app = typer.Typer(help="Export a store's frames to other formats.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(export_app, name="export")


@export_app.command("video")
def export_video_cmd(
    store: Path = typer.Argument(..., help="Store directory."),
    out: Path = typer.Argument(..., help="MP4 file to write."),
    episode: int = typer.Option(0, "--episode", help="Episode (position in the store)."),
    crf: int = typer.Option(18, "--crf", help="H.264 quality (lower is better; 18 is visually lossless)."),
) -> None:
    """One episode's camera frames to an H.264 MP4 at the store's frame rate."""
    from drivewm.data.video import export_video

    typer.echo(f"wrote {export_video(store, out, episode=episode, crf=crf)}")
