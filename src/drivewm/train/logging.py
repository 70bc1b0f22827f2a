"""Training logs: metrics.jsonl (always), TensorBoard events (when tensorboard is installed), a progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from drivewm.train.checkpoint import atomic_write_text


class MetricsLogger:
    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a killed run may have logged past its last checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for ln in self.path.read_text().splitlines():
            try:
                if json.loads(ln).get("step", 0) <= step:
                    keep.append(ln)
            except json.JSONDecodeError:  # blank, or the last line of a run killed mid-write
                continue
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(v)) for k, v in values.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[speed]:.2f} step/s"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
