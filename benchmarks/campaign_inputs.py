"""Malformed-input campaign: every bad input is one line naming what is wrong, exit 2, and changes nothing.

A workspace holds a small episode store (micro preset), a toy training run and a tokenizer run,
all made by the `drivewm` app itself. Each case copies the workspace, breaks one thing in it
(a truncated or pickled `model.safetensors`, a corrupt `index.json`, NaN in a stored array...) or
passes one bad argument, and runs one command in-process through typer's CliRunner against
`drivewm.cli.app` (the root command's error handler included). Cases that are library calls with
no command (`write_episode` of your own arrays, a rollout's actions) go through the same handler's
message function. A case passes when:

- the exit code is 2 and stderr is exactly one line ``drivewm: error: ...`` with no traceback;
- that line names every expected file, key or value;
- the workspace (every file's SHA-256 and every directory) is the same before and after (a case
  that starts a new run before failing, a non-finite loss, may add that run's files, never change one).

Prints one JSON line per case (``ours`` 1 when it passed) and a summary line, in the benchmarks'
format; ``tests/test_malformed_inputs.py`` runs every case.

    python benchmarks/campaign_inputs.py [--only NAME]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Case:
    name: str
    group: str
    args: list[str] | None
    """CLI arguments; RUN, STORE, TOK and WS are replaced by the workspace's paths."""
    names: tuple[str, ...]
    """Substrings the error line must contain (same placeholders)."""
    setup: Callable[[Path], None] | None = None
    """Breaks something in the workspace before the command runs."""
    call: Callable[[Path], object] | None = None
    """A library call instead of a command: must raise a DrivewmError."""
    starts_run: bool = False
    """The command starts a new run before the error (a non-finite loss, NaN read from the store mid-run): it
    may add that run's files, never change one."""


# --- breaking things ---------------------------------------------------------------------------


def latest_ckpt(ws: Path, run: str = "run") -> Path:
    return ws / run / "checkpoints" / json.loads((ws / run / "checkpoints" / "index.json").read_text())["latest"]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def truncate_latest(name: str, run: str = "run") -> Callable[[Path], None]:
    return lambda ws: truncate(latest_ckpt(ws, run) / name)


def pickle_weights(ws: Path) -> None:
    import torch

    for f in (ws / "run" / "checkpoints").glob("step_*/model.safetensors"):
        torch.save({"net.0.weight": torch.zeros(2)}, f)  # a pickle where safetensors belongs


def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())

    return go


