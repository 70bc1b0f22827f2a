"""Pretrained directories in the Hugging Face Hub file convention, offline, on local directories.

A pretrained directory holds everything needed to rebuild a model, nothing that runs code on load:

    config.json         the model's registered config dataclass (`model.cfg`, with its "name"); a world
                        model's frozen tokenizer (or a predictor's frozen encoder) is nested in it
    model.safetensors   every weight, the frozen parts included
    README.md           a model card: the model, its config and its metrics with their protocol names

Every checkpoint a training run writes (`train.checkpoint`) is such a directory, with the optimizer,
RNG and step state beside it, so `from_pretrained` loads a run directory (its best or latest
checkpoint), a checkpoint directory or a directory written by `save_pretrained` alike. Loading is
strict: a CheckpointError names every missing or unexpected tensor and every shape mismatch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from drivewm.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


# ---------------------------------------------------------------- configs
def config_to_dict(cfg: Any) -> dict:
    """A registered model's config dataclass as plain JSON-able data (nested configs as dicts)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"a model config must be a dataclass, got {type(cfg).__name__}")
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def config_from_dict(data: dict, source: str = "config") -> Any:
    """The registered config dataclass named by data["name"], filled from `data` (unknown keys refused)."""
    from drivewm.registry import config_class

    if not isinstance(data, dict) or not data.get("name"):
        raise CheckpointError(f"{source}: a model config needs its registered 'name'")
    try:
        cls = config_class(data["name"])
    except KeyError as e:
        raise CheckpointError(f"{source}: {e.args[0]}") from None
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls()), data))
    except OmegaConfBaseException as e:
        raise CheckpointError(f"{source}: {str(e).splitlines()[0]}") from None


def upgrade_model_config(data: dict) -> list[str]:
    """Bring a model config dict written by an older drivewm up to date in place (its config class's `upgrade`,
    if it has one); returns the keys changed. A ValueError names an option that cannot be carried over."""
    from drivewm.registry import config_class

    try:
        cls = config_class(data.get("name", ""))
    except KeyError:
        return []  # config_from_dict names the unknown model
    upgrade = getattr(cls, "upgrade", None)
    return upgrade(data) if upgrade is not None else []


def convert_command(path: Path) -> str:
    """The command that converts the run holding `path` (a checkpoint directory or the run itself)."""
    path = Path(path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path
    return f"drivewm convert {run}"


def check_current(model: dict, path: Path) -> None:
    """Refuse, in one line naming the command that converts it, a checkpoint whose model config an older drivewm
    wrote (options since renamed or removed)."""
    try:
        outdated = upgrade_model_config(copy.deepcopy(model))
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if outdated:
        keys = ", ".join(f"model.{k}" for k in outdated)
        raise CheckpointError(f"{path}: written by an older drivewm ({keys}); convert the run once: "
                              f"{convert_command(path)}")


def build_from_config(data: dict, source: str = "config") -> nn.Module:
    """Build (no weights) the registered model a config dict describes."""
    from drivewm.registry import build_model

    return build_model(config_from_dict(data, source))


# ---------------------------------------------------------------- weights
def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # Clone so tied weights (one storage, two names) are saved as two plain tensors.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(path))


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
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not match the model built from the checkpoint's config ({' | '.join(problems)})"
        )


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into `model` after checking every name and shape."""
    found = read_tensors(path)
    check_state_dict(model.state_dict(), found, path)
    model.load_state_dict(found, strict=True)


# ---------------------------------------------------------------- model card
def model_card(config: dict, metrics: dict | None = None) -> str:
    """README.md of a pretrained directory: what the model is, how to load it, its metrics by protocol.

    `metrics` maps a protocol name (e.g. "OccWorld mIoU 3s (%)", "val loss") to a value."""
    lines = ["---", "library_name: drivewm", f"tags: [drivewm, {config['name']}]", "---", "",
             f"# {config['name']}", "", "Load it offline with:", "", "```python",
             "from drivewm.hub import from_pretrained", "model = from_pretrained(\"<this directory>\")", "```", ""]
    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| protocol | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in metrics.items()]
    else:
        lines.append("No metrics recorded.")
    lines += ["", "## Config", "", "```json", json.dumps(config, indent=1), "```", ""]
    return "\n".join(lines)


def write_pretrained_files(directory: Path, config: dict, state: dict[str, torch.Tensor],
                           metrics: dict | None = None) -> None:
    """config.json, model.safetensors and README.md into an existing directory (the caller renames it into place)."""
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=1))
    write_tensors(state, directory / WEIGHTS_NAME)
    (directory / CARD_NAME).write_text(model_card(config, metrics))


def save_pretrained(model: nn.Module, directory: str | Path, *, metrics: dict | None = None) -> Path:
    """Write `model` (its `cfg` and weights) and a model card to `directory`, atomically; returns the directory."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError(f"{type(model).__name__} keeps no config in .cfg; only registered models can be saved")
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_pretrained_files(tmp, config_to_dict(cfg), model.state_dict(), metrics)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


