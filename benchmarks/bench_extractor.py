"""What the offline extractor measures: FD under temporal vs per-frame corruption of equal PSNR, trained vs random.

Target (issue "Camera world models, part 1"): the drivewm video encoder's Frechet distance grows more
for temporal corruption (frames shuffled; motion frozen = the first frame repeated) than for
per-frame corruption of equal PSNR, by >= 1.5x; the random-conv extractor's ratio is printed beside it.

Data: held-out simulator clips, episodes seeded 100000.. of the ``tiny_camera`` preset with the
training store's expert noise (other maps, other traffic than the training store seeded 0..), windows
of the protocol's frames at stride 4. Per temporal corruption, ``drivewm.metrics.sensitivity``
measures the set PSNR of the corrupted clips, finds the Gaussian noise sigma with the same PSNR
(0.01 dB) and computes FD(original, temporal) / FD(original, noise) on each extractor.

* ours: the trained ``vjepa_camera`` run, exported to a ``.pt2`` and loaded back through
  ``load_protocol_extractor`` as a user's file is (or a file given with ``--extractor``), under
  ``fd_<tag>_8f_64x128_bilinear_r-1to1_n<N>``;
* reference: ``RandomConvFeatures(video=True)`` (seeded random 3-D convs, the same 64 features),
  under the same preprocessing.

One JSON line per temporal corruption: ``ours`` and ``reference`` are the two extractors'
FD(temporal) / FD(noise); ``target`` (1.5) is the issue's bar for ``ours``; ``ratio`` = ours /
reference, above 1 when the trained encoder weighs motion more than the random ruler does.

    python benchmarks/bench_extractor.py [--quick] [--run runs/video_encoder_tiny | --extractor FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from drivewm.errors import DrivewmError
from drivewm.hub import find_checkpoint
from drivewm.metrics import RandomConvFeatures
from drivewm.metrics.sensitivity import corruption_sensitivity
from drivewm.metrics.video import FrechetProtocol, export_extractor, load_protocol_extractor
from drivewm.sim import simulate_episode, sim_preset
from drivewm.train.checkpoint import load_run
from drivewm.train.config import load_run_config

HELD_OUT_SEED = 100_000


def held_out_clips(episodes: int, length: int, frames: int, stride: int) -> torch.Tensor:
    """uint8 [N, frames, 3, H, W]: windows of simulated held-out episodes (camera only)."""
    cfg = sim_preset("tiny_camera", lidar=False, visibility=False, expert_noise=0.3)
    clips = []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + episodes):
        cam = simulate_episode(cfg, seed, length)["camera"]  # [T, H, W, 3]
        clips += [cam[s : s + frames] for s in range(0, len(cam) - frames + 1, stride)]
    return torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 clips instead of 256 (under a minute)")
    ap.add_argument("--run", default="runs/video_encoder_tiny", help="a trained vjepa_camera run")
    ap.add_argument("--extractor", default=None, help="an exported extractor file instead of --run (its protocol: --config)")
    ap.add_argument("--config", default="jepa/video_encoder_tiny.yaml", help="the preset whose protocol --extractor follows")
    ap.add_argument("--which", default="best", help="checkpoint of --run: 'best' or 'latest'")
    ap.add_argument("--pool", choices=["tubelet", "mean"], default=None, help="override the run's extractor pooling")
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.clips or (64 if args.quick else 256)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.extractor is None:
            cfg, model = load_run(args.run, args.which)
            trained = find_checkpoint(args.run, args.which).name
            if args.pool is not None:
                model.cfg.pool = cfg.model.pool = args.pool
            protocol = cfg.model.protocol(n)
            path = Path(tmp) / f"{protocol.extractor}.pt2"
            export_extractor(model.extractor(), torch.zeros(2, protocol.frames, 3, *protocol.size), path)
        else:
            protocol, path, trained = load_run_config(args.config).model.protocol(n), Path(args.extractor), None
        ours = load_protocol_extractor(path, protocol)
    per_episode = (40 - protocol.frames) // 4 + 1
    clips = held_out_clips(-(-n // per_episode), 40, protocol.frames, 4)[:n]
    if tuple(clips.shape[-2:]) != tuple(protocol.size):
        raise DrivewmError(f"held-out clips are {tuple(clips.shape[-2:])}, {protocol.name} reads {protocol.size}")
    randconv = RandomConvFeatures(video=True, dim=64, seed=0)
    ref_protocol = FrechetProtocol("fd", "randconv3d", size=protocol.size, frames=protocol.frames, resize=protocol.resize,
                                   value_range=protocol.value_range, samples=n)
    rows = corruption_sensitivity(clips, protocol, ours, seed=args.seed)
    refs = corruption_sensitivity(clips, ref_protocol, randconv, seed=args.seed)
    seconds = round(time.perf_counter() - start, 1)
    for row, ref in zip(rows, refs):
        print(json.dumps({
            "bench": "extractor", "case": f"{row['temporal']}_vs_noise {protocol.name}",
            "unit": "FD(temporal)/FD(noise) at equal PSNR", "ours": round(row["ratio"], 3), "reference": round(ref["ratio"], 3),
            "ratio": round(row["ratio"] / ref["ratio"], 3), "target": 1.5, "psnr_db": round(row["psnr_temporal"], 2),
            "noise_sigma": round(row["sigma"], 4), "fd_ours": [round(row["fd_temporal"], 4), round(row["fd_per_frame"], 4)],
            "fd_reference": [round(ref["fd_temporal"], 4), round(ref["fd_per_frame"], 4)], "reference_extractor": randconv.name,
            "checkpoint": trained, "pool": None if trained is None else cfg.model.pool, "clips": n, "seconds": seconds, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
