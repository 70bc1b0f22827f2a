"""Training throughput and peak memory: one process vs 2-process DDP (gloo) on CPU, in one run.

Both train the same small model on the same global batch for the same steps; the DDP run splits
each batch over two processes (one thread each, as torchrun sets), the single run uses all cores.
Prints one JSON line per comparison; ratio > 1 means DDP is better.

    python benchmarks/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(run_dir: str, steps: int) -> None:
    from drivewm.train.config import RunConfig
    from drivewm.train.config import TrainConfig
    from drivewm.report.results import read_metrics
    from drivewm.train.run import run_training
    from drivewm.train.toy import ToyConfig

    cfg = RunConfig(
        model=ToyConfig(dim=64, past=8, hidden=1024, depth=4, dropout=0.0, samples=4096),
        train=TrainConfig(steps=steps, batch_size=256, warmup_steps=2, ckpt_every=10**9, log_every=steps // 2, progress=False),
        run_dir=run_dir,
    )
    run_training(cfg)
    rank = int(os.environ.get("RANK", "0"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(run_dir, f"peak_rank{rank}.json").write_text(json.dumps({"peak_mb": peak_mb}))
    if rank == 0:
        last = [m for m in read_metrics(run_dir) if "steps_per_s" in m][-1]
        Path(run_dir, "speed.json").write_text(json.dumps({"steps_per_s": last["steps_per_s"]}))


def measure(cmd: list[str], run_dir: Path, env: dict) -> tuple[float, float]:
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    speed = json.loads((run_dir / "speed.json").read_text())["steps_per_s"]
    peak = sum(json.loads(p.read_text())["peak_mb"] for p in run_dir.glob("peak_rank*.json"))
    return speed, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps (under a minute)")
    ap.add_argument("--worker", nargs=2, metavar=("RUN_DIR", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    steps = 20 if args.quick else 100
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        single, ddp = Path(tmp, "single"), Path(tmp, "ddp")
        env = dict(os.environ)
        s_speed, s_peak = measure([sys.executable, me, "--worker", str(single), str(steps)], single, env)
        torchrun = str(Path(sys.executable).parent / "torchrun")
        d_speed, d_peak = measure(
            [torchrun, "--nproc_per_node", "2", "--master_port", "29561", me, "--worker", str(ddp), str(steps)],
            ddp,
            {**env, "OMP_NUM_THREADS": "1"},
        )
    print(json.dumps({"bench": "train", "case": "ddp2_vs_single_cpu_mlp4x1024_b256", "unit": "steps/s",
                      "ours": round(d_speed, 2), "reference": round(s_speed, 2), "ratio": round(d_speed / s_speed, 3), "target": None}))
    print(json.dumps({"bench": "train", "case": "ddp2_vs_single_cpu_peak_rss_total", "unit": "MB",
                      "ours": round(d_peak, 1), "reference": round(s_peak, 1), "ratio": round(s_peak / d_peak, 3), "target": None}))


if __name__ == "__main__":
    main()
