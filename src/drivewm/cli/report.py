"""`drivewm report`: a static HTML page from demo / evaluation directories."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    run_dirs: List[Path] = typer.Argument(..., help="Directories with results/*.json and training runs (a demo --out dir, run dirs). Several compare side by side."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default: RUN_DIR/report.html for one directory, ./report.html for several)."),
    title: str = typer.Option("drivewm report", help="Page title."),
) -> None:
    """Write a self-contained HTML report: metric tables with baselines, curves, GIFs, environment."""
    from drivewm.report.html import build_report

    target = out or (run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html"))
    path = build_report(run_dirs, target, title=title)
    typer.echo(f"wrote {path}")
