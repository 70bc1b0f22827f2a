"""Self-describing checkpoints: config (YAML) + weights (safetensors) + every stateful part of training.

Layout of a run directory::

    run_dir/config.yaml                   the run's config
    run_dir/metrics.jsonl                 one JSON line per logged step
    run_dir/checkpoints/index.json        {"latest": "step_00000100", "best": ..., "best_value": ...}
    run_dir/checkpoints/step_00000100/    config.yaml, config.json, model.safetensors, README.md,
                                          optim.safetensors, rng.safetensors, state.json

Each checkpoint is a pretrained directory (`drivewm.hub`: config.json + model.safetensors + model card)
with the training state beside it, so `hub.from_pretrained` loads a run anywhere. A run is
self-contained: a model that freezes a part of another run (a world model's tokenizer, V-JEPA 2-AC's
encoder) has that part's config nested in its own and its weights in model.safetensors;
`build_model_from_sources` copies them in when a new run starts from the run named in its config
(`model.tokenizer_run`, `model.encoder_run`, recorded but never read to load). `convert_run` upgrades a
run written before that (a world model whose config names its tokenizer only by path).

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

from drivewm.errors import CheckpointError, ConfigError
from drivewm.hub import (
    CARD_NAME,
    CONFIG_NAME,
    check_current,
    check_state_dict,
    find_checkpoint,
    load_model,
    nest_frozen_parts,
    read_run_config,
    read_tensors,
    upgrade_model_config,
    write_pretrained_files,
    write_tensors,
)

STEP_PREFIX = "step_"

# Optimizer and RNG tensors are stored as the weights are (the engine reads them back through _load_tensors).
_load_tensors, _save_tensors = read_tensors, write_tensors


# ---------------------------------------------------------------- atomic file helpers
def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    write_pretrained_files(tmp, model_config(config_yaml), model_state, card_metrics(state))
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
        state = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: not valid JSON (truncated?): {e}") from None
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{p}: 'step' must be a completed-step count >= 0, got {step!r}")
    return state


# ---------------------------------------------------------------- the set of checkpoints of a run
class CheckpointManager:
    """Keeps the last `keep_last` checkpoints plus the best one; index.json says which is which."""

    def __init__(self, run_dir: str | Path, keep_last: int = 2) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def _index(self) -> dict:
        p = self.root / "index.json"
        try:
            return json.loads(p.read_text()) if p.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{p}: not valid JSON (truncated?): {e}") from None

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


def model_config(config_yaml: str) -> dict:
    """The model section of a run config (YAML text): what config.json holds."""
    d = yaml.safe_load(config_yaml)
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
        raise CheckpointError("a checkpoint's config has no 'model' section")
    return d["model"]


def card_metrics(state: dict) -> dict:
    """The metrics a training checkpoint's model card lists, by protocol name."""
    metrics = {"training steps": state["step"]}
    if state.get("best_value") is not None:
        metrics["validation loss (the model's training objective, best so far)"] = state["best_value"]
    return metrics


def build_model_from_sources(model_cfg, store_grid=None, store: str = "", check_grid: bool = True):
    """Build a new run's model: each frozen part its config names by run directory (`model.tokenizer_run`,
    `model.encoder_run`) is loaded, its config nested into `model_cfg` (in place, so the run records it)
    and its trained weights copied into the built model. What a world model reads from its tokenizer
    (`vocab_size`, `token_shape`) is filled in from it when unset. With the store's grid (`store_grid`, a
    GridSpec), every `grid: from_store` is bound to it and, with `check_grid` (occupancy data), every grid the
    config holds is compared with it first: a GridMismatchError names both."""
    from drivewm.data.spec import bind_model_grids
    from drivewm.registry import build_model

    parts = nest_frozen_parts(model_cfg, missing_only=False, source="model")
    if store_grid is not None:
        bind_model_grids(model_cfg, store_grid, store, compare=check_grid)
    derive_token_fields(model_cfg, parts.get("tokenizer"))
    model = build_model(model_cfg)
    for attribute, part in parts.items():
        target = getattr(model, attribute)
        check_state_dict(target.state_dict(), part.state_dict(), Path(f"model.{attribute}_run"))
        target.load_state_dict(part.state_dict())
    return model


TOKEN_FIELDS = ("vocab_size", "token_shape")
"""What a token world model reads from its tokenizer rather than from its own config."""


