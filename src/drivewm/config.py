"""Run configs: typed dataclasses validated by OmegaConf, loaded from YAML plus dotted overrides.

``load_run_config("configs/tiny.yaml", ["model.depth=4"])`` returns a ``RunConfig`` whose ``model``
is the dataclass registered under ``model.name``. An unknown key or a wrongly typed value raises
``ConfigError`` naming the key and the valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from drivewm.errors import DrivewmError
from drivewm.data.config import DataConfig
from drivewm.train.config import TrainConfig


class ConfigError(DrivewmError):
    """A config file or override that does not fit the schema."""


@dataclass(kw_only=True)
class RunConfig:
    model: Any = None
    """The registered model's own config dataclass, chosen by `model.name`."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/default"
    """Directory for checkpoints, metrics.jsonl and TensorBoard events."""


def _valid_keys(node: Any) -> list[str]:
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    parent_key = key.rsplit(".", 1)[0] if "." in key else ""
    parent = OmegaConf.select(schema, parent_key) if parent_key else schema
    if isinstance(err, ConfigKeyError):
        return ConfigError(
            f"{source}: unknown key {key!r}; valid keys here: {', '.join(_valid_keys(parent))}"
        )
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"{source}: bad value for {key!r}: {msg}")
    return ConfigError(f"{source}: {err}")


def merge_into(schema_obj: Any, sources: Sequence[tuple[str, Any]]) -> Any:
    """Merge (name, dict-or-dotlist) sources into a dataclass instance's schema; return the dataclass."""
    schema = OmegaConf.structured(schema_obj)
    merged = schema
    for name, src in sources:
        try:
            node = OmegaConf.from_dotlist(list(src)) if isinstance(src, (list, tuple)) else OmegaConf.create(src)
            merged = OmegaConf.merge(merged, node)
        except OmegaConfBaseException as e:
            raise _explain(e, schema, name) from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _explain(e, schema, "config") from None


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a run config from YAML and `key=value` overrides (the model schema picked by model.name)."""
    from drivewm.registry import config_class

    raw = read_yaml(path) if path is not None else {}
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not of the form key=value")
    name_override = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "model.name"]
    model_name = name_override[-1] if name_override else (raw.get("model") or {}).get("name")
    if not model_name:
        raise ConfigError(f"{path}: the config must set model.name (a registered model)")
    try:
        model_cls = config_class(model_name)
    except KeyError as e:
        raise ConfigError(f"{path}: model.name: {e.args[0]}") from None
    schema = RunConfig(model=model_cls())
    return merge_into(schema, [(str(path), raw), ("command line", list(overrides))])


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def run_config_from_dict(d: dict) -> RunConfig:
    """Rebuild a RunConfig from the dict stored in a checkpoint's config.yaml."""
    from drivewm.registry import config_class

    model_cls = config_class(d["model"]["name"])
    return merge_into(RunConfig(model=model_cls()), [("checkpoint config", d)])

