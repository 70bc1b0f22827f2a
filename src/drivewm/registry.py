"""Models registered by name, each with its typed config dataclass, so a YAML file rebuilds any model.

A model family registers a builder with ``@register_model(name, ConfigClass, kind=...)``; the config
class must have a ``name: str`` field whose default is the registered name. ``build_model(cfg)``
builds from a config instance; ``config_class(name)`` gives the schema used to validate YAML.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

KINDS = ("tokenizer", "world", "jepa", "toy")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    builder: Callable[..., nn.Module]
    kind: str


_MODELS: dict[str, ModelEntry] = {}

# Modules whose import registers models; imported lazily so `drivewm --help` stays fast.
_FAMILY_MODULES = (
    "drivewm.train.toy",
    "drivewm.tokenizers",
    "drivewm.dynamics",
    "drivewm.jepa",
)


def register_model(name: str, config_cls: type, kind: str) -> Callable:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} not in {KINDS}")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name].builder is not builder:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = ModelEntry(name, config_cls, builder, kind)
        return builder

    return wrap


def _load_families() -> None:
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def registered_models() -> dict[str, ModelEntry]:
    _load_families()
    return dict(_MODELS)


def model_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        _load_families()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS)) or '(none)'}")
    return _MODELS[name]


def config_class(name: str) -> type:
    return model_entry(name).config_cls


def build_model(cfg) -> nn.Module:
    """Build a registered model from its config dataclass instance."""
    return model_entry(cfg.name).builder(cfg)