def derive_token_fields(model_cfg, tokenizer=None) -> None:
    """Fill a world model config's unset `vocab_size` and `token_shape` from its nested tokenizer (`tokenizer`,
    the module a run copies in, or one built from the nested config when not given). A value set to something
    else is left for the model to refuse, naming both (`dynamics.base.frozen_tokenizer`)."""
    if not all(hasattr(model_cfg, f) for f in TOKEN_FIELDS) or getattr(model_cfg, "tokenizer", None) is None:
        return
    if all(getattr(model_cfg, f) is not None for f in TOKEN_FIELDS):
        return
    if tokenizer is None:
        from drivewm.hub import build_from_config

        with torch.random.fork_rng(devices=[]):  # reading two numbers must not move the model's initialisation
            tokenizer = build_from_config(model_cfg.tokenizer, "model.tokenizer")
    if not all(hasattr(tokenizer, f) for f in TOKEN_FIELDS):  # VQ-VAE-2's two grids, the KL autoencoder's latent
        raise ConfigError(f"model.tokenizer: {getattr(model_cfg, 'tokenizer_run', '') or model_cfg.tokenizer.get('name')} "
                          f"has no single grid of discrete tokens per frame (vocab_size, token_shape): a token world "
                          f"model needs a tokenizer with one (camera: camera_vqgan or camera_temporal_vq)")
    if model_cfg.vocab_size is None:
        model_cfg.vocab_size = int(tokenizer.vocab_size)
    if model_cfg.token_shape is None:
        model_cfg.token_shape = [int(s) for s in tokenizer.token_shape]


def load_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """Rebuild a trained model from its run directory: returns (RunConfig, model in eval mode)."""
    from drivewm.config import ConfigError
    from drivewm.train.config import run_config_from_dict

    path = find_checkpoint(run_dir, which)
    d = read_run_config(path)
    check_current(d["model"], path)
    try:
        cfg = run_config_from_dict(d)
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{path / 'config.yaml'}: {e}") from None
    model = load_model(cfg.model, path)
    return cfg, model.to(device).eval()


def convert_run(run_dir: str | Path, **sources: str) -> list[Path]:
    """Make a run written by an older drivewm loadable anywhere: in every checkpoint (and the run's config.yaml)
    bring the model config up to date (options renamed or removed since: `upgrade_model_config`), nest the config
    of each frozen part it names by path (or the path given here, e.g. tokenizer_run="runs/tok" when that run has
    moved), and write config.json and the model card. The weights are already in each checkpoint. Returns the
    checkpoint directories converted."""
    from drivewm.config import ConfigError, to_yaml
    from drivewm.train.config import run_config_from_dict

    run_dir = Path(run_dir)
    ckpts = sorted(p for p in (run_dir / "checkpoints").glob(f"{STEP_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    if not ckpts:
        raise CheckpointError(f"{run_dir}: no checkpoint to convert (checkpoints/step_*)")
    for directory in [run_dir, *ckpts]:
        if directory == run_dir and not (run_dir / "config.yaml").is_file():
            continue
        d = read_run_config(directory)
        try:
            upgrade_model_config(d["model"])
        except ValueError as e:
            raise CheckpointError(f"{directory / 'config.yaml'}: {e}") from None
        for key, value in sources.items():
            if key not in d["model"]:
                raise CheckpointError(f"{directory / 'config.yaml'}: model {d['model'].get('name')} has no {key!r}")
            d["model"][key] = str(value)
        try:
            cfg = run_config_from_dict(d)
        except (ConfigError, KeyError) as e:
            raise CheckpointError(f"{directory / 'config.yaml'}: {e}") from None
        nest_frozen_parts(cfg.model, missing_only=True, source=str(directory / "config.yaml"))
        text = to_yaml(cfg)
        if directory != run_dir:
            load_model(cfg.model, directory)  # the weights match the nested config, or this says which do not
            state = read_state(directory)
            write_pretrained_files_beside(directory, model_config(text), card_metrics(state))
        atomic_write_text(directory / "config.yaml", text)
    return ckpts


def write_pretrained_files_beside(directory: Path, config: dict, metrics: dict) -> None:
    """config.json and README.md of an existing checkpoint whose weights stay as they are."""
    from drivewm.hub import model_card

    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=1))
    atomic_write_text(directory / CARD_NAME, model_card(config, metrics))
