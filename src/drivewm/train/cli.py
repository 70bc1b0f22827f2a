"""`drivewm train`: build a registered model from a config and run the training engine on it."""

from __future__ import annotations

from typing import Optional

import typer

from drivewm.registry import KINDS


def _split_args(target: str, config: Optional[str], extra: list[str]) -> tuple[str, Optional[str], list[str]]:
    """`train CONFIG k=v...` or `train KIND --config CONFIG k=v...`; `data=DIR` is short for data.path=DIR."""
    kind = None
    if target in KINDS:
        kind = target
        if config is None:
            raise typer.BadParameter(f"`drivewm train {target}` needs --config PATH")
    else:
        if config is not None:
            raise typer.BadParameter("give the config either as the first argument or with --config, not both")
        config = target
    overrides = [("data.path=" + a.split("=", 1)[1]) if a.startswith("data=") else a for a in extra]
    return kind or "", config, overrides


def train(
    ctx: typer.Context,
    target: str = typer.Argument(
        ...,
        help="A YAML config (configs/tiny.yaml), or a model kind (tokenizer, world, jepa) followed by --config.",
    ),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config, when TARGET is a model kind."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the run directory, step for step."
    ),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", help="Where checkpoints and logs go (overrides run_dir)."),
) -> None:
    """Train a model. Extra KEY=VALUE arguments override config keys (model.depth=4 train.lr=1e-3 data=DIR)."""
    from drivewm.config import ConfigError
    from drivewm.train.config import load_run_config
    from drivewm.registry import model_entry
    from drivewm.train.run import run_training

    kind, cfg_path, overrides = _split_args(target, config, list(ctx.args))
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")
    try:
        cfg = load_run_config(cfg_path, overrides)
    except ConfigError as e:
        typer.secho(f"config error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    if kind and model_entry(cfg.model.name).kind != kind:
        typer.secho(
            f"config error: {cfg_path} trains {cfg.model.name!r}, a {model_entry(cfg.model.name).kind} model, not a {kind}",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    run_training(cfg, resume=resume)
