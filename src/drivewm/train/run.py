"""`run_training`: wire a RunConfig into the engine (build data, build model under the seed, fit)."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from drivewm.config import to_yaml
from drivewm.errors import DrivewmError
from drivewm.train.checkpoint import build_model_from_sources
from drivewm.train.config import RunConfig
from drivewm.registry import model_entry
from drivewm.train.distributed import setup_distributed, teardown_distributed
from drivewm.train.engine import FitResult, Trainer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_datasets(cfg: RunConfig):
    """Train and validation datasets of a run; the toy model brings its own synthetic data."""
    if model_entry(cfg.model.name).kind == "toy":
        from drivewm.train.toy import toy_datasets

        return toy_datasets(cfg.model, cfg.train.seed)
    from drivewm.data import build_dataset

    return build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")


def prepared_dataset(model: torch.nn.Module, dataset, device: torch.device | str = "cpu", progress: bool = True):
    """The data `model` trains on: what its `prepare_dataset` makes of `dataset` once per run (a frozen
    tokenizer encodes each frame once), or `dataset` itself for a model without one."""
    prepare = getattr(model, "prepare_dataset", None)
    return dataset if prepare is None else prepare(dataset, device, progress)


def run_training(
    cfg: RunConfig, resume: bool = False, *, overwrite: bool = False, allow_change: Sequence[str] = ()
) -> FitResult:
    env = setup_distributed(cfg.train.device)
    try:
        seed_everything(cfg.train.seed)
        train_set, val_set = build_datasets(cfg)
        seed_everything(cfg.train.seed)  # the model's init must not depend on how data was built
        # Frozen parts named by run (a tokenizer, an encoder) are nested into cfg.model and copied in, so the
        # config this run records rebuilds the model without those runs.
        # A grid: from_store becomes the store's grid, and every grid of the model is checked against it, here,
        # before the first step.
        model = build_model_from_sources(cfg.model, getattr(train_set, "grid", None), cfg.data.path,
                                         check_grid="occ" in cfg.data.keys)
        if hasattr(model, "load_external_files"):  # files the config names beside the weights (a perceptual network)
            model.load_external_files()
        reads = getattr(model, "modality", None) if getattr(model, "tokenizer", None) is not None else None
        if reads is not None and reads not in cfg.data.keys:
            raise DrivewmError(f"data.keys={cfg.data.keys}: the world model's tokenizer reads {reads!r} frames; "
                               f"add {reads!r} to data.keys (a store that holds them)")
        show = cfg.train.progress and env.is_main
        train_set = prepared_dataset(model, train_set, env.device, show)
        val_set = prepared_dataset(model, val_set, env.device, show)
        trainer = Trainer(model, train_set, cfg.train, cfg.run_dir, val_set=val_set, config_yaml=to_yaml(cfg), dist_env=env)
        result = trainer.fit(resume=resume, overwrite=overwrite, allow_change=allow_change)
    except BaseException:
        teardown_distributed(finished=False)
        raise
    teardown_distributed()
    return result
