"""Rotary position embeddings (RoPE, Su et al., arXiv 2104.09864), half-split (GPT-NeoX) layout.

Positions are explicit integers, so a caller chooses what a position is: the token index (default of
the backbones), the frame index shared by all tokens of a frame (frame-wise 1D RoPE of DrivingGPT), or
several axes whose tables are concatenated along the last dimension (3D RoPE of V-JEPA 2).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions 0..max_len-1 of a head size `head_dim` (even).

    With `axes` > 1 every head is split into `axes` equal even parts, each rotated by its own position
    axis with its own frequencies (V-JEPA 2's 3D RoPE over time, height and width); a remainder that
    does not split evenly is left unrotated. Positions are then [L, axes] or [B, L, axes].
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, max_len: int = 4096, axes: int = 1) -> None:
        super().__init__()
        if head_dim % 2 or axes < 1 or head_dim < 2 * axes:
            raise ValueError(f"RoPE head_dim {head_dim} must be even and hold {axes} axes of >= 2 dims each")
        self.head_dim = head_dim
        self.max_len = max_len
        self.axes = axes
        part = head_dim if axes == 1 else 2 * (head_dim // (2 * axes))
        self.unrotated = (head_dim - axes * part) // 2  # frequency slots with angle 0
        inv_freq = base ** (-torch.arange(0, part, 2, dtype=torch.float64) / part)  # [hd/(2 axes)]
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [max_len, hd/2]
        # float64 angles, then float32 tables: large positions keep their precision.
        self.register_buffer("cos_table", angles.cos().float(), persistent=False)
        self.register_buffer("sin_table", angles.sin().float(), persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions: LongTensor [L] or [B, L] (with axes > 1: [L, axes] or [B, L, axes]) -> (cos, sin),
        each [L, hd/2] or [B, L, hd/2]."""
        if positions.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"RoPE positions must be an integer tensor, got {positions.dtype}")
        if self.axes > 1:
            if positions.dim() not in (2, 3) or positions.shape[-1] != self.axes:
                raise ValueError(f"RoPE positions must be [L, {self.axes}] or [B, L, {self.axes}], got shape {tuple(positions.shape)}")
            cs = [self._tables(positions[..., a]) for a in range(self.axes)]
            cos, sin = torch.cat([c for c, _ in cs], -1), torch.cat([s for _, s in cs], -1)
            if self.unrotated:
                pad = cos.new_zeros(*cos.shape[:-1], self.unrotated)
                cos, sin = torch.cat([cos, pad + 1.0], -1), torch.cat([sin, pad], -1)
            return cos, sin
        if positions.dim() not in (1, 2):
            raise ValueError(f"RoPE positions must be [L] or [B, L], got shape {tuple(positions.shape)}")
        return self._tables(positions)

    def _tables(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        # The range check reads the positions on the host: under torch.compile that would break the graph
        # (and sync a GPU each forward), so a compiled model relies on its eager runs having checked them.
        if not torch.compiler.is_compiling() and positions.numel() and (
            int(positions.min()) < 0 or int(positions.max()) >= self.max_len
        ):
            raise ValueError(
                f"RoPE positions must lie in [0, max_len={self.max_len}), got "
                f"[{int(positions.min())}, {int(positions.max())}]; raise BackboneConfig.max_len"
            )
        positions = positions.to(self.cos_table.device).long()
        return self.cos_table[positions], self.sin_table[positions]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, H, L, hd] by angles given as cos/sin [L, hd/2] or [B, L, hd/2]; returns x's dtype.

    Dimension i is paired with i + hd/2 (half-split layout).
    """
    if cos.dim() == 3:  # [B, L, hd/2] -> [B, 1, L, hd/2], shared by every head
        cos, sin = cos[:, None], sin[:, None]
    half = x.shape[-1] // 2
    if cos.shape[-1] != half:
        raise ValueError(f"RoPE tables have {cos.shape[-1]} frequencies, head size {x.shape[-1]} needs {half}")
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)
