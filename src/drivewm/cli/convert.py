"""`drivewm convert RUN [tokenizer_run=DIR]`: upgrade a run written by an older drivewm in place."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class _Sources:
    """The schema of `convert`'s overrides: where a frozen part's run is now, when it has moved."""

    tokenizer_run: str = ""
    """The tokenizer run a world model names by path, when that run is no longer where the config says."""


def convert(ctx: typer.Context) -> None:
    """Upgrade a run written by an older drivewm so that it loads anywhere: every checkpoint's config brought
    up to date and its frozen tokenizer's config nested (tokenizer_run=DIR: where that run is now); the weights
    stay as they are."""
    from drivewm.config import ConfigError, parse_run_args
    from drivewm.train.checkpoint import convert_run

    args = parse_run_args(ctx.args, _Sources())
    if len(args.paths) != 1 or args.data is not None:
        raise ConfigError(f"`drivewm convert`: give exactly one run directory (and tokenizer_run=DIR), got {ctx.args}")
    sources = dict(o.split("=", 1) for o in args.overrides)
    converted = convert_run(args.paths[0], **sources)
    typer.echo(f"converted {args.paths[0]}: {len(converted)} checkpoints")
