"""A torchrun agent SIGKILLed mid-training takes its ranks with it: none trains on alone into the run directory."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

JOB = str(Path(__file__).with_name("toy_job.py"))
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def _alive_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_killed_agent_leaves_no_rank(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen([TORCHRUN, "--standalone", "--nproc_per_node", "2", JOB, str(run), "100000"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():  # both ranks are past their set-up and training
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        ranks = [p for p in _alive_naming(str(run)) if p != agent.pid]
        assert len(ranks) == 2
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        deadline = time.monotonic() + 10
        while _alive_naming(str(run)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive_naming(str(run)) == []
    finally:
        for p in _alive_naming(str(run)):
            os.kill(p, signal.SIGKILL)
