"""`drivewm play RUN data=DIR`: drive inside a learned world model (terminal, web page or a replayed key script)."""

from __future__ import annotations

import typer


def play(ctx: typer.Context) -> None:
    """Drive inside a world-model run (occupancy or camera), starting from a real window of the store data=DIR.
    Keys: w/up accelerate, s/down brake, a/left steer left, d/right steer right, . hold, r reset, q quit; each
    key steps the model once. key=value: past=5 episode=0 start=0 seed=0 script=KEYS web=false port=8765
    record=FILE.gif accel_step=1.0 steer_step=0.1 which=best device=cpu."""
    from drivewm.config import ConfigError, merge_into, parse_run_args
    from drivewm.play.run import PlayConfig, run_play

    args = parse_run_args(list(ctx.args), PlayConfig(), source="drivewm play")
    if len(args.paths) != 1 or args.data is None:
        raise ConfigError("`drivewm play` takes one world-model run directory and data=DIR (the start windows' store)")
    cfg = merge_into(PlayConfig(), [("drivewm play", args.overrides)])
    run_play(args.paths[0], args.data, cfg, echo=typer.echo)
