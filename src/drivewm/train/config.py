"""Typed configs of a training run: the engine's own (`TrainConfig`) and the whole run's (`RunConfig`).

``load_run_config("tiny.yaml", ["model.depth=4"])`` returns a ``RunConfig`` whose ``model``
is the dataclass registered under ``model.name``. An unknown key or a wrongly typed value raises
``ConfigError`` naming the key and the valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from drivewm.config import ConfigError, merge_into, read_yaml
from drivewm.data.config import DataConfig


@dataclass(kw_only=True)
class TrainConfig:
    steps: int = 1000
    """Optimizer steps to run in total."""
    batch_size: int = 8
    """Global batch size per optimizer step (split over processes and accumulation micro-steps)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of the peak."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.05
    """AdamW weight decay (applied to matrices only, not to biases, norms or embeddings' gains)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""
    precision: str = "auto"
    """'auto' (bf16 autocast on a GPU that supports it, fp32 elsewhere), 'bf16' or 'fp32'."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    parallel: str = "ddp"
    """Under torchrun: 'ddp' (DistributedDataParallel) or 'fsdp' (fully_shard, for models that do not fit a device)."""
    device: str = "auto"
    """'auto' (cuda if present, else cpu), 'cpu' or 'cuda'."""
    seed: int = 0
    """Fixes data order, initialisation and sampling."""
    log_every: int = 10
    """Steps between lines of metrics.jsonl."""
    eval_every: int = 0
    """Steps between validation passes (0: only at the end)."""
    eval_batches: int = 8
    """Validation batches per pass."""
    ckpt_every: int = 200
    """Steps between checkpoints (the last step is always saved)."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    num_workers: int = 0
    """DataLoader workers (0: load in the training process)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(kw_only=True)
class RunConfig:
    model: Any = None
    """The registered model's own config dataclass, chosen by `model.name`."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/default"
    """Directory for checkpoints, metrics.jsonl and TensorBoard events."""


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a run config from YAML and `key=value` overrides (the model schema picked by model.name)."""
    raw = read_yaml(path) if path is not None else {}
    schema = _run_schema(raw, overrides, path)
    return merge_into(schema, [(str(path), raw), ("command line", list(overrides))])


def _run_schema(raw: dict, overrides: Sequence[str], path: Any) -> RunConfig:
    """An empty RunConfig whose model schema is the one `model.name` (YAML or override) registers."""
    from drivewm.registry import config_class

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
    return RunConfig(model=model_cls())


def run_config_schema(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """The schema `load_run_config(path, overrides)` validates against (for `parse_run_args`)."""
    return _run_schema(read_yaml(path) if path is not None else {}, overrides, path)


def run_config_from_dict(d: dict) -> RunConfig:
    """Rebuild a RunConfig from the dict stored in a checkpoint's config.yaml."""
    from drivewm.registry import config_class

    model_cls = config_class(d["model"]["name"])
    return merge_into(RunConfig(model=model_cls()), [("checkpoint config", d)])
