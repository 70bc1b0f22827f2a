"""Typed configs: dataclasses validated by OmegaConf, filled from YAML files plus dotted overrides.

``merge_into(schema, sources)`` merges YAML mappings and ``key=value`` lists into a config dataclass;
an unknown key or a wrongly typed value raises ``ConfigError`` naming the key and the valid choices.
Every layer reads its configs with it (a training run's ``RunConfig`` lives in ``drivewm.train.config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from drivewm.errors import DrivewmError


class ConfigError(DrivewmError):
    """A config file or override that does not fit the schema."""


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


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
