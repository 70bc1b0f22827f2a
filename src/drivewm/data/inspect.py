"""`drivewm data inspect DIR`: what a store holds (a summary dict and a rich table) and a picture of one frame."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from drivewm.data.episode import EpisodeError, episode_checksum, unit_warnings, validate_episode
from drivewm.data.manifest import EPISODES_DIR, StoreError
from drivewm.data.render import save_frame_png
from drivewm.data.store import EpisodeStore, store_size_bytes

log = logging.getLogger(__name__)


def summarize(store: EpisodeStore, *, sample_episodes: int = 16, verify: bool = False) -> dict:
    """Counts of a store: episodes, frames, class frequencies (over up to ``sample_episodes`` episodes
    spread over the store), LiDAR points per frame, disk size, what looks like the wrong units in any episode's poses
    and actions (``unit_warnings``); ``verify`` re-reads every episode (``verify_store``)."""
    frames = [r["frames"] for r in store.episodes]
    summary: dict = {
        "path": str(store.path),
        "episodes": len(frames),
        "frames": int(sum(frames)),
        "frames_per_episode": [min(frames, default=0), float(np.mean(frames)) if frames else 0.0, max(frames, default=0)],
        "hz": store.hz,
        "grid": list(store.grid.shape),
        "voxel_size": store.grid.voxel_size,
        "grid_spec": store.grid.describe(),
        "keys": sorted(store.keys()),
        "disk_bytes": store_size_bytes(store.path),
        "generator": {k: v for k, v in store.manifest.get("generator", {}).items() if k != "settings"},
        "skipped": store.manifest.get("skipped", []),
        "problems": list(store.problems),
    }
    if "occ" in store.keys() and len(store):
        picks = np.unique(np.linspace(0, len(store) - 1, min(sample_episodes, len(store))).astype(int))
        counts = np.zeros(store.grid.num_classes, np.int64)
        for i in picks:
            counts += np.bincount(store.read(int(i), "occ").ravel(), minlength=store.grid.num_classes)
        summary["class_episodes"] = len(picks)
        summary["class_frequency"] = {c: float(n / max(1, counts.sum())) for c, n in zip(store.grid.classes, counts)}
    if {"ego_pose", "action"} <= store.keys():
        summary["unit_warnings"] = [w for i in range(len(store)) for w in unit_warnings(
            {k: store.read(i, k) for k in ("ego_pose", "action")}, store.grid, store.hz,
            str(store.path / EPISODES_DIR / store.episodes[i]["name"]))]
        for warning in summary["unit_warnings"]:
            log.warning(warning)
    if "lidar_offsets" in store.keys():
        per_frame = np.concatenate([np.diff(store.read(i, "lidar_offsets")) for i in range(len(store))])
        summary["lidar_points_per_frame"] = [int(per_frame.min()), float(per_frame.mean()), int(per_frame.max())]
    if verify:
        summary["verify_failures"] = verify_store(store)
    return summary


def verify_store(store: EpisodeStore | str | Path) -> list[str]:
    """Re-read every episode: its arrays against the data contract and its checksum against the manifest.

    Returns one message per failing episode (empty: the store is sound); `data inspect --verify`.
    """
    store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
    bad = []
    for i, rec in enumerate(store.episodes):
        where = store.path / EPISODES_DIR / rec["name"]
        try:
            arrays = store.read_episode(i)
            validate_episode(arrays, store.grid, str(where))
            got = episode_checksum(arrays)  # one read for both checks (store.verify would read again)
            if got != rec["checksum"]:
                raise StoreError(f"{where}: checksum {got} does not match manifest {rec['checksum']}")
        except (StoreError, EpisodeError) as e:
            bad.append(str(e))
    return bad


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=f"episode store {summary['path']}", show_header=False)
    lo, mean, hi = summary["frames_per_episode"]
    rows = [
        ("episodes", str(summary["episodes"])),
        ("frames", f"{summary['frames']} ({lo} / {mean:.1f} / {hi} per episode, min / mean / max)"),
        ("rate", f"{summary['hz']:g} Hz"),
        ("grid", escape(summary["grid_spec"])),
        ("keys", ", ".join(summary["keys"])),
        ("disk size", f"{summary['disk_bytes'] / 2**20:.2f} MiB"),
        ("generator", escape(", ".join(f"{k}={v}" for k, v in summary["generator"].items()))),
    ]
    if "lidar_points_per_frame" in summary:
        a, b, c = summary["lidar_points_per_frame"]
        rows.append(("lidar points / frame", f"{a} / {b:.0f} / {c} (min / mean / max)"))
    rows.append(("skipped episodes", str(len(summary["skipped"]))))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if "class_frequency" in summary:
        ct = Table(title=f"class frequencies (voxels of {summary['class_episodes']} episodes)")
        ct.add_column("class")
        ct.add_column("share", justify="right")
        for name, share in summary["class_frequency"].items():
            ct.add_row(name, f"{100 * share:.3f} %")
        console.print(ct)
    for s in summary["skipped"]:
        console.print(f"[yellow]skipped when written: episode {s['index']}: {escape(s['error'])}")
    for p in summary["problems"]:
        console.print(f"[red]bad episode left out: {escape(p)}")
    for p in summary.get("verify_failures", []):
        console.print(f"[red]verify failure: {escape(p)}")


def frame_png(store: EpisodeStore, path: str | Path, *, episode: int = 0, frame: int = 0) -> Path:
    """Save BEV occupancy, LiDAR and camera (whichever the store has) of one frame as a PNG."""
    if not 0 <= episode < len(store):
        raise IndexError(f"--episode {episode}: the store {store.path} has {len(store)} episodes")
    n = store.episodes[episode]["frames"]
    if not 0 <= frame < n:
        raise IndexError(f"--frame {frame}: episode {episode} of {store.path} has {n} frames")
    keys = store.episodes[episode]["arrays"]
    one = {k: store.read(episode, k, frame, frame + 1)[0] for k in ("occ", "occ_mask", "camera") if k in keys}
    lidar = store.read_lidar(episode, frame, frame + 1)[0] if "lidar" in keys else None
    title = f"{store.path.name} / {store.episodes[episode]['name']} / frame {frame}"
    return save_frame_png(path, store.grid, lidar=lidar, title=title, **one)
