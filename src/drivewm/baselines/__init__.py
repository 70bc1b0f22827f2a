"""No-learning forecasters (copy-last, ego-motion warp, constant-velocity agents and LiDAR, the oracle-fill
ceiling, the camera's copy and road-plane warp) behind the one `drivewm.forecaster.Forecaster` interface;
`baselines(grid, modality)` lists the rows every table shows."""

from drivewm.baselines.camera import CopyLastCamera, EgoWarpCamera
from drivewm.baselines.forecasters import (
    ConstantVelocityAgents,
    ConstantVelocityLidar,
    CopyLast,
    CopyLastLidar,
    EgoWarpCopyLast,
    EgoWarpLidar,
    OracleFill,
    baselines,
    extrapolate_agents,
    future_poses,
)

__all__ = [
    "ConstantVelocityAgents",
    "ConstantVelocityLidar",
    "CopyLast",
    "CopyLastCamera",
    "CopyLastLidar",
    "EgoWarpCamera",
    "EgoWarpCopyLast",
    "EgoWarpLidar",
    "OracleFill",
    "baselines",
    "extrapolate_agents",
    "future_poses",
]
