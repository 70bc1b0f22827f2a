"""`drivewm train`: build a registered model from a config and run the training engine on it."""

from __future__ import annotations

import os
from typing import Optional

import typer


def train(
    ctx: typer.Context,
    target: str = typer.Argument(
        ...,
        help="A YAML config (a file, or a packaged preset such as tiny.yaml or world/gpt_tiny.yaml), "
        "or a model kind (tokenizer, world, jepa) followed by --config.",
    ),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (file or preset), when TARGET is a model kind."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the run directory, step for step."
    ),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="Where checkpoints and logs go (overrides run_dir)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start afresh in a run directory that holds another run, deleting its checkpoints and logs."
    ),
    allow_change: list[str] = typer.Option(
        [], "--allow-change", help="With --resume: a config key (train.lr) the resumed run may change; repeat for more."
    ),
) -> None:
    """Train a model. Then data=DIR (the episode store) and KEY=VALUE overrides (model.depth=4 train.lr=1e-3)."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.train.config import load_run_config, run_config_schema
    from drivewm.registry import KINDS, model_entry
    from drivewm.train.run import run_training

    kind = target if target in KINDS else None
    if kind is not None and config is None:
        raise ConfigError(f"`drivewm train {target}` needs --config PATH")
    if kind is None and config is not None:
        raise ConfigError("give the config either as the first argument or with --config, not both")
    cfg_path = config if kind is not None else target
    extra = list(ctx.args) + ([f"run_dir={run_dir}"] if run_dir is not None else [])
    raw = [a for a in extra if "=" in a and not a.startswith("data=")]
    args = parse_run_args(extra, run_config_schema(cfg_path, raw))
    if args.paths:
        raise ConfigError(f"unexpected argument {args.paths[0]!r}; train takes one config, then data=DIR key=value")
    overrides = args.overrides + ([f"data.path={args.data}"] if args.data is not None else [])
    cfg = load_run_config(cfg_path, overrides)
    if kind and model_entry(cfg.model.name).kind != kind:
        raise ConfigError(f"{cfg_path} trains {cfg.model.name!r}, a {model_entry(cfg.model.name).kind} model, not a {kind}")
    result = run_training(cfg, resume=resume, overwrite=overwrite, allow_change=allow_change)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun, not one per process
        typer.echo(f"{cfg.run_dir}: {result.steps} steps, last loss {result.last_loss:.4g}"
                   + (f", best validation loss {result.best_val:.4g}" if result.best_val is not None else ""))
