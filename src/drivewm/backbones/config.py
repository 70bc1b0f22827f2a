"""Typed config of a temporal sequence backbone (attention or selective SSM)."""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("attention", "ssm")
NORMS = ("rms", "layer")


@dataclass(kw_only=True)
class BackboneConfig:
    kind: str = "attention"
    """Sequence mixer: 'attention' (pre-norm transformer, RoPE, KV cache) or 'ssm' (Mamba-style selective SSM)."""
    dim: int = 256
    """Model width D: features per token, in and out."""
    depth: int = 4
    """Number of residual blocks."""
    heads: int = 4
    """Attention heads (attention only; dim must divide into heads with an even head size for RoPE)."""
    mlp_ratio: float = 4.0
    """Hidden width of the transformer MLP as a multiple of dim (attention only)."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches during training."""
    rope_base: float = 10000.0
    """Base of the rotary position frequencies (attention only)."""
    max_len: int = 4096
    """Largest position index + 1 the rotary tables cover (attention only; positions beyond it are an error)."""
    rope_axes: int = 1
    """Position axes of RoPE (attention only): 1 = one index per token; 3 = (t, row, col) per token, each axis
    rotating its own third of every head, a remainder unrotated (V-JEPA 2's 3D RoPE); positions are then [L, 3]."""
    norm: str = "rms"
    """Normalisation of every pre-norm block and of the output: 'rms' (RMSNorm) or 'layer' (LayerNorm)."""
    d_state: int = 16
    """SSM state size N per channel (ssm only)."""
    d_conv: int = 4
    """Kernel size of the short causal depthwise convolution before the scan (ssm only)."""
    expand: int = 2
    """Inner width of the SSM block as a multiple of dim (ssm only)."""
    dt_rank: int | str = "auto"
    """Rank of the input-dependent step-size projection; 'auto' = ceil(dim / 16) as in Mamba (ssm only)."""
    chunk: int = 64
    """Longest chunk of the parallel scan (capped at ceil(sqrt(L))): chunks advance together, the state is carried across chunk ends (ssm only)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"backbone kind {self.kind!r} not in {KINDS}")
        if self.norm not in NORMS:
            raise ValueError(f"backbone norm {self.norm!r} not in {NORMS}")
        for field in ("dim", "depth", "heads", "max_len", "d_state", "d_conv", "expand", "chunk"):
            if getattr(self, field) < 1:
                raise ValueError(f"backbone {field} must be >= 1, got {getattr(self, field)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"backbone dropout must be in [0, 1), got {self.dropout}")
        if self.kind == "attention":
            if self.dim % self.heads or (self.dim // self.heads) % 2:
                raise ValueError(
                    f"backbone dim {self.dim} must split into {self.heads} heads of even size (RoPE rotates pairs)"
                )
            if self.rope_axes < 1 or self.dim // self.heads < 2 * self.rope_axes:
                raise ValueError(
                    f"backbone head size {self.dim // self.heads} is too small for rope_axes={self.rope_axes} "
                    f"(each axis rotates at least one pair)"
                )
        if self.dt_rank != "auto" and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"backbone dt_rank must be 'auto' or a positive int, got {self.dt_rank!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def d_inner(self) -> int:
        """Inner width E of the SSM block."""
        return self.expand * self.dim

    @property
    def dt_rank_value(self) -> int:
        """dt_rank with 'auto' resolved to ceil(dim / 16)."""
        return math.ceil(self.dim / 16) if self.dt_rank == "auto" else int(self.dt_rank)
