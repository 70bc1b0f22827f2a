"""What several command groups share: preset names checked at the command line, a progress bar."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from drivewm.config import ConfigError


def sim_config(preset: str, **overrides: object):
    """The simulator preset `--preset NAME`; an unknown name is a one-line ConfigError."""
    from drivewm.sim import sim_preset

    try:
        return sim_preset(preset, **overrides)
    except KeyError as e:
        raise ConfigError(f"--preset: {e.args[0]}") from None


def check_sim_preset(preset: str) -> None:
    from drivewm.sim.config import SIM_PRESETS

    if preset not in SIM_PRESETS:
        raise ConfigError(f"--preset: unknown sim preset {preset!r}; valid: {', '.join(SIM_PRESETS)}")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields `update(done, total)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
