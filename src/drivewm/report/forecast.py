"""Write a forecasting table (`drivewm.evaluation.ForecastTable`) by the results convention: its pictures and
results/forecast.json (LiDAR: forecast_lidar.json), which the report reads."""

from __future__ import annotations

from pathlib import Path

from drivewm.evaluation import ForecastTable
from drivewm.report.results import write_result


def write_forecast_table(table: ForecastTable, out_dir: str | Path) -> Path:
    """Pictures and JSON of `table` under out_dir/results; returns the JSON's path."""
    images = table.save_pictures(Path(out_dir) / "results")
    return write_result(out_dir, **table.document(images))
