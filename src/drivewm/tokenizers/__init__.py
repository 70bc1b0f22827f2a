"""Tokenizers: quantizers (VQ, FSQ), the occupancy and LiDAR tokenizers, action and pose tokenizers.

Importing this package registers the tokenizer models ("occ_vqvae", "occ_vqvae_published", "lidar_vqvae").
"""

from drivewm.tokenizers.actions import ActionTokenizer, ActionTokenizerConfig, PoseTokenizer, PoseTokenizerConfig
from drivewm.tokenizers.fsq import FSQ
from drivewm.tokenizers.lidar import LidarField, LidarTokenizer, LidarTokenizerConfig
from drivewm.tokenizers.occ import OccTokenizer, OccTokenizerConfig
from drivewm.tokenizers.occworld_vae import OccWorldVAE, OccWorldVAEConfig
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer
from drivewm.tokenizers.vq import VectorQuantizer

__all__ = [
    "ActionTokenizer",
    "ActionTokenizerConfig",
    "PoseTokenizer",
    "PoseTokenizerConfig",
    "FSQ",
    "LidarField",
    "LidarTokenizer",
    "LidarTokenizerConfig",
    "OccTokenizer",
    "OccTokenizerConfig",
    "OccWorldVAE",
    "OccWorldVAEConfig",
    "QuantizeOutput",
    "QuantizerConfig",
    "VectorQuantizer",
    "build_quantizer",
]
