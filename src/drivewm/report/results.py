"""The results convention shared by every evaluation and the report."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def write_result(
    directory: str | Path,
    name: str,
    *,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    protocol: str = "",
    images: Sequence[str] = (),
    notes: str = "",
    extra: dict | None = None,
) -> Path:
    """Write ``directory/results/name.json`` atomically; images are paths relative to results/."""
    out = Path(directory) / "results"
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        if len(r) != len(columns):
            raise ValueError(f"result {name!r}: row {list(r)} has {len(r)} cells for {len(columns)} columns")
    doc = {
        "title": title,
        "protocol": protocol,
        "columns": list(columns),
        "rows": [[_clean(c) for c in r] for r in rows],
        "images": list(images),
        "notes": notes,
        **(extra or {}),
    }
    path = out / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path


def read_results(directory: str | Path) -> list[dict]:
    """All result documents of a directory and of its stage subdirectories (`DIR/results/*.json`,
    `DIR/*/results/*.json`), each with its `_dir` (the results folder) and `_name`."""
    out = []
    root = Path(directory)
    for p in sorted(root.glob("results/*.json")) + sorted(root.glob("*/results/*.json")):
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON: {e}") from None
        for key in ("title", "columns", "rows"):
            if key not in doc:
                raise ValueError(f"{p}: result file lacks the key {key!r}")
        doc["_dir"], doc["_name"] = str(p.parent), p.stem
        out.append(doc)
    return out


def environment_info(**extra: Any) -> dict:
    """Versions, device and anything the caller adds (seed, config): what produced the results."""
    import numpy
    import torch

    info = {
        "drivewm": __import__("drivewm").__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    info.update(extra)
    return info


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The lines of a training run's metrics.jsonl (written by the engine's MetricsLogger); [] if none."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
