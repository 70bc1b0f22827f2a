"""Kill one rank of a 2-process torchrun (gloo, CPU) run after a checkpoint, resume it, compare step by step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivewm.report.results import read_metrics

JOB = str(Path(__file__).with_name("toy_job.py"))
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", JOB, *args]  # --standalone: a free port
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _losses(run_dir: Path) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_killed_rank_resumes_step_for_step(tmp_path, parallel):
    full, cut = tmp_path / "full", tmp_path / "cut"
    run = _torchrun(str(full), "24", "--parallel", parallel)
    assert run.returncode == 0, run.stderr[-2000:]
    # Rank 1 SIGKILLs itself after 15 steps: its checkpoint at 10 exists, rank 0 logged beyond it.
    killed = _torchrun(str(cut), "24", "--parallel", parallel, "--kill-at", "15", "--kill-rank", "1")
    assert killed.returncode != 0
    assert json.loads((cut / "checkpoints" / "index.json").read_text())["latest"] == "step_00000010"
    assert max(m["step"] for m in read_metrics(cut)) > 10
    resumed = _torchrun(str(cut), "24", "--parallel", parallel, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 25))
    assert _losses(cut) == _losses(full)  # bit-identical, every rank restored its state
