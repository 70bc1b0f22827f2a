"""Kill campaign: SIGKILL training and data generation at random moments, resume, compare with an uninterrupted twin.

Three kinds of kill, each at a moment drawn from a seeded generator: one in five during start-up
(between the launch and the first log line or episode, as long as the twin's start-up took), the
others during the work: for training, as soon as a step drawn uniformly from the run's steps is
logged; for generation, after a time drawn up to as long as the twin worked after its start-up:

- ``train``: `drivewm train toy.yaml` in one process; the process is SIGKILLed, then the same
  command with ``--resume`` finishes the run.
- ``torchrun``: `torchrun --standalone --nproc_per_node 2 -m drivewm.cli train toy.yaml` (gloo,
  DDP); one rank, alternately 0 and 1, is SIGKILLed by PID (torchrun then stops the other), then
  the same command with ``--resume``.
- ``generate``: `drivewm data generate --workers 2`; the parent is SIGKILLed by PID (its pool
  workers must end with it), then the same command again, which resumes the store.

After every kill and after every resume the campaign checks:

- every checkpoint on disk loads (``drivewm.hub.from_pretrained`` for the weights,
  ``drivewm.train.checkpoint`` for state, optimizer and RNG), else it is counted unreadable;
- ``metrics.jsonl`` holds no duplicated line (two records of one step and kind);
- no process is left: none in the killed command's process group, none whose command line names
  the run directory or store (counted as orphans, then killed);
- the resumed run equals its twin bit for bit: the same losses at every step and the same final
  ``model.safetensors`` (bytes and tensors); a resumed store has the same SHA-256 for every file.

Prints one JSON line per comparison (``ours`` the campaign's figure, ``reference`` the target's
figure, ``ratio`` 1.0 when they agree) and one ``{"kill": ...}`` line per kill with its details
on stderr.

    python benchmarks/campaign_kills.py [--quick] [--seed 0] [--train N] [--torchrun N] [--generate N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(run_dir: Path, steps: int, ckpt_every: int) -> list[str]:
    return ["train", "toy.yaml", f"run_dir={run_dir}", f"train.steps={steps}", f"train.ckpt_every={ckpt_every}",
            "train.device=cpu", "train.progress=false", "train.log_every=1", "train.keep_last=3"]


def command(kind: str, target: Path, size: dict) -> list[str]:
    if kind == "train":
        return [PY, "-m", "drivewm.cli", *train_args(target, size["steps"], size["ckpt_every"])]
    if kind == "torchrun":
        return [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "drivewm.cli",
                *train_args(target, size["steps"], size["ckpt_every"]), "train.parallel=ddp"]
    return [PY, "-m", "drivewm.cli", "data", "generate", "--out", str(target), "--preset", "micro",
            "-n", str(size["episodes"]), "-t", str(size["frames"]), "--workers", "2", "--seed", "3"]


def run_to_end(cmd: list[str], timeout: float = 600) -> float:
    t0 = time.monotonic()
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return time.monotonic() - t0


def marker(kind: str, target: Path) -> Path:
    """What appears when the work itself begins (after imports and set-up)."""
    return target / "episodes" if kind == "generate" else target / "metrics.jsonl"


def wait_for(proc: subprocess.Popen, path: Path, limit: float) -> float:
    """Seconds until `path` exists (or the process ends, or `limit`)."""
    t0 = time.monotonic()
    while not path.exists() and proc.poll() is None and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    return time.monotonic() - t0


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int) -> None:
    """Until the run has logged `step` (or ended)."""
    while proc.poll() is None:
        logged = [m.get("step", 0) for m in metrics_tolerant(run_dir)]
        if logged and max(logged) >= step:
            return
        time.sleep(0.01)


def metrics_tolerant(run_dir: Path) -> list[dict]:
    """metrics.jsonl as it is being written: a last line still half-written is left out."""
    path = run_dir / "metrics.jsonl"
    out = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def twin_timing(kind: str, twin: Path, size: dict) -> tuple[float, float]:
    """The uninterrupted twin's (start-up seconds, working seconds), the ranges kill moments are drawn from."""
    proc = subprocess.Popen(command(kind, twin, size), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    startup = wait_for(proc, marker(kind, twin), 600)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"twin {kind} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return startup, time.monotonic() - t0


# --- processes ---------------------------------------------------------------------------------


def _processes() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, cmdline) of every live process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # a zombie has ended; only its parent's wait is missing
            continue
        out.append((int(entry.name), int(fields[1]), int(fields[2]), cmdline))
    return out


