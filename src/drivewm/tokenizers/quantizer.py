"""The quantizer config shared by every tokenizer, its output type, and ``build_quantizer``.

Two methods behind one interface (``forward(x[..., D]) -> QuantizeOutput``,
``indices_to_codes(indices) -> [..., D]``, ``codebook_size``):

- ``vq``: vector quantization as in VQ-VAE (van den Oord et al., arXiv 1711.00937), see ``vq.py``;
- ``fsq``: finite scalar quantization (Mentzer et al., arXiv 2309.15505), see ``fsq.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn


@dataclass(kw_only=True)
class QuantizerConfig:
    kind: str = "vq"
    """'vq' (learned codebook, VQ-VAE) or 'fsq' (finite scalar quantization, no codebook)."""
    codebook_size: int = 512
    """Number of codes of the VQ codebook (ignored by FSQ, whose size is the product of its levels)."""
    beta: float = 0.25
    """Weight of the commitment loss ||z_e - sg[e]||^2 (VQ-VAE's beta)."""
    ema: bool = True
    """Learn the codebook by exponential moving averages of assigned encoder outputs (else by the codebook loss)."""
    decay: float = 0.99
    """EMA decay of the cluster sizes and sums (and of the usage counts that find dead codes)."""
    eps: float = 1e-5
    """Laplace smoothing of the EMA cluster sizes."""
    kmeans_init: bool = True
    """Initialise the codebook by k-means on the first training batch."""
    kmeans_iters: int = 10
    """Lloyd iterations of the k-means initialisation."""
    dead_threshold: float = 1.0
    """A code whose EMA usage count (vectors per step) falls below this is restarted from recent encoder outputs (0 disables)."""
    recent_size: int = 4096
    """Encoder outputs kept in a ring buffer to restart dead codes from."""
    l2_normalize: bool = False
    """Compare l2-normalised vectors and codes (cosine similarity codebook)."""
    rotation_trick: bool = False
    """Pass the decoder's gradient to the encoder through the rotation and rescaling that maps each input onto
    its code (Fifty et al., arXiv 2410.06424) instead of the straight-through copy (VQ only)."""
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    """Levels per channel of FSQ ([8, 5, 5, 5] gives 1000 codes)."""


@dataclass
class QuantizeOutput:
    quantized: torch.Tensor
    """[..., D] quantized vectors with straight-through gradients to the input."""
    indices: torch.Tensor
    """[...] long code indices."""
    loss: torch.Tensor
    """Scalar quantizer loss (commitment [+ codebook]); zero for FSQ."""
    logs: dict[str, torch.Tensor]
    """Scalar diagnostics: perplexity, used (fraction of codes used in the batch)."""


def code_usage_logs(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Perplexity exp(H(p)) and fraction of codes used, of the code histogram of one batch."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"perplexity": entropy.exp(), "used": (counts > 0).float().mean()}


def build_quantizer(cfg: QuantizerConfig, dim: int) -> nn.Module:
    """A quantizer of ``dim``-channel vectors from its config."""
    from drivewm.tokenizers.fsq import FSQ
    from drivewm.tokenizers.vq import VectorQuantizer

    if cfg.kind == "vq":
        return VectorQuantizer(cfg, dim)
    if cfg.kind == "fsq":
        return FSQ(cfg, dim)
    raise ValueError(f"quantizer.kind must be 'vq' or 'fsq', got {cfg.kind!r}")
