"""A toy training job run as a subprocess by the engine tests (kill-and-resume, torchrun).

Usage: python toy_job.py RUN_DIR STEPS [--kill-at K] [--resume] [--dropout P] [--nan-at K]
"""

import os
import signal
import sys

from drivewm.config import to_yaml
from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.run import run_training
from drivewm.train.toy import ToyConfig, ToyForecaster


def main(argv: list[str]) -> None:
    run_dir, steps = argv[0], int(argv[1])
    kill_at = int(argv[argv.index("--kill-at") + 1]) if "--kill-at" in argv else -1
    nan_at = int(argv[argv.index("--nan-at") + 1]) if "--nan-at" in argv else -1
    dropout = float(argv[argv.index("--dropout") + 1]) if "--dropout" in argv else 0.1

    if kill_at >= 0 or nan_at >= 0:
        orig_end, orig_loss = ToyForecaster.on_step_end if hasattr(ToyForecaster, "on_step_end") else None, ToyForecaster.loss

        def on_step_end(self, step, total):
            if step + 1 == kill_at:
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
            steps=steps, batch_size=16, lr=3e-3, warmup_steps=5, ckpt_every=10, log_every=1, progress=False, seed=7
        ),
        run_dir=run_dir,
    )
    run_training(cfg, resume="--resume" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