def children(pid: int) -> list[int]:
    procs = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp, _, _ in procs if pp == parent]
        found += kids
        frontier += kids
    return found


def orphans(pgid: int, marker: str, grace: float = 3.0) -> list[int]:
    """Processes still alive of the killed command's group or naming its directory, after `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        me = os.getpid()
        left = [p for p, _, g, cmd in _processes() if p != me and (g == pgid or marker in cmd)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_all(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- checks ------------------------------------------------------------------------------------


def unreadable_checkpoints(run_dir: Path) -> list[str]:
    """Checkpoint directories on disk that do not load completely (weights, state, optimizer, RNG)."""
    from drivewm.hub import from_pretrained, read_tensors
    from drivewm.train.checkpoint import read_state

    bad = []
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*")):
        if ckpt.name.endswith(".tmp") or ckpt.name.startswith("."):
            continue
        try:
            from_pretrained(ckpt)
            read_state(ckpt)
            for part in ("optim", "rng"):
                read_tensors(ckpt / f"{part}.safetensors")
        except Exception as err:  # noqa: BLE001 - any failure to load is what is counted
            bad.append(f"{ckpt.name}: {type(err).__name__}: {err}")
    return bad


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def duplicated_lines(run_dir: Path) -> int:
    seen, dup = set(), 0
    for m in metrics(run_dir):
        key = (m["step"], tuple(sorted(k for k in m if k not in ("steps_per_s", "time_s"))))
        dup += key in seen
        seen.add(key)
    return dup


def curve(run_dir: Path) -> list[tuple]:
    """Every logged value that depends on the computation (not timings), in order."""
    return [tuple((k, v) for k, v in sorted(m.items()) if k not in ("steps_per_s", "time_s")) for m in metrics(run_dir)]


def final_weights(run_dir: Path) -> tuple[bytes, dict]:
    from drivewm.hub import read_tensors

    index = json.loads((run_dir / "checkpoints" / "index.json").read_text())
    path = run_dir / "checkpoints" / index["latest"] / "model.safetensors"
    return path.read_bytes(), read_tensors(path)


def same_weights(a: Path, b: Path) -> bool:
    import torch

    (bytes_a, ta), (bytes_b, tb) = final_weights(a), final_weights(b)
    return bytes_a == bytes_b and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def store_checksums(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


# --- one kill ----------------------------------------------------------------------------------


def kill_once(kind: str, target: Path, size: dict, moment: tuple[bool, float], trial: int) -> dict:
    """Launch, SIGKILL at `moment` (during start-up, or that many seconds into the work), count orphans and
    bad checkpoints, resume; what was found."""
    during_startup, delay = moment
    cmd = command(kind, target, size)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pgid = proc.pid
    if during_startup:
        time.sleep(delay)
    elif kind == "generate":
        wait_for(proc, marker(kind, target), 600)
        time.sleep(delay)
    else:
        wait_for_step(proc, target, int(delay))
    victim, what = proc.pid, "torchrun agent" if kind == "torchrun" else "parent"
    if kind == "torchrun" and trial % 3 != 2:  # rank 0, rank 1, then the torchrun agent itself
        kids = set(children(proc.pid))  # the agent's children are the ranks (argv: python -u -m drivewm.cli ...)
        ranks = sorted(p for p, _, _, c in _processes() if p in kids and " -m drivewm.cli " in c and "bin/torchrun" not in c)
        if len(ranks) == 2:
            victim, what = ranks[trial % 3], f"rank {trial % 3}"
        else:
            what = "torchrun agent (no two live ranks)"
    report = {"kind": kind, "trial": trial, "moment": "start-up" if during_startup else "work",
              "victim": what}
    report["delay_s" if during_startup or kind == "generate" else "at_step"] = round(delay, 2)
    if proc.poll() is not None:
        report["killed"] = False  # it had already finished: not a kill
    else:
        os.kill(victim, signal.SIGKILL)
        report["killed"] = True
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        report["hung"] = True
    left = orphans(pgid, str(target))
    kill_all(left)
    report["orphans"] = len(left)
    if kind == "generate":
        report["episodes_at_kill"] = len(list((target / "episodes").glob("ep_*"))) if (target / "episodes").exists() else 0
    else:
        report["steps_at_kill"] = max((m["step"] for m in metrics(target)), default=0)
        bad = unreadable_checkpoints(target)
        report["unreadable_after_kill"] = bad
        report["duplicates_after_kill"] = duplicated_lines(target)
    # A kill before the run directory exists leaves nothing to resume (`--resume` refuses a missing
    # directory, most likely a mistyped path): the command is run again as it was.
    report["run_dir_existed"] = target.exists()
    resume = cmd + ["--resume"] if kind != "generate" and target.exists() else cmd
    run_to_end(resume)
    if kind != "generate":
        report["unreadable_after_resume"] = unreadable_checkpoints(target)
        report["duplicates_after_resume"] = duplicated_lines(target)
    return report


def campaign(kind: str, kills: int, size: dict, rng: random.Random, root: Path) -> list[dict]:
    twin = root / f"{kind}_twin"
    startup, work = twin_timing(kind, twin, size)
    twin_sums = store_checksums(twin) if kind == "generate" else None
    reports = []
    for trial in range(kills):
        target = root / f"{kind}_{trial:02d}"
        for _ in range(4):  # a moment after the run had ended is not a kill: draw another
            shutil.rmtree(target, ignore_errors=True)
            # One kill in five lands in start-up (before any checkpoint or episode), the others in the work.
            if trial % 5 == 4:
                moment = (True, rng.uniform(0.2, startup))
            elif kind == "generate":
                moment = (False, rng.uniform(0.0, 0.95 * work))
            else:  # a training step, drawn uniformly: the kill comes as soon as the run has logged it
                moment = (False, float(rng.randrange(1, size["steps"])))
            r = kill_once(kind, target, size, moment, trial)
            if r["killed"]:
                break
        if kind == "generate":
            sums = store_checksums(target)
            r["identical"] = sums == twin_sums
        else:
            r["identical"] = curve(target) == curve(twin) and same_weights(target, twin)
        print(json.dumps({"kill": r}), file=sys.stderr, flush=True)
        reports.append(r)
        shutil.rmtree(target, ignore_errors=True)
    return reports


def emit(case: str, unit: str, ours: float, target: float) -> None:
    ratio = 1.0 if ours == target else (round(ours / target, 3) if target else None)
    print(json.dumps({"bench": "campaign_kills", "case": case, "unit": unit, "ours": ours,
                      "reference": target, "ratio": ratio, "target": target}), flush=True)


def summarize(kind: str, reports: list[dict]) -> None:
    killed = [r for r in reports if r["killed"]]
    emit(f"{kind}_sigkills", "kills", len(killed), len(reports))
    emit(f"{kind}_resumed_bit_identical", "runs", sum(r["identical"] for r in killed), len(killed))
    if kind != "generate":
        bad = sum(len(r["unreadable_after_kill"]) + len(r["unreadable_after_resume"]) for r in reports)
        emit(f"{kind}_unreadable_checkpoints", "checkpoints", bad, 0)
        dups = sum(r["duplicates_after_kill"] + r["duplicates_after_resume"] for r in reports)
        emit(f"{kind}_duplicated_log_lines", "lines", dups, 0)
        early = sum(r["steps_at_kill"] < 1 for r in killed)  # resumed from step 0: no checkpoint yet
        print(json.dumps({"bench": "campaign_kills", "case": f"{kind}_killed_before_first_log", "unit": "kills",
                          "ours": early, "reference": len(killed), "ratio": None, "target": None}), flush=True)
    emit(f"{kind}_orphan_processes", "processes", sum(r["orphans"] for r in reports), 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 training, 1 torchrun and 2 generation kills on shorter runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--train", type=int, default=None, help="single-process training kills (default 20)")
    ap.add_argument("--torchrun", type=int, default=None, help="2-process torchrun training kills (default 10)")
    ap.add_argument("--generate", type=int, default=None, help="data generation kills (default 10)")
    args = ap.parse_args()
    q = args.quick
    counts = {"train": 2 if q else 20, "torchrun": 1 if q else 10, "generate": 2 if q else 10}
    for kind in counts:
        if getattr(args, kind) is not None:
            counts[kind] = getattr(args, kind)
    sizes = {
        "train": {"steps": 200 if q else 600, "ckpt_every": 20 if q else 50},
        "torchrun": {"steps": 200 if q else 400, "ckpt_every": 20 if q else 50},
        "generate": {"episodes": 8 if q else 16, "frames": 8 if q else 16},
    }
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="campaign_kills_") as tmp:
        for kind, n in counts.items():
            if n:
                summarize(kind, campaign(kind, n, sizes[kind], rng, Path(tmp)))


if __name__ == "__main__":
    main()
