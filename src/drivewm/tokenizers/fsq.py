"""Finite scalar quantization (Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple",
arXiv 2309.15505).

Each of d = len(levels) channels is bounded to [-(L-1)/2, (L-1)/2] by a shifted tanh and rounded
to one of L integers (straight-through), then divided by L // 2 so codes lie in [-1, 1]. The
implicit codebook is the product grid (prod L codes); there is no codebook to collapse and no
auxiliary loss. When the input width differs from d, linear maps project in and out.

The bound follows the paper's reference code (Appendix A.1): shift = tan(offset / half_l), which is defined for
every level; atanh(offset / half_l) is not for L = 2 (0.5 / 0.4995 > 1). Quantization runs in fp32 even under
bf16 autocast: bf16 cannot hold the rounding boundaries of the larger levels, and its indices would drift.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, code_usage_logs


class FSQ(nn.Module):
    """``forward(x[..., dim]) -> QuantizeOutput`` with ``indices`` in [0, prod(levels))."""

    def __init__(self, cfg: QuantizerConfig, dim: int):
        super().__init__()
        levels = list(cfg.fsq_levels)
        if not levels or min(levels) < 2:
            raise ValueError(f"quantizer.fsq_levels must be a non-empty list of ints >= 2, got {levels}")
        self.dim = dim
        self.levels_list = levels
        self.codebook_size = math.prod(levels)
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        self.register_buffer("basis", basis, persistent=False)
        d = len(levels)
        self.project_in = nn.Linear(dim, d) if dim != d else nn.Identity()
        self.project_out = nn.Linear(d, dim) if dim != d else nn.Identity()

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z [..., d] into (-(L-1)/2, (L-1)/2), shifted by 1/2 for even L so rounding hits L integers."""
        eps = 1e-3
        lv = self.levels.to(z.dtype)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.tan(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., d] grid codes in [-1, 1], straight-through rounding."""
        bounded = self._bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        half_width = (self.levels // 2).to(z.dtype)
        return rounded / half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """[..., d] grid codes -> [...] long indices (mixed-radix number of the per-channel levels)."""
        half_width = self.levels // 2
        digits = torch.round(codes * half_width + half_width).long()
        return (digits * self.basis).sum(-1)

    def indices_to_grid(self, indices: torch.Tensor) -> torch.Tensor:
        """[...] long -> [..., d] grid codes in [-1, 1]."""
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"FSQ indices must be in [0, {self.codebook_size}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        digits = (indices[..., None] // self.basis) % self.levels
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """[...] long -> [..., dim] vectors as the decoder sees them."""
        return self.project_out(self.indices_to_grid(indices))

    def forward(self, x: torch.Tensor) -> QuantizeOutput:
        if x.shape[-1] != self.dim:
            raise ValueError(f"FSQ expects last dim {self.dim}, got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):  # fp32 under bf16 autocast
            z = self.project_in(x.float())  # [..., d]
            codes = self.quantize(z)
            idx = self.codes_to_indices(codes.detach())
            out = self.project_out(codes).to(x.dtype)  # [..., dim]
        logs = code_usage_logs(idx, self.codebook_size)
        return QuantizeOutput(out, idx, x.new_zeros(()), logs)
