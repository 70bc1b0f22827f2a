"""Self-describing checkpoints: config (YAML) + weights (safetensors) + every stateful part of training.

Layout of a run directory::

    run_dir/config.yaml                   the run's config
    run_dir/metrics.jsonl                 one JSON line per logged step
    run_dir/checkpoints/index.json        {"latest": "step_00000100", "best": ..., "best_value": ...}
    run_dir/checkpoints/step_00000100/    config.yaml, model.safetensors, optim.safetensors,
                                          rng.safetensors, state.json

Every file and directory is written under a temporary name and renamed into place, so a run
killed at any instant leaves the previous checkpoints intact. Loading never executes code from a
file: tensors come from safetensors, everything else from JSON/YAML (``yaml.safe_load``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from drivewm.errors import DrivewmError

STEP_PREFIX = "step_"


class CheckpointError(DrivewmError):
    """A checkpoint that is missing, truncated or does not match the model built from its config."""


# ---------------------------------------------------------------- atomic file helpers
def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # Clone so tied weights (one storage, two names) are saved as two plain tensors.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(path))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


# ---------------------------------------------------------------- optimizer state <-> flat tensors
def flatten_optimizer_state(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pkey, pstate in osd["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state/{pkey}/{k}"] = v
            else:
                scalars.setdefault(str(pkey), {})[k] = v
    return tensors, {"param_groups": osd["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pkey, k = key.split("/", 2)
        state.setdefault(pkey, {})[k] = v
    for pkey, d in meta.get("scalars", {}).items():
        state.setdefault(pkey, {}).update(d)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------- RNG state
def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if states:
            torch.cuda.set_rng_state_all(states)
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# ---------------------------------------------------------------- validation of weights against a model
def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: Path) -> None:
    """Raise a CheckpointError naming each missing/unexpected tensor or shape mismatch."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if shapes:
        problems.append(f"wrong shapes: {'; '.join(shapes[:8])}")
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not match the model built from the checkpoint's config.yaml "
            f"({' | '.join(problems)})"
        )


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load model.safetensors into `model` after checking every name and shape."""
    found = _load_tensors(path)
    expected = model.state_dict()
    check_state_dict(expected, found, path)
    model.load_state_dict(found, strict=True)


# ---------------------------------------------------------------- one checkpoint directory
def write_checkpoint(
    directory: Path,
    *,
    config_yaml: str,
    model_state: dict[str, torch.Tensor],
    optim_state: dict | None,
    state: dict,
) -> None:
    """Write a complete checkpoint to `directory` atomically (temporary directory, then rename)."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "config.yaml").write_text(config_yaml)
    _save_tensors(model_state, tmp / "model.safetensors")
    if optim_state is not None:
        otensors, ometa = flatten_optimizer_state(optim_state)
        _save_tensors(otensors, tmp / "optim.safetensors")
        state = {**state, "optimizer": ometa}
    rtensors, rmeta = capture_rng()
    _save_tensors(rtensors, tmp / "rng.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "rng": rmeta}))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def read_state(directory: Path) -> dict:
    p = directory / "state.json"
    if not p.is_file():
        raise CheckpointError(f"{p}: file missing")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: not valid JSON (truncated?): {e}") from None


def read_config(directory: Path) -> dict:
    p = directory / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{p}: file missing")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict) or "model" not in d:
        raise CheckpointError(f"{p}: not a drivewm run config (no 'model' section)")
    return d


# ---------------------------------------------------------------- the set of checkpoints of a run
class CheckpointManager:
    """Keeps the last `keep_last` checkpoints plus the best one; index.json says which is which."""

    def __init__(self, run_dir: str | Path, keep_last: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def _index(self) -> dict:
        p = self.root / "index.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    def latest(self) -> Path | None:
        name = self._index().get("latest")
        return self.root / name if name else None

    def best(self) -> Path | None:
        idx = self._index()
        name = idx.get("best") or idx.get("latest")
        return self.root / name if name else None

    def save(self, step: int, *, best_value: float | None = None, **payload: Any) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        directory = self.root / f"{STEP_PREFIX}{step:08d}"
        write_checkpoint(directory, **payload)
        idx = self._index()
        idx["latest"] = directory.name
        if best_value is not None and (idx.get("best_value") is None or best_value < idx["best_value"]):
            idx["best"], idx["best_value"] = directory.name, float(best_value)
        atomic_write_text(self.root / "index.json", json.dumps(idx, indent=1))
        self._prune(idx)
        return directory

    def _prune(self, idx: dict) -> None:
        steps = sorted(p for p in self.root.glob(f"{STEP_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
        keep = {p.name for p in steps[-self.keep_last :]} | {idx.get("best"), idx.get("latest")}
        for p in steps:
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """The `best` or `latest` checkpoint directory of a run (or a checkpoint directory itself)."""
    run_dir = Path(run_dir)
    if (run_dir / "model.safetensors").exists() or (run_dir / "state.json").exists():
        return run_dir
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run directory")
    mgr = CheckpointManager(run_dir)
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    path = mgr.best() if which == "best" else mgr.latest()
    if path is None or not path.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoint found (checkpoints/index.json missing or stale)")
    return path


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a trained model from its run directory: returns (RunConfig, model in eval mode)."""
    from drivewm.config import ConfigError
    from drivewm.train.config import run_config_from_dict
    from drivewm.registry import build_model

    path = find_checkpoint(run_dir, which)
    try:
        cfg = run_config_from_dict(read_config(path))
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{path / 'config.yaml'}: {e}") from None
    model = build_model(cfg.model)
    load_weights(model, path / "model.safetensors")
    return cfg, model.to(device).eval()
