"""Every forecasting table through one loop: `evaluate_forecasters` scores any `drivewm.forecaster.Forecaster`
(baselines, token world models, the direct voxel model, a tokenizer's bound) on window batches;
`evaluate_forecast` (runs beside the baselines) and `evaluate_baselines` are the tables `drivewm eval
forecast`, `drivewm eval baselines` and the demo show."""

from drivewm.evaluation.forecast import (
    ForecastTable,
    evaluate_baselines,
    evaluate_forecast,
    evaluate_lidar_4docc,
    load_forecaster,
)
from drivewm.evaluation.loop import Evaluation, LidarScoring, OccupancyScoring, evaluate_forecasters

__all__ = [
    "Evaluation",
    "ForecastTable",
    "LidarScoring",
    "OccupancyScoring",
    "evaluate_baselines",
    "evaluate_forecast",
    "evaluate_forecasters",
    "evaluate_lidar_4docc",
    "load_forecaster",
]
