"""`run_training`: wire a RunConfig into the engine (build data, build model under the seed, fit)."""

from __future__ import annotations

import random

import numpy as np
import torch

from drivewm.config import RunConfig, to_yaml
from drivewm.registry import build_model, model_entry
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


def run_training(cfg: RunConfig, resume: bool = False) -> FitResult:
    env = setup_distributed(cfg.train.device)
    try:
        seed_everything(cfg.train.seed)
        train_set, val_set = build_datasets(cfg)
        seed_everything(cfg.train.seed)  # the model's init must not depend on how data was built
        model = build_model(cfg.model)
        if hasattr(model, "load_external_files"):  # files the config names beside the weights (a perceptual network)
            model.load_external_files()
        from drivewm.dynamics.base import TokenWorldModel

        if isinstance(model, TokenWorldModel):  # a frozen tokenizer: encode each frame once
            from drivewm.dynamics.token_cache import tokenized

            model.to(env.device)
            show = cfg.train.progress and env.is_main
            train_set = tokenized(model, train_set, env.device, show)
            val_set = tokenized(model, val_set, env.device, show)
        trainer = Trainer(model, train_set, cfg.train, cfg.run_dir, val_set=val_set, config_yaml=to_yaml(cfg), dist_env=env)
        return trainer.fit(resume=resume)
    finally:
        teardown_distributed()
