"""No-learning forecasters (copy-last, ego-motion warp, constant-velocity LiDAR) behind the one
`drivewm.forecaster.Forecaster` interface; `baselines(grid, modality)` lists the rows every table shows."""

from drivewm.baselines.forecasters import (
    ConstantVelocityLidar,
    CopyLast,
    CopyLastLidar,
    EgoWarpCopyLast,
    EgoWarpLidar,
    baselines,
    future_poses,
)

__all__ = [
    "ConstantVelocityLidar",
    "CopyLast",
    "CopyLastLidar",
    "EgoWarpCopyLast",
    "EgoWarpLidar",
    "baselines",
    "future_poses",
]
