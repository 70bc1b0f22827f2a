"""The `drivewm` command: one typer app, one module per command group, one error handler.

Commands only parse arguments, call a library function and print. A mistake in the user's input
(`DrivewmError`, a missing file, a config OmegaConf rejects) prints one line
`drivewm: error: <message>` on stderr and exits with code 2; `--debug` shows the traceback. The
handler sits on the root command, so `main`, `python -m drivewm.cli` and typer's `CliRunner` share it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence

import typer
from omegaconf.errors import OmegaConfBaseException
from typer.core import TyperGroup

from drivewm import __version__
from drivewm.errors import DrivewmError
from drivewm.lifetime import end_with_parent

log = logging.getLogger("drivewm")


class _Options:
    debug = False


def user_error_message(err: BaseException) -> Optional[str]:
    """The one-line message of an error in the user's input, or None for a bug (shown as a traceback)."""
    if isinstance(err, DrivewmError):
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return f"{err.strerror}: {err.filename}" if err.filename else str(err).splitlines()[0]
    if isinstance(err, OmegaConfBaseException):
        return f"config: {str(err).splitlines()[0]}"
    return None


class _HandledGroup(TyperGroup):
    """The root command: the one place where an error in the user's input becomes one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as err:  # noqa: BLE001 - user errors end here; anything else re-raises as a bug
            message = user_error_message(err)
            if message is None or _Options.debug:
                raise
            typer.echo(f"drivewm: error: {message}", err=True)
            ctx.exit(2)


# Help texts quote Python (`SeedSequence([seed, i])`, `[8,8]`): no rich markup, so brackets print as written.
app = typer.Typer(
    cls=_HandledGroup,
    help="drivewm: world models of driving scenes (tokenized, JEPA, state-space) on one data contract.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Evaluate trained models with the published protocols.", no_args_is_help=True,
                       rich_markup_mode=None)
config_app = typer.Typer(help="Inspect model configs.", no_args_is_help=True, rich_markup_mode=None)

# Accepts `RUN... data=DIR key=value` after the options; `parse_run_args` checks every key.
RUN_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr, looked up per record (a test runner swaps it between commands)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _version(value: bool) -> None:
    if value:
        typer.echo(f"drivewm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More diagnostics on stderr (-v info, -vv debug)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    _Options.debug = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("drivewm: %(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


def _wire() -> None:
    from drivewm.cli import convert, data, demo, export, models, plan, play, report, sim, train
    from drivewm.cli import eval as evaluate

    app.add_typer(data.app, name="data")
    app.add_typer(sim.app, name="sim")
    app.command("train", context_settings=RUN_ARGS)(train.train)
    app.add_typer(eval_app, name="eval")
    eval_app.command("forecast", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN_DIR... data=DIR")(evaluate.eval_forecast)
    eval_app.command("rollout", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN_DIR... data=DIR")(evaluate.eval_rollout)
    eval_app.command("baselines", context_settings=RUN_ARGS, options_metavar="[OPTIONS] data=DIR")(evaluate.eval_baselines)
    eval_app.command("tokenizer", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN_DIR data=DIR")(evaluate.eval_tokenizer)
    eval_app.command("probe", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN_DIR data=DIR [data.KEY=VALUE...]")(evaluate.eval_probe)
    eval_app.command("plan", context_settings=RUN_ARGS, options_metavar="[OPTIONS] [RUN_DIR...] [data=DIR] [KEY=VALUE...]")(plan.eval_plan)
    app.command("drive", context_settings=RUN_ARGS, options_metavar="[OPTIONS] [RUN_DIR] [KEY=VALUE...]")(plan.drive)
    app.command("play", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN data=DIR [KEY=VALUE...]")(play.play)
    app.command("report")(report.report)
    app.command("demo")(demo.demo)
    app.command("scaling", context_settings=RUN_ARGS, options_metavar="[OPTIONS] [data=DIR] [KEY=VALUE...]")(demo.scaling)
    app.command("models")(models.models)
    app.add_typer(export.app, name="export")
    app.command("convert", context_settings=RUN_ARGS, options_metavar="[OPTIONS] RUN_DIR [tokenizer_run=DIR]")(convert.convert)
    app.add_typer(config_app, name="config")
    config_app.command("show")(models.config_show)


_wire()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of `drivewm` and `python -m drivewm.cli`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        app(args=args, prog_name="drivewm")
        return
    end_with_parent(os.getppid())  # a torchrun rank dies with its agent, from before torch is imported
    try:
        app(args=args, prog_name="drivewm")
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    from drivewm.train.distributed import leave_rank

    leave_rank(code)
