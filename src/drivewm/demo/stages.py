"""A pipeline of named stages, each cached by the hash of its config: a re-run skips what is done.

``stages.json`` in the output directory records, per stage, its config hash, status and time. A
stage whose hash changed (another config or drivewm version) is run again, after saying so; a
stage left ``running`` by an interrupted demo is run again and, for training stages, resumes from
its last checkpoint. Writes are atomic, so an interrupt never leaves a corrupt record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import drivewm


def config_hash(config: Any) -> str:
    blob = json.dumps({"drivewm": drivewm.__version__, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class StageRecord:
    status: str
    hash: str
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


class StageRunner:
    def __init__(self, out: Path, *, fresh: bool = False, echo: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.echo = echo
        self._check_writable()
        if fresh and self.out.exists():
            for child in self.out.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.path = self.out / "stages.json"
        self.records: dict[str, StageRecord] = {}
        self.ran: list[str] = []
        """Stages run (not taken from the cache) by this runner, in order."""
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self.records = {k: StageRecord(**v) for k, v in raw.items()}
            except (json.JSONDecodeError, TypeError) as e:
                self.echo(f"[demo] {self.path} is unreadable ({e}); starting the stages afresh")
                self.records = {}

    def _check_writable(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / ".write_probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise PermissionError(f"output directory {self.out} is not writable: {e.strerror or e}") from None

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({k: vars(v) for k, v in self.records.items()}, indent=1))
        os.replace(tmp, self.path)

    def run(self, name: str, config: Any, fn: Callable[[Path, bool], dict]) -> dict:
        """Run `fn(stage_dir, resume)` unless a finished record with the same config hash exists."""
        h = config_hash(config)
        stage_dir = self.out / name
        rec = self.records.get(name)
        if rec is not None and rec.status == "done" and rec.hash == h and stage_dir.exists():
            self.echo(f"[demo] {name}: cached ({rec.seconds:.1f} s earlier, config {h})")
            return rec.summary
        resume = False
        if rec is not None and rec.hash != h and stage_dir.exists():
            self.echo(f"[demo] {name}: stale cache (config {rec.hash} from another config or drivewm version, now {h}); re-running")
            shutil.rmtree(stage_dir)
        elif rec is not None and rec.status != "done" and stage_dir.exists():
            self.echo(f"[demo] {name}: interrupted earlier; continuing where it stopped")
            resume = True
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.records[name] = StageRecord(status="running", hash=h)
        self._save()
        t0 = time.perf_counter()
        summary = fn(stage_dir, resume)
        seconds = time.perf_counter() - t0
        self.records[name] = StageRecord(status="done", hash=h, seconds=seconds, summary=summary or {})
        self.ran.append(name)
        self._save()
        self.echo(f"[demo] {name}: done in {seconds:.1f} s")
        return summary or {}
