"""No-learning forecasters (copy-last, ego-motion warp, constant-velocity LiDAR) and the evaluation
loop that scores them, or any model with the same ``forecast(context, horizon)``, under a named protocol.
"""

from drivewm.baselines.evaluate import evaluate_lidar_forecast, evaluate_occupancy_forecast, occupancy_baselines, split_window
from drivewm.baselines.forecasters import (
    ConstantVelocityLidar,
    CopyLast,
    CopyLastLidar,
    EgoWarpCopyLast,
    EgoWarpLidar,
    future_poses,
)

__all__ = [
    "ConstantVelocityLidar",
    "CopyLast",
    "CopyLastLidar",
    "EgoWarpCopyLast",
    "EgoWarpLidar",
    "evaluate_lidar_forecast",
    "evaluate_occupancy_forecast",
    "future_poses",
    "occupancy_baselines",
    "split_window",
]
