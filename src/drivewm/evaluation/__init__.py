"""Every forecasting table through one loop: `evaluate_forecasters` scores any `drivewm.forecaster.Forecaster`
(baselines, token world models, the direct voxel model, camera world models, a tokenizer's bound) on window
batches; `evaluate_forecast` (runs beside the baselines) and `evaluate_baselines` are the tables `drivewm eval
forecast`, `drivewm eval baselines` and the demo show; `evaluate_rollout` (`drivewm eval rollout`) measures the
drift of long rollouts per step."""

from drivewm.evaluation.forecast import (
    ForecastTable,
    evaluate_baselines,
    evaluate_forecast,
    evaluate_lidar_4docc,
    load_forecaster,
)
from drivewm.evaluation.loop import CameraScoring, Evaluation, LidarScoring, OccupancyScoring, evaluate_forecasters
from drivewm.evaluation.rollout import RolloutResult, evaluate_rollout, save_rollout

__all__ = [
    "CameraScoring",
    "Evaluation",
    "ForecastTable",
    "LidarScoring",
    "OccupancyScoring",
    "RolloutResult",
    "evaluate_baselines",
    "evaluate_forecast",
    "evaluate_forecasters",
    "evaluate_lidar_4docc",
    "evaluate_rollout",
    "load_forecaster",
    "save_rollout",
]
