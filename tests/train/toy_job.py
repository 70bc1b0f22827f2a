"""A toy training job run as a subprocess by the engine tests (kill-and-resume, torchrun).

Usage: python toy_job.py RUN_DIR STEPS [--kill-at K [--kill-rank R]] [--resume] [--dropout P] [--nan-at K]
                         [--parallel ddp|fsdp] [--lr LR] [--overwrite] [--allow-change KEY]
"""

import os
import signal
import sys

from drivewm.config import to_yaml
from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.distributed import leave_rank
from drivewm.train.run import run_training
from drivewm.train.toy import ToyConfig, ToyForecaster


def main(argv: list[str]) -> None:
    run_dir, steps = argv[0], int(argv[1])
    kill_at = int(argv[argv.index("--kill-at") + 1]) if "--kill-at" in argv else -1
    nan_at = int(argv[argv.index("--nan-at") + 1]) if "--nan-at" in argv else -1
    dropout = float(argv[argv.index("--dropout") + 1]) if "--dropout" in argv else 0.1
    kill_rank = argv[argv.index("--kill-rank") + 1] if "--kill-rank" in argv else os.environ.get("RANK", "0")
    parallel = argv[argv.index("--parallel") + 1] if "--parallel" in argv else "ddp"
    lr = float(argv[argv.index("--lr") + 1]) if "--lr" in argv else 3e-3
    allow = [argv[i + 1] for i, a in enumerate(argv) if a == "--allow-change"]

    if kill_at >= 0 or nan_at >= 0:
        orig_end, orig_loss = ToyForecaster.on_step_end if hasattr(ToyForecaster, "on_step_end") else None, ToyForecaster.loss

        def on_step_end(self, step, total):
            if step + 1 == kill_at and os.environ.get("RANK", "0") == kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)

        def loss(self, batch):
            out = orig_loss(self, batch)
            if getattr(self, "_calls", 0) >= nan_at >= 0:
                out["loss"] = out["loss"] * float("nan")
            self._calls = getattr(self, "_calls", 0) + 1
            return out

        ToyForecaster.on_step_end = on_step_end
        ToyForecaster.loss = loss

    cfg = RunConfig(
        model=ToyConfig(dropout=dropout, samples=256),
        train=TrainConfig(
            steps=steps, batch_size=16, lr=lr, warmup_steps=5, ckpt_every=10, log_every=1, progress=False, seed=7,
            parallel=parallel,
        ),
        run_dir=run_dir,
    )
    run_training(cfg, resume="--resume" in argv, overwrite="--overwrite" in argv, allow_change=allow)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        leave_rank(0)  # as `drivewm` ends its torchrun ranks


if __name__ == "__main__":
    main(sys.argv[1:])
