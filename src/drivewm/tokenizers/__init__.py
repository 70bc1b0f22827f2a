"""Tokenizers: quantizers (VQ, FSQ), the occupancy, LiDAR and camera tokenizers, action and pose tokenizers.

Importing this package registers the tokenizer models ("occ_vqvae", "occ_vqvae_published", "lidar_vqvae",
"camera_vqgan", "camera_temporal_vq", "camera_vqvae2", "camera_kl_autoencoder").
"""

from drivewm.tokenizers.actions import ActionTokenizer, ActionTokenizerConfig, PoseTokenizer, PoseTokenizerConfig
from drivewm.tokenizers.fsq import FSQ
from drivewm.tokenizers.kl_autoencoder import KLAutoencoder, KLAutoencoderConfig
from drivewm.tokenizers.lidar import LidarField, LidarTokenizer, LidarTokenizerConfig
from drivewm.tokenizers.occ import OccTokenizer, OccTokenizerConfig
from drivewm.tokenizers.occworld_vae import OccWorldVAE, OccWorldVAEConfig
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer
from drivewm.tokenizers.temporal_vq import TemporalVQ, TemporalVQConfig
from drivewm.tokenizers.vq import VectorQuantizer
from drivewm.tokenizers.vqgan import VQGAN, VQGANConfig
from drivewm.tokenizers.vqvae2 import VQVAE2, VQVAE2Config

__all__ = [
    "ActionTokenizer",
    "ActionTokenizerConfig",
    "PoseTokenizer",
    "PoseTokenizerConfig",
    "FSQ",
    "KLAutoencoder",
    "KLAutoencoderConfig",
    "LidarField",
    "LidarTokenizer",
    "LidarTokenizerConfig",
    "OccTokenizer",
    "OccTokenizerConfig",
    "OccWorldVAE",
    "OccWorldVAEConfig",
    "QuantizeOutput",
    "QuantizerConfig",
    "TemporalVQ",
    "TemporalVQConfig",
    "VQGAN",
    "VQGANConfig",
    "VQVAE2",
    "VQVAE2Config",
    "VectorQuantizer",
    "build_quantizer",
]
