"""Metrics with the published protocols, named as such: occupancy (OccWorld, Occ3D), point clouds
(4D-Occ), planning (ST-P3/VAD and UniAD conventions), images/video, representations, tokenizers.

Every metric streams (``update(...)`` per batch, ``compute()`` once) and all-reduces its additive
state only when a torch.distributed process group is initialised.
"""

from drivewm.metrics.image import (
    ExportedFeatures,
    FeatureExtractor,
    FrechetDistance,
    ImageQualityMetric,
    RandomConvFeatures,
    frechet_distance,
    gaussian_from_sums,
)
from drivewm.metrics.occupancy import OccupancyForecastMetric, confusion_counts
from drivewm.metrics.planning import PlanningMetric
from drivewm.metrics.pointcloud import ROI_4DOCC, PointCloudForecastMetric, chamfer_distance, clouds_from_padded, crop, nearest_sq_dist
from drivewm.metrics.representation import EmbeddingStats, linear_probe, rankme, token_miou
from drivewm.metrics.tokens import CodebookMetric
from drivewm.metrics.video import (
    FID_INCEPTION_299,
    FVD_I3D400_16F_224,
    FrechetProtocol,
    ProtocolFrechetDistance,
    frechet_bootstrap,
    frechet_of_features,
    frechet_sample_curve,
    load_protocol_extractor,
)

__all__ = [
    "FID_INCEPTION_299",
    "FVD_I3D400_16F_224",
    "ROI_4DOCC",
    "CodebookMetric",
    "EmbeddingStats",
    "ExportedFeatures",
    "FeatureExtractor",
    "FrechetDistance",
    "FrechetProtocol",
    "ImageQualityMetric",
    "OccupancyForecastMetric",
    "PlanningMetric",
    "PointCloudForecastMetric",
    "ProtocolFrechetDistance",
    "RandomConvFeatures",
    "chamfer_distance",
    "clouds_from_padded",
    "confusion_counts",
    "crop",
    "frechet_bootstrap",
    "frechet_distance",
    "frechet_of_features",
    "frechet_sample_curve",
    "gaussian_from_sums",
    "load_protocol_extractor",
    "linear_probe",
    "nearest_sq_dist",
    "rankme",
    "token_miou",
]
