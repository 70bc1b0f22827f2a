"""The 2D convolutional encoder and decoder of BEV tokenizers, after taming-transformers' VQGAN
(Esser et al., arXiv 2012.09841) as OccWorld (arXiv 2311.16038) uses it: per level ``num_res_blocks``
residual blocks (GroupNorm, SiLU, 3x3 conv), a stride-2 conv between levels, self-attention at the
lowest resolution, and a mirrored decoder with nearest upsampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.data.spec import GridSpec, resolve_grid


@dataclass(kw_only=True)
class BevCnnConfig:
    channels: int = 64
    """Width of the first level; level i has channels * channel_mult[i]."""
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Width multiplier per level; len - 1 stride-2 downsamplings (3 levels: factor 4)."""
    num_res_blocks: int = 2
    """Residual blocks per level (the decoder has one more, as in taming)."""
    attention: bool = True
    """Self-attention blocks at the lowest resolution (encoder and decoder middle)."""

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


def token_grid(grid_value: Any, cfg: BevCnnConfig) -> tuple[GridSpec, tuple[int, int]]:
    """The grid of a BEV tokenizer (a preset name or a grid mapping: `resolve_grid`) and its token grid
    (h, w) = (X / f, Y / f); X and Y must divide by f."""
    grid = resolve_grid(grid_value)
    x, y, _ = grid.shape
    f = cfg.downsample
    if x % f or y % f:
        raise ValueError(f"model.grid {grid.shape}: X and Y must be divisible by the downsampling factor {f} "
                         f"(model.cnn.channel_mult has {len(cfg.channel_mult)} levels)")
    return grid, (x // f, y // f)


SMALLEST_OBJECT = 4.5
"""Length (m) of the smallest object a forecast must keep: a car (nuScenes' mean car is 4.6 m long)."""


def largest_downsampling(voxel_size: float, smallest_object: float = SMALLEST_OBJECT) -> int:
    """The downsampling rule of the tokenizer presets: the largest power of two f whose token cell (f voxels,
    f * voxel_size m) is no longer than the smallest object, so each such object still covers a token cell of
    its own (Occ3D's 0.4 m: 8, OccWorld takes 4; 0.8 m: 4; 1.6 m: 2; 2 m: 2; 4 m and up: 1)."""
    f = 1
    while 2 * f * voxel_size <= smallest_object:
        f *= 2
    return f


class BevTokenizer(nn.Module):
    """What every BEV tokenizer shares: its grid, its token grid and the ``vocab_size`` of its quantizer."""

    quantizer: nn.Module

    def __init__(self, grid_value: Any, cnn: BevCnnConfig):
        super().__init__()
        self.grid, self._token_shape = token_grid(grid_value, cnn)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def token_shape(self) -> tuple[int, int]:
        return self._token_shape


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, ch), ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions of a feature map."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # 3 x [B, HW, C]
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # [B, HW, C]
        return x + self.proj(o.transpose(1, 2).reshape(b, c, h, w))


def _mid(ch: int, attention: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(ch, ch)]
    if attention:
        layers += [AttnBlock(ch), ResBlock(ch, ch)]
    return nn.Sequential(*layers)


class Encoder2d(nn.Module):
    """[B, in_ch, H, W] -> [B, out_ch, H / f, W / f] with f = cfg.downsample."""

    def __init__(self, cfg: BevCnnConfig, in_ch: int, out_ch: int):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        layers: list[nn.Module] = [nn.Conv2d(in_ch, widths[0], 3, padding=1)]
        ch = widths[0]
        for i, w in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(ch, w))
                ch = w
            if i < len(widths) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        layers += [_mid(ch, cfg.attention), _norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder2d(nn.Module):
    """[B, in_ch, h, w] -> [B, out_ch, h * f, w * f], the encoder's mirror."""

    def __init__(self, cfg: BevCnnConfig, in_ch: int, out_ch: int):
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult][::-1]
        ch = widths[0]
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 3, padding=1), _mid(ch, cfg.attention)]
        for i, w in enumerate(widths):
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResBlock(ch, w))
                ch = w
            if i < len(widths) - 1:
                layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        layers += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
