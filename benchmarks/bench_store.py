"""Episode store: reading a window of frames against loading a whole compressed .npz episode, and disk size.

One simulated episode (occ3d preset: 200x200x16 occupancy + visibility + LiDAR + camera, 40 frames;
--quick: tiny preset 64x64x8, 40 frames) is written to the zarr store and, as the reference, to one
``np.savez_compressed`` file per episode (what a store without chunking would do). Cases:

- ``window_read``: CPU ms to read a random window of 10 frames of occ + occ_mask (ratio =
  reference / ours, > 1: ours faster); target 2.0 at the occ3d grid (chunking must pay off at least
  2x there), 1.0 at the tiny grid, where a whole episode is under 1 MB and zarr's per-read overhead
  eats most of the gain.
- ``disk_size``: bytes on disk of the episode (ratio = npz / ours, > 1: ours smaller); target 0.8
  allows chunking to cost up to 25 % more space than one deflate stream.

Times are process CPU seconds (all threads), so other work on the machine does not count.

    python benchmarks/bench_store.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from drivewm.data.store import EpisodeStore, store_size_bytes, write_episode
from drivewm.sim import sim_preset, simulate_episode

WINDOW = 10


def cpu_ms(fn, repeats: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return 1000 * (time.process_time() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny preset, 40 frames (under a minute)")
    args = ap.parse_args()
    preset, frames = ("tiny", 40) if args.quick else ("occ3d", 40)
    cfg = sim_preset(preset)
    arrays = simulate_episode(cfg, 0, frames)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, frames - WINDOW + 1, 64)
    with tempfile.TemporaryDirectory() as tmp:
        write_episode(Path(tmp) / "store", arrays, grid=cfg.grid_spec, hz=cfg.hz)
        npz = Path(tmp) / "episode.npz"
        np.savez_compressed(npz, **arrays)
        store = EpisodeStore(Path(tmp) / "store")
        it = iter(np.resize(starts, 10_000))

        def ours() -> None:
            s = int(next(it))
            store.read_window(0, ["occ", "occ_mask"], s, s + WINDOW)

        def reference() -> None:
            s = int(next(it))
            with np.load(npz) as f:
                f["occ"][s : s + WINDOW], f["occ_mask"][s : s + WINDOW]

        repeats = 10 if args.quick else 5
        t_ours, t_ref = cpu_ms(ours, repeats), cpu_ms(reference, repeats)
        size_ours, size_ref = store_size_bytes(Path(tmp) / "store"), npz.stat().st_size
    case = f"{preset} {frames} frames, window {WINDOW}"
    for line in (
        {"bench": "store", "case": f"window_read {case}", "unit": "ms", "ours": round(t_ours, 2),
         "reference": round(t_ref, 2), "ratio": round(t_ref / t_ours, 2), "target": 1.0 if args.quick else 2.0},
        {"bench": "store", "case": f"disk_size {preset} {frames} frames", "unit": "bytes", "ours": size_ours,
         "reference": size_ref, "ratio": round(size_ref / size_ours, 2), "target": 0.8},
    ):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
