"""A run directory's life: where a run starts (fresh, overwritten or resumed) and what each segment ran with.

A fresh run refuses a directory holding another run's logs or checkpoints unless told to
overwrite it, so two runs' metrics never mix. A resumed run continues from the newest checkpoint;
a config change that alters what it computes (learning rate, schedule, data, model) is refused by
name unless allowed. The run's ``config.yaml`` keeps its first segment's config; each resumed
segment, with its changes, is recorded in ``config.segments.yaml`` and in every checkpoint's state.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import yaml

from drivewm.config import ConfigError
from drivewm.errors import DrivewmError
from drivewm.train.checkpoint import CheckpointError, CheckpointManager, atomic_write_text, read_state

_log = logging.getLogger(__name__)

# Settings a resumed run may change without --allow-change: they decide what is logged, evaluated
# and kept, never which updates are made.
RESUME_SAFE_KEYS = frozenset({
    "run_dir",
    "train.progress",
    "train.log_every",
    "train.eval_every",
    "train.eval_batches",
    "train.ckpt_every",
    "train.keep_last",
    "train.num_workers",
})

# What a run writes into its directory (a fresh run with --overwrite removes exactly these).
RUN_FILES = ("checkpoints", "metrics.jsonl", "tb", "config.yaml", "config.segments.yaml")


class RunDirError(DrivewmError):
    """A run directory that already holds another run."""


class ConfigChangedError(ConfigError):
    """A resumed run whose config changes what the run computes, without --allow-change."""


def flat_config(text: str) -> dict[str, Any]:
    """A config's YAML as {dotted.key: value}."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(yaml.safe_load(text) or {}, "")
    return out


def latest_checkpoint(ckpts: CheckpointManager) -> Path | None:
    """The run's newest checkpoint directory, None before the first; a bad index.json is a CheckpointError."""
    latest = ckpts.latest()
    if latest is not None and not latest.is_dir():
        raise CheckpointError(f"{ckpts.root / 'index.json'}: names {latest.name}, which is missing")
    return latest


def _clear_run_dir(run_dir: Path) -> None:
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def prepare_run_dir(
    ckpts: CheckpointManager, config_yaml: str, resume: bool, overwrite: bool, allow_change: Sequence[str]
) -> tuple[str | None, list[dict]]:
    """Decide where a run starts: (checkpoint to restore or None, the run's config segments so far).

    Nothing a previous run wrote is changed here unless this run starts afresh in its place: a
    fresh start refuses a used directory unless `overwrite`; a resume refuses config changes that
    alter the run unless their keys are in `allow_change`; a resume of a directory with no
    checkpoint (a run killed before its first) starts at step 0, one of no directory is refused.
    """
    run_dir = ckpts.root.parent
    if resume and not run_dir.is_dir():  # most likely a mistyped path: starting afresh there would hide it
        raise RunDirError(f"{run_dir}: no such run directory to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = latest_checkpoint(ckpts)
    if resume and latest is not None:
        state = read_state(latest)
        before = flat_config((latest / "config.yaml").read_text() if (latest / "config.yaml").is_file() else "")
        after = flat_config(config_yaml)
        changes = {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
        refused = [k for k in changes if k not in RESUME_SAFE_KEYS and k not in allow_change]
        if refused:
            what = "; ".join(f"{k}: {changes[k][0]!r} in the run, {changes[k][1]!r} now" for k in refused)
            flags = " ".join(f"--allow-change {k}" for k in refused)
            raise ConfigChangedError(f"{latest / 'config.yaml'}: {what}; pass {flags} to resume with the new value")
        segments = list(state.get("segments") or [{"start_step": 0}])
        segments.append({"start_step": int(state["step"]), "changes": changes})
        return str(latest), segments
    if resume:
        _log.warning(f"{run_dir}: no checkpoint to resume from; starting from step 0")
        _clear_run_dir(run_dir)  # logs of a run killed before its first checkpoint: all its steps are redone
    else:
        used = [name for name in ("metrics.jsonl", "checkpoints") if (run_dir / name).exists()]
        if used and not overwrite:
            raise RunDirError(
                f"{run_dir} already holds a run ({used[0]} exists): pass --resume to continue it, "
                f"--overwrite to replace it, or choose another run_dir"
            )
        _clear_run_dir(run_dir)
    if config_yaml:
        atomic_write_text(run_dir / "config.yaml", config_yaml)
    return None, [{"start_step": 0}]


def write_segments(run_dir: Path, segments: list[dict]) -> None:
    """Record the run's segments (start step, config changes) beside its config.yaml."""
    atomic_write_text(run_dir / "config.segments.yaml", yaml.safe_dump(segments, sort_keys=False))
