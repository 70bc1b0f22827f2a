import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.engine import NonFiniteError, RunDirError
from drivewm.report.results import read_metrics
from drivewm.train.run import run_training
from drivewm.train.toy import ToyConfig

JOB = str(Path(__file__).with_name("toy_job.py"))
VENV_BIN = Path(sys.executable).parent


def _losses(run_dir) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def _cfg(run_dir, steps=40, **train) -> RunConfig:
    t = dict(steps=steps, batch_size=16, lr=3e-3, warmup_steps=5, ckpt_every=20, log_every=1, progress=False, seed=3)
    t.update(train)
    return RunConfig(model=ToyConfig(samples=256), train=TrainConfig(**t), run_dir=str(run_dir))


def test_loss_decreases_and_seed_is_bit_identical(tmp_path):
    run_training(_cfg(tmp_path / "a"))
    run_training(_cfg(tmp_path / "b"))
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(a) == 40
    assert a == b  # bit-identical, not merely close
    assert sum(a[-5:]) < 0.7 * sum(a[:5])
    run_training(_cfg(tmp_path / "c", seed=4))
    assert _losses(tmp_path / "c") != a


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run([sys.executable, JOB, str(full), "35"], check=True)
    killed = subprocess.run([sys.executable, JOB, str(cut), "35", "--kill-at", "27"])
    assert killed.returncode == -9  # really killed with SIGKILL mid-run
    assert json.loads((cut / "checkpoints" / "index.json").read_text())["latest"] == "step_00000020"
    assert max(m["step"] for m in read_metrics(cut)) == 26  # it logged past its last checkpoint
    subprocess.run([sys.executable, JOB, str(cut), "35", "--resume"], check=True)
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 36))
    assert _losses(cut) == _losses(full)


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    run_training(_cfg(tmp_path / "r", steps=5))
    with pytest.raises(RunDirError, match="--resume"):
        run_training(_cfg(tmp_path / "r", steps=5))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    run = tmp_path / "nan"
    proc = subprocess.run([sys.executable, JOB, str(run), "30", "--nan-at", "23"], capture_output=True, text=True)
    assert proc.returncode != 0
    # The 24th step (0-based 23) fails; checkpoints are named by completed steps, so is the step.
    assert "step 24 of 30: non-finite loss" in proc.stderr
    assert "Last good checkpoint: " in proc.stderr and "step_00000020 (20 completed steps)" in proc.stderr
    idx = json.loads((run / "checkpoints" / "index.json").read_text())
    assert idx["latest"] == "step_00000020"
    from drivewm.train.checkpoint import load_run

    _, model = load_run(run, "latest")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_torchrun_ddp_matches_single_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, JOB, str(single), "12", "--dropout", "0"], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533", JOB, str(ddp), "12", "--dropout", "0"],
        check=True,
        env=env,
        capture_output=True,
    )
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 12
    # Same global batch, gradients averaged over 2 x 8 samples instead of 16: equal up to float rounding.
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
