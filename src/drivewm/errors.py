"""drivewm's own errors: what a user's input (a path, a config key, a checkpoint, a store) got wrong.

Every subclass of `DrivewmError` is a mistake in what the user gave, not a bug: the `drivewm`
command prints its message on one line and exits with code 2 (`--debug` shows the traceback).
A message names the file, key or value at fault.
"""

from __future__ import annotations


class DrivewmError(ValueError):
    """Base of every error about the user's input; the CLI prints it as one line, exit code 2."""


class ConfigError(DrivewmError):
    """A config file, override or simulator setting that does not fit the schema; the message names the key."""


class CheckpointError(DrivewmError):
    """A checkpoint or pretrained directory that is missing, truncated, of an old layout, or does not match
    the model built from its config."""
