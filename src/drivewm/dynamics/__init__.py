"""Token world models on one interface: GPT (GAIA-1 / DrivingGPT), OccWorld spatio-temporal, Copilot4D MaskGIT.

Each is registered (kind "world") with `loss(batch)` and `rollout(context, actions, horizon)`, over the
tokens of whichever frozen tokenizer it holds (occupancy or LiDAR: `TokenWorldModel.modality`);
`forecast.forecast_occupancy` rolls any occupancy model out and decodes the tokens to occupancy,
`lidar_forecast.forecast_lidar` renders a LiDAR model's tokens along the true future rays.
`voxel_unet` is the learned reference without tokens: a BEV U-Net from the ego-warped observed frames.
`diamond` / `diamond_bev` are DIAMOND's continuous EDM denoiser of the next frame, on camera frames / occupancy.
"""

from drivewm.dynamics.diamond import DiamondBEV, DiamondBEVConfig, DiamondCamera, DiamondConfig
from drivewm.dynamics.base import TokenWorldModel, WorldModelConfig
from drivewm.dynamics.epona import EponaConfig, EponaWorldModel
from drivewm.dynamics.gpt import GPTWorldConfig, GPTWorldModel
from drivewm.dynamics.maskgit import MaskGITWorldConfig, MaskGITWorldModel, guided_logits
from drivewm.dynamics.sampling import SamplingConfig, sample_logits
from drivewm.dynamics.spatiotemporal import SpatioTemporalWorldConfig, SpatioTemporalWorldModel
from drivewm.dynamics.voxel_unet import VoxelUNetConfig, VoxelUNetForecaster

__all__ = [
    "DiamondBEV",
    "DiamondBEVConfig",
    "DiamondCamera",
    "DiamondConfig",
    "EponaConfig",
    "EponaWorldModel",
    "GPTWorldConfig",
    "GPTWorldModel",
    "MaskGITWorldConfig",
    "MaskGITWorldModel",
    "SamplingConfig",
    "SpatioTemporalWorldConfig",
    "SpatioTemporalWorldModel",
    "TokenWorldModel",
    "VoxelUNetConfig",
    "VoxelUNetForecaster",
    "WorldModelConfig",
    "guided_logits",
    "sample_logits",
]
