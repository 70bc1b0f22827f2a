"""The `drivewm` command. Each family adds its subcommands in its own module; this file only wires them."""

from __future__ import annotations

import typer

from drivewm import __version__

app = typer.Typer(
    help="drivewm: world models of driving scenes (tokenized, JEPA, state-space) on one data contract.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
eval_app = typer.Typer(help="Evaluate trained models with the published protocols.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the drivewm version."""
    typer.echo(__version__)


def _wire() -> None:
    from drivewm.data.cli import app as data_app
    from drivewm.train.cli import train

    app.add_typer(data_app, name="data")
    app.add_typer(eval_app, name="eval")
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train)
    from drivewm.report.cli import report

    app.command("report")(report)
    from drivewm.demo.cli import demo, scaling

    app.command("demo")(demo)
    app.command("scaling")(scaling)
    # --- family commands (each helper adds its own lines below) ---
    from drivewm.sim.cli import app as sim_app

    app.add_typer(sim_app, name="sim")
    from drivewm.jepa.probe import eval_probe

    eval_app.command("probe")(eval_probe)
    from drivewm.dynamics.cli import eval_forecast

    eval_app.command("forecast")(eval_forecast)
    from drivewm.planning.cli import drive, eval_plan

    eval_app.command("plan", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(eval_plan)
    app.command("drive")(drive)
    from drivewm.tokenizers.cli import eval_tokenizer

    eval_app.command("tokenizer")(eval_tokenizer)
    from drivewm.baselines.cli import baselines

    eval_app.command("baselines")(baselines)


_wire()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