# ---------------------------------------------------------------- loading
def find_checkpoint(directory: str | Path, which: str = "best") -> Path:
    """The directory holding the weights: `directory` itself when it has them, else the run's `best` or
    `latest` checkpoint (checkpoints/index.json)."""
    directory = Path(directory)
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    if (directory / WEIGHTS_NAME).exists() or (directory / "state.json").exists():
        return directory
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such run directory")
    index = directory / "checkpoints" / "index.json"
    try:
        idx = json.loads(index.read_text()) if index.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{index}: not valid JSON (truncated?): {e}") from None
    name = (idx.get("best") or idx.get("latest")) if which == "best" else idx.get("latest")
    path = directory / "checkpoints" / name if name else None
    if path is None or not path.is_dir():
        raise CheckpointError(f"{directory}: no checkpoint found (checkpoints/index.json missing or stale)")
    return path


def read_run_config(directory: Path) -> dict:
    """The whole run config (config.yaml) a checkpoint directory was written with, checked to have a model."""
    import yaml

    p = directory / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{p}: file missing")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
        raise CheckpointError(f"{p}: not a drivewm run config (no 'model' section)")
    return d


def read_model_config(path: Path) -> dict:
    """The model config of a pretrained or checkpoint directory: config.json, or the `model` section of the
    config.yaml of a checkpoint written before checkpoints carried config.json."""
    p = path / CONFIG_NAME
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{p}: not valid JSON (truncated?): {e}") from None
    if not (path / "config.yaml").is_file():
        raise CheckpointError(f"{p}: file missing")
    return read_run_config(path)["model"]


def nest_frozen_parts(cfg: Any, *, missing_only: bool, source: str) -> dict[str, nn.Module]:
    """Nest into `cfg` the configs of the frozen parts it copies from finished runs (a world model's tokenizer,
    a predictor's encoder: `cfg.frozen_sources()`); returns {model attribute: that part, as trained}.

    A new run does this for every source it names (`missing_only=False`); loading a checkpoint only for
    parts whose config a run written before runs were self-contained left as a path (`missing_only=True`),
    which then must still resolve."""
    from drivewm.registry import model_entry

    sources = cfg.frozen_sources(missing_only) if hasattr(type(cfg), "frozen_sources") else {}
    parts = {}
    for attribute, run in sources.items():
        if not Path(run).is_dir():
            if missing_only:
                raise CheckpointError(
                    f"{source}: names its {attribute} by the run directory {run}, which does not exist; convert the run "
                    f"once, naming where that run is now: {convert_command(Path(source).parent)} {attribute}_run=DIR")
            raise CheckpointError(f"model.{attribute}_run: no {attribute} run directory {run}; train one first")
        run_model = from_pretrained(run)
        try:
            parts[attribute] = cfg.adopt_frozen(attribute, model_entry(run_model.cfg.name).kind, run_model)
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from None
    return parts


def load_model(cfg: Any, path: Path) -> nn.Module:
    """Build the model of config dataclass `cfg` and load path/model.safetensors into it, strictly."""
    from drivewm.registry import build_model

    nest_frozen_parts(cfg, missing_only=True, source=str(path / "config.yaml"))
    model = build_model(cfg)
    load_weights(model, path / WEIGHTS_NAME)
    return model


def from_pretrained(directory: str | Path, device: str | torch.device = "cpu", which: str = "best") -> nn.Module:
    """Rebuild a model from a pretrained, checkpoint or run directory (strict), in eval mode on `device`."""
    path = find_checkpoint(directory, which)
    model = read_model_config(path)
    check_current(model, path)
    cfg = config_from_dict(model, str(path / CONFIG_NAME))
    return load_model(cfg, path).to(device).eval()