def edit_json(rel: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        p = ws / rel
        data = json.loads(p.read_text())
        fn(data)
        p.write_text(json.dumps(data))

    return go


def edit_ckpt_json(name: str, fn: Callable[[dict], None], run: str = "run") -> Callable[[Path], None]:
    def go(ws: Path) -> None:
        for p in (ws / run / "checkpoints").glob(f"step_*/{name}"):
            data = json.loads(p.read_text())
            fn(data)
            p.write_text(json.dumps(data))

    return go


def store_array(key: str, fn: Callable[[np.ndarray], np.ndarray], episode: int = 0) -> Callable[[Path], None]:
    """Rewrite one stored array with zarr directly (what a foreign writer could leave), bypassing the contract."""
    def go(ws: Path) -> None:
        import zarr

        group = zarr.open_group(str(ws / "store" / "episodes" / f"ep_{episode:06d}"), mode="r+")
        old = group[key]
        new = fn(old[...])
        del group[key]
        group.create_array(key, data=new, chunks=old.chunks)

    return go


def empty_store(ws: Path) -> None:
    shutil.rmtree(ws / "store" / "episodes")
    (ws / "store" / "episodes").mkdir()
    edit_json("store/manifest.json", lambda m: m.update(episodes=[]))(ws)


def sim_arrays(frames: int = 6) -> tuple[dict, object]:
    from drivewm.sim import sim_preset, simulate_episode

    cfg = sim_preset("micro")
    return simulate_episode(cfg, 0, frames), cfg


def write_own(ws: Path, change: Callable[[dict], None], **kw) -> object:
    from drivewm.data.store import write_episode

    arrays, cfg = sim_arrays()
    change(arrays)
    return write_episode(ws / "store", arrays, grid=cfg.grid_spec, hz=cfg.hz, **kw)


def set_value(key: str, value: float) -> Callable[[dict], None]:
    def go(arrays: dict) -> None:
        arrays[key] = arrays[key].copy()
        arrays[key].flat[0] = value

    return go


def rollout_nan_actions(ws: Path) -> object:
    import torch

    from drivewm.dynamics import GPTWorldConfig, GPTWorldModel

    model = GPTWorldModel(GPTWorldConfig(vocab_size=16, token_shape=[4, 4], dim=16, depth=1, heads=2, max_frames=4)).eval()
    actions = torch.zeros(1, 3, model.action_dim)
    actions[0, 1, 0] = float("nan")
    return model.rollout(torch.zeros(1, 2, 4, 4, dtype=torch.long), actions, 2)


TOY = ["train", "toy.yaml", "run_dir=WS/new", "train.progress=false"]
RESUME = ["train", "toy.yaml", "run_dir=RUN", "train.steps=4", "train.ckpt_every=2", "train.progress=false", "--resume"]
TOK_TRAIN = ["train", "tokenizer/occ_micro.yaml", "data=STORE", "run_dir=WS/new", "train.steps=1"]
GEN = ["data", "generate", "--out", "WS/gen", "--preset", "micro", "-t", "6"]

CASES = [
    # Training settings
    Case("steps_0", "config", TOY + ["train.steps=0"], ("train.steps", "0")),
    Case("steps_negative", "config", TOY + ["train.steps=-5"], ("train.steps", "-5")),
    Case("batch_size_0", "config", TOY + ["train.batch_size=0"], ("train.batch_size", "0")),
    Case("ckpt_every_0", "config", TOY + ["train.ckpt_every=0"], ("train.ckpt_every", "0")),
    Case("lr_negative", "config", TOY + ["train.lr=-0.1"], ("train.lr", "-0.1")),
    Case("steps_not_a_number", "config", TOY + ["train.steps=many"], ("train.steps", "many")),
    Case("unknown_model_key", "config", TOY + ["model.foo=1"], ("model.foo",)),
    Case("unknown_top_key", "config", TOY + ["trian.steps=3"], ("trian",)),
    Case("unknown_device", "config", TOY + ["train.device=tpu"], ("train.device", "tpu")),
    Case("unknown_model_name", "config", TOY + ["model.name=no_such_model"], ("no_such_model",)),
    Case("config_missing", "config", ["train", "WS/no_such.yaml"], ("no_such.yaml",)),
    Case("config_duplicate_key", "config", ["train", "WS/dup.yaml", "run_dir=WS/new"], ("dup.yaml", "lr"),
         setup=write("dup.yaml", "model:\n  name: toy_forecaster\ntrain:\n  lr: 0.1\n  steps: 3\n  lr: 0.2\n")),
    Case("config_yaml_syntax", "config", ["train", "WS/bad.yaml", "run_dir=WS/new"], ("bad.yaml",),
         setup=write("bad.yaml", "model:\n  name: [toy_forecaster\ntrain: {steps: 3\n")),
    Case("config_not_a_mapping", "config", ["train", "WS/list.yaml", "run_dir=WS/new"], ("list.yaml",),
         setup=write("list.yaml", "- model\n- train\n")),
    Case("config_binary", "config", ["train", "WS/bin.yaml", "run_dir=WS/new"], ("bin.yaml",),
         setup=write("bin.yaml", bytes(range(256)))),
    Case("nonfinite_lr", "config", TOY + ["train.lr=1e20", "train.steps=20"], ("non-finite",), starts_run=True),
    Case("lr_nan", "config", TOY + ["train.lr=nan"], ("train.lr", "nan")),
    # Run directories
    Case("fresh_run_in_used_dir", "run_dir", ["train", "toy.yaml", "run_dir=RUN", "train.progress=false"], ("RUN", "--resume")),
    Case("resume_missing_dir", "run_dir", ["train", "toy.yaml", "run_dir=WS/nowhere", "--resume"], ("nowhere",)),
    Case("resume_changed_lr", "run_dir", RESUME + ["train.lr=0.1"], ("train.lr", "--allow-change")),
    Case("resume_changed_model", "run_dir", RESUME + ["model.hidden=32"], ("model.hidden",)),
    Case("resume_more_steps_changed_seed", "run_dir", RESUME + ["train.seed=5"], ("train.seed",)),
    Case("resume_index_garbage", "run_dir", RESUME, ("index.json",), setup=write("run/checkpoints/index.json", b"\x00\xff{garbage")),
    Case("resume_index_truncated", "run_dir", RESUME, ("index.json",), setup=lambda ws: truncate(ws / "run/checkpoints/index.json")),
    Case("resume_index_names_missing", "run_dir", RESUME, ("index.json", "step_00000099"),
         setup=edit_json("run/checkpoints/index.json", lambda i: i.update(latest="step_00000099"))),
    Case("resume_state_truncated", "run_dir", RESUME, ("state.json",), setup=truncate_latest("state.json")),
    Case("resume_state_step_negative", "run_dir", RESUME, ("state.json", "step"),
         setup=edit_ckpt_json("state.json", lambda s: s.update(step=-1))),
    Case("resume_weights_truncated", "run_dir", RESUME, ("model.safetensors",), setup=truncate_latest("model.safetensors")),
    Case("resume_weights_pickled", "run_dir", RESUME, ("model.safetensors",), setup=pickle_weights),
    Case("resume_optimizer_truncated", "run_dir", RESUME, ("optim.safetensors",), setup=truncate_latest("optim.safetensors")),
    Case("resume_rng_missing", "run_dir", RESUME, ("rng.safetensors",),
         setup=lambda ws: (latest_ckpt(ws) / "rng.safetensors").unlink()),
    # Checkpoints read by other commands
    Case("eval_weights_truncated", "checkpoint", ["eval", "forecast", "RUN", "data=STORE"], ("model.safetensors",),
         setup=lambda ws: [truncate(f) for f in (ws / "run/checkpoints").glob("step_*/model.safetensors")]),
    Case("eval_weights_pickled", "checkpoint", ["eval", "forecast", "RUN", "data=STORE"], ("model.safetensors",),
         setup=pickle_weights),
    Case("checkpoint_of_another_kind", "checkpoint", ["eval", "tokenizer", "RUN", "data=STORE"], ("toy_forecaster",)),
    Case("checkpoint_config_json_truncated", "checkpoint", ["eval", "forecast", "RUN", "data=STORE"], ("config.json",),
         setup=lambda ws: [truncate(f) for f in (ws / "run/checkpoints").glob("step_*/config.json")]),
    Case("checkpoint_config_unknown_model", "checkpoint", ["eval", "forecast", "RUN", "data=STORE"], ("config.json", "nope"),
         setup=edit_ckpt_json("config.json", lambda c: c.update(name="nope"))),
    Case("world_model_tokenizer_other_vocab", "checkpoint",
         ["train", "world/gpt_tiny.yaml", "data=STORE", "run_dir=WS/new", "model.tokenizer_run=TOK",
          "model.vocab_size=512", "train.steps=1"], ("vocab_size", "512", "64")),
    Case("world_model_tokenizer_missing", "checkpoint",
         ["train", "world/gpt_tiny.yaml", "data=STORE", "run_dir=WS/new", "model.tokenizer_run=WS/no_tok",
          "train.steps=1"], ("no_tok",)),
    # Stores
    Case("generate_n_0", "store", GEN + ["-n", "0"], ("episodes", "0")),
    Case("generate_n_negative", "store", GEN + ["-n", "-3"], ("episodes", "-3")),
    Case("generate_frames_0", "store", ["data", "generate", "--out", "WS/gen", "--preset", "micro", "-t", "0"], ("frames", "0")),
    Case("generate_workers_0", "store", GEN + ["--workers", "0"], ("workers", "0")),
    Case("generate_over_other_run", "store",
         ["data", "generate", "--out", "STORE", "--preset", "micro", "-n", "2", "-t", "12", "--seed", "9"], ("STORE", "seed", "9")),
    Case("store_empty", "store", TOK_TRAIN, ("STORE", "no episodes"), setup=empty_store),
    Case("store_windows_too_long", "store", TOK_TRAIN + ["data.past=20"], ("STORE", "12")),
    Case("store_manifest_truncated", "store", ["data", "inspect", "STORE"], ("manifest.json",),
         setup=lambda ws: truncate(ws / "store/manifest.json")),
    Case("store_manifest_not_json", "store", TOK_TRAIN, ("manifest.json",), setup=write("store/manifest.json", b"\x89PNG\r\n")),
    Case("store_missing", "store", ["data", "inspect", "WS/no_store"], ("no_store",)),
    Case("store_path_is_a_file", "store", ["data", "inspect", "WS/dup.yaml"], ("dup.yaml",), setup=write("dup.yaml", "a: 1\n")),
    Case("stored_nan_ego_speed", "store", TOK_TRAIN + ["data.keys=[occ,ego_speed]"], ("ego_speed", "ep_000000", "non-finite"), starts_run=True,
         setup=store_array("ego_speed", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(a.dtype))),
    Case("stored_nan_train", "store", TOK_TRAIN, ("ego_pose", "ep_000000"), starts_run=True,
         setup=store_array("ego_pose", lambda a: np.full_like(a, np.inf))),
    Case("stored_wrong_dtype", "store", TOK_TRAIN, ("occ", "uint8")
         , setup=store_array("occ", lambda a: a.astype(np.float64))),
    # Episodes written through the library (no command): the same one-line message
    Case("write_nan_ego_speed", "episode", None, ("ego_speed", "non-finite"), call=lambda ws: write_own(ws, set_value("ego_speed", np.nan))),
    Case("write_inf_route", "episode", None, ("route", "non-finite"), call=lambda ws: write_own(ws, set_value("route", np.inf))),
    Case("write_index_negative", "episode", None, ("index", "-1"), call=lambda ws: write_own(ws, lambda a: None, index=-1)),
    Case("write_wrong_dtype", "episode", None, ("occ",),
         call=lambda ws: write_own(ws, lambda a: a.update(occ=a["occ"].astype(np.int64)))),
    Case("write_unknown_key", "episode", None, ("velocity",), call=lambda ws: write_own(ws, lambda a: a.update(velocity=a["ego_speed"]))),
    Case("write_missing_key", "episode", None, ("ego_pose",), call=lambda ws: write_own(ws, lambda a: a.pop("ego_pose"))),
    Case("rollout_nan_actions", "episode", None, ("actions", "non-finite"), call=rollout_nan_actions),
]


# --- running -----------------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's SHA-256 and every directory under `root` (what 'nothing changed' compares)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def build_workspace(root: Path) -> Path:
    """A store (2 micro episodes of 12 frames), a toy run (checkpoints at steps 2 and 4), a tokenizer run."""
    from typer.testing import CliRunner

    from drivewm.cli import app

    ws = root / "base"
    ws.mkdir(parents=True)
    runner = CliRunner()
    for args in (
        ["data", "generate", "--out", ws / "store", "--preset", "micro", "-n", "2", "-t", "12"],
        ["train", "toy.yaml", f"run_dir={ws / 'run'}", "train.steps=4", "train.ckpt_every=2", "train.progress=false"],
        ["train", "tokenizer/occ_micro.yaml", f"data={ws / 'store'}", f"run_dir={ws / 'tok'}", "train.steps=1",
         "train.ckpt_every=1"],
    ):
        res = runner.invoke(app, [str(a) for a in args])
        if res.exit_code != 0:
            raise RuntimeError(f"workspace: {args} failed: {res.output}\n{res.exception!r}")
    return ws


def fill(text: str, ws: Path) -> str:
    return (text.replace("RUN", str(ws / "run")).replace("STORE", str(ws / "store"))
            .replace("TOK", str(ws / "tok")).replace("WS", str(ws)))


def run_case(case: Case, base: Path, root: Path) -> dict:
    """Run one case on a fresh copy of the workspace; what it printed and whether it passed."""
    from typer.testing import CliRunner

    from drivewm.cli import app, user_error_message

    ws = root / case.name
    shutil.copytree(base, ws)
    if case.setup is not None:
        case.setup(ws)
    before = tree_digest(ws)
    if case.call is not None:
        try:
            case.call(ws)
            code, err, bug = 0, "", None
        except Exception as e:  # noqa: BLE001 - the message function decides user error or bug
            message = user_error_message(e)
            code, err, bug = (2, f"drivewm: error: {message}\n", None) if message is not None else (1, "", e)
    else:
        res = CliRunner().invoke(app, [fill(a, ws) for a in case.args])
        code, err = res.exit_code, res.stderr
        bug = res.exception if code not in (0, 2) else None
    lines = err.strip().splitlines()
    line = lines[0] if lines else ""
    missing = [n for n in (fill(n, ws) for n in case.names) if n not in line]
    after = tree_digest(ws)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not (case.starts_run and k not in before))
    ok = code == 2 and len(lines) == 1 and line.startswith("drivewm: error: ") and not missing and not changed
    shutil.rmtree(ws, ignore_errors=True)
    return {"case": case.name, "group": case.group, "ok": ok, "exit": code, "line": line.replace(str(ws), "WS"),
            "lines": len(lines), "missing": missing, "changed": changed,
            "bug": None if bug is None else f"{type(bug).__name__}: {str(bug).splitlines()[0] if str(bug) else ''}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run the cases whose name contains one of these (comma-separated)")
    ap.add_argument("--verbose", action="store_true", help="print each case's error line on stderr")
    args = ap.parse_args()
    cases = [c for c in CASES if args.only is None or any(o in c.name for o in args.only.split(","))]
    with tempfile.TemporaryDirectory(prefix="campaign_inputs_") as tmp:
        base = build_workspace(Path(tmp))
        passed = 0
        for case in cases:
            r = run_case(case, base, Path(tmp))
            passed += r["ok"]
            print(json.dumps({"bench": "campaign_inputs", "case": case.name, "unit": "passed", "ours": int(r["ok"]),
                              "reference": 1, "ratio": float(r["ok"]), "target": 1}), flush=True)
            if args.verbose or not r["ok"]:
                print(json.dumps(r), file=sys.stderr, flush=True)
        print(json.dumps({"bench": "campaign_inputs", "case": "malformed_inputs_refused_cleanly", "unit": "cases",
                          "ours": passed, "reference": len(cases), "ratio": round(passed / len(cases), 3),
                          "target": len(cases)}), flush=True)


if __name__ == "__main__":
    main()
