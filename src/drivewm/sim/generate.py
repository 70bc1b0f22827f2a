"""`drivewm data generate`: simulate episodes in parallel into a store; deterministic, resumable, sharded.

Determinism: episode i of a run with seed S is simulated with the seed
``SeedSequence([S, i]).generate_state(1)[0]`` (``episode_seed``), whatever the worker count or shard,
so the same (preset, frames, seed) gives byte-identical arrays (the manifest checksums agree).

Resume: each episode is written under a temporary name and renamed when complete; a rerun of the
same command skips the complete episodes, deletes its own half-written ones and continues. A run
with other settings into the same directory is refused.

Shards: ``--shard i/n`` makes the episodes whose index is i modulo n. Give every shard its own
directory, then ``drivewm data merge OUT SHARD_DIR...`` copies them into one store (checking the
grid, hz and generator settings agree and that no index is claimed twice with different data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from drivewm.data.episode import EpisodeError, validate_episode
from drivewm.data.manifest import (
    EPISODES_DIR,
    StoreError,
    episode_name,
    new_manifest,
    read_manifest,
    same_layout,
    write_manifest,
)
from drivewm.data.store import scan_episodes, write_episode_group
from drivewm.errors import DrivewmError
from drivewm.lifetime import end_with_parent

MANIFEST_EVERY_S = 2.0


def episode_seed(seed: int, index: int) -> int:
    """The simulator seed of episode ``index`` in a run seeded ``seed`` (independent of workers/shards)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DrivewmError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise DrivewmError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def generator_settings(preset: str, frames: int, seed: int, episodes: int,
                       expert_noise: float = 0.0) -> tuple[dict, dict, object]:
    """(generator record, sensor spec, SimConfig) of a simulator run."""
    from drivewm.sim import sim_preset

    if not expert_noise >= 0:
        raise DrivewmError(f"expert_noise must be >= 0, got {expert_noise}")
    sim_cfg = sim_preset(preset, expert_noise=float(expert_noise))
    settings = json.loads(json.dumps(dataclasses.asdict(sim_cfg)))  # as the manifest holds it (tuples -> lists)
    generator = {"name": "drivewm.sim", "preset": preset, "frames": int(frames), "seed": int(seed),
                 "episodes": int(episodes), "seed_rule": "SeedSequence([seed, index]).generate_state(1)[0]",
                 "settings": settings}
    sensors = {"occ_mask": sim_cfg.visibility}
    if sim_cfg.lidar:
        sensors["lidar"] = dataclasses.asdict(sim_cfg.lidar_spec)
    if sim_cfg.camera:
        sensors["camera"] = dataclasses.asdict(sim_cfg.camera_spec)
    return generator, sensors, sim_cfg


def _end_with_parent(parent: int) -> None:
    """Pool worker initializer: the worker dies with the generating process; Ctrl-C is the parent's to
    handle (it terminates the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with_parent(parent)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM ends the generation as Ctrl-C does (pool terminated, manifest written), then exits 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # the exit status a plain SIGTERM death reports

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _make_episode(job: tuple) -> tuple[str, int, object]:
    """Worker: simulate, validate and write one episode. Returns ('ok', index, record) or ('bad', index, msg)."""
    from drivewm.sim import simulate_episode

    sim_cfg, out, index, seed, frames, chunk_frames = job
    name = episode_name(index)
    try:
        arrays = simulate_episode(sim_cfg, seed, frames)
        validate_episode(arrays, sim_cfg.grid_spec, f"{out}/{EPISODES_DIR}/{name} (seed {seed})")
        rec = write_episode_group(Path(out) / EPISODES_DIR, index, arrays, chunk_frames=chunk_frames,
                                  extra={"seed": seed, "source": f"drivewm.sim seed {seed}"})
        return "ok", index, rec
    except (EpisodeError, StoreError, ValueError, FloatingPointError, IndexError) as e:
        return "bad", index, f"{name} (seed {seed}): {type(e).__name__}: {e}"


def _remove_own_tmp(out: Path, mine: set[int]) -> None:
    import shutil

    for d in (out / EPISODES_DIR).glob(".tmp-ep_*"):
        idx = int(d.name.split("-")[1][3:])
        if idx in mine:  # other shards writing into this directory keep theirs
            shutil.rmtree(d, ignore_errors=True)


def generate_store(
    out: str | Path,
    *,
    preset: str = "tiny",
    episodes: int = 8,
    frames: int = 40,
    seed: int = 0,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    skip_bad: bool = False,
    chunk_frames: int = 4,
    expert_noise: float = 0.0,
    on_progress: Callable[[int, int], None] | None = None,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Simulate this shard's episodes into ``out``; return the manifest. See the module docstring."""
    for name, value in (("episodes", episodes), ("frames", frames), ("workers", workers)):
        if value < 1:
            raise DrivewmError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    generator, sensors, sim_cfg = generator_settings(preset, frames, seed, episodes, expert_noise)
    generator["shard"] = list(shard)
    manifest = new_manifest(grid=sim_cfg.grid_spec, hz=sim_cfg.hz, sensors=sensors, generator=generator)
    if (out / "manifest.json").exists():
        old = read_manifest(out)
        old_gen = {k: v for k, v in old.get("generator", {}).items() if k != "shard"}
        new_gen = {k: v for k, v in generator.items() if k != "shard"}
        changed = [f"{k}: {old_gen.get(k)!r} there, {new_gen.get(k)!r} now" for k in sorted(set(old_gen) | set(new_gen))
                   if old_gen.get(k) != new_gen.get(k)]
        diff = same_layout(old, manifest) or ("; ".join(changed) if changed else None)
        if diff:
            raise StoreError(f"{out}: holds a different generation ({diff}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(episodes) if i % shard[1] == shard[0]]
    _remove_own_tmp(out, set(mine))
    records = {r["index"]: r for r in scan_episodes(out)}
    todo = [i for i in mine if i not in records]
    jobs = [(sim_cfg, str(out), i, episode_seed(seed, i), frames, chunk_frames) for i in todo]
    skipped: list[dict] = []
    finished = len(mine) - len(todo)
    last_write = 0.0

    def flush(rescan: bool = False) -> None:
        # in-memory records while running; one final rescan also lists episodes of other writers
        manifest["episodes"] = scan_episodes(out) if rescan else list(records.values())
        manifest["skipped"] = sorted(skipped, key=lambda s: s["index"])
        write_manifest(out, manifest)

    if on_progress:
        on_progress(finished, len(mine))
    with _sigterm_raises():
        pool = None
        if workers > 1 and len(jobs) > 1:
            pool = mp.get_context("spawn").Pool(workers, initializer=_end_with_parent, initargs=(os.getpid(),))
        try:
            results = pool.imap_unordered(_make_episode, jobs) if pool else map(_make_episode, jobs)
            for status, index, payload in results:
                finished += 1
                if status == "ok":
                    records[index] = payload
                else:
                    if not skip_bad:
                        raise StoreError(f"{out}: episode {payload} (rerun with --skip-bad to report and skip it)")
                    skipped.append({"index": index, "source": f"seed {episode_seed(seed, index)}", "error": payload})
                    if report:
                        report(f"skipped bad episode {payload}")
                if on_progress:
                    on_progress(finished, len(mine))
                if time.monotonic() - last_write > MANIFEST_EVERY_S:
                    flush()
                    last_write = time.monotonic()
        finally:
            if pool:
                pool.terminate()
                pool.join()
            flush(rescan=True)  # the manifest lists every complete episode, also after an error or a signal
    return manifest
