"""Temporal-aware VQ tokenizer of DrivingWorld (Hu et al., "DrivingWorld: Constructing World Model for
Autonomous Driving via Video GPT", arXiv 2412.19505), after the official code YvanYin/DrivingWorld at
commit faceb9861582c2ecad0d82c1f97699a1a314cb62, ``modules/tokenizers/vq_model.py`` (VideoVQModel):

    per-frame conv encoder -> space-time block -> quant_conv -> quantizer
    -> post_quant_conv -> space-time block -> per-frame conv decoder

A space-time block (``spatial_temporal_blocks``) is a transformer block over time at each latent
position, causal (frame t attends to frames <= t), then one over the h*w positions of each frame;
both use pre-RMSNorm, rotary position embeddings (1D: frame index, and flattened position) and a
SwiGLU feed-forward, as in the official code. Causality in time means a frame's codes depend on it
and on earlier frames only, so frames tokenize online; the decoder's block is causal too.

The loss is the VQ-GAN's (vqgan.py) on every frame of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.errors import DrivewmError
from drivewm.registry import register_model
from drivewm.tokenizers.camera import check_heads
from drivewm.tokenizers.vqgan import VQGAN, VQGANConfig


@dataclass(kw_only=True)
class TemporalVQConfig(VQGANConfig):
    name: str = "camera_temporal_vq"
    """Registered model name."""
    heads: int = 4
    """Attention heads of the space-time blocks (they work at z_channels width; DrivingWorld: 8 at 256)."""
    blocks: int = 1
    """Space-time blocks before and after quantization (DrivingWorld: 1 each)."""
    rope_theta: float = 1000.0
    """Base of the rotary frequencies (DrivingWorld: 1000)."""


def rope_angles(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [length, head_dim / 2] of positions 0..length-1 (precompute_freqs_cis)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [N, heads, L, head_dim] by the position angles."""
    xr = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xr[..., 0], xr[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1)
    return out.flatten(-2).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class TransformerBlock(nn.Module):
    """Pre-RMSNorm attention with RoPE (optionally causal) and a SwiGLU feed-forward on [N, L, C]."""

    def __init__(self, dim: int, heads: int, theta: float):
        super().__init__()
        self.heads, self.theta = heads, theta
        self.attention_norm, self.ffn_norm = RMSNorm(dim), RMSNorm(dim)
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        hidden = -(-int(2 * 4 * dim / 3) // 32) * 32  # LLaMA's 2/3 of 4 * dim, rounded up to a multiple of 32
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = self.wqkv(self.attention_norm(x)).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        cos, sin = rope_angles(length, c // self.heads, self.theta, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # [N, heads, L, hd]
        h = x + self.wo(o.transpose(1, 2).reshape(n, length, c))
        g = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(g)) * self.w3(g))


class SpaceTimeBlock(nn.Module):
    """Causal attention over time at each position, then attention over positions within each frame."""

    def __init__(self, dim: int, heads: int, theta: float):
        super().__init__()
        self.time_block = TransformerBlock(dim, heads, theta)
        self.space_block = TransformerBlock(dim, heads, theta)

    def forward(self, h: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """[B*T, C, h, w] -> same shape."""
        _, c, hh, ww = h.shape
        x = h.reshape(b, t, c, hh * ww).permute(0, 3, 1, 2).reshape(b * hh * ww, t, c)  # [(B hw), T, C]
        x = self.time_block(x, causal=True)
        x = x.reshape(b, hh * ww, t, c).transpose(1, 2).reshape(b * t, hh * ww, c)  # [(B T), hw, C]
        x = self.space_block(x, causal=False)
        return x.transpose(1, 2).reshape(b * t, c, hh, ww)


class TemporalVQ(VQGAN):
    """Clips [B, T, ...] <-> tokens [B, T, h, w]; frame t's tokens depend on frames <= t only."""

    def __init__(self, cfg: TemporalVQConfig):
        check_heads(cfg.z_channels, cfg.heads, "temporal VQ z_channels / heads")
        super().__init__(cfg)
        self.encoder_blocks = nn.ModuleList(SpaceTimeBlock(cfg.z_channels, cfg.heads, cfg.rope_theta) for _ in range(cfg.blocks))
        self.decoder_blocks = nn.ModuleList(SpaceTimeBlock(cfg.z_channels, cfg.heads, cfg.rope_theta) for _ in range(cfg.blocks))
        self._build_weight_average(cfg.weight_ema)  # again: the average must cover the space-time blocks too

    @staticmethod
    def _clip_shape(lead: tuple[int, ...]) -> tuple[int, int]:
        if len(lead) != 2:
            raise DrivewmError(f"the temporal VQ works on clips [B, T, ...]; got leading dims {lead}")
        return lead

    def mix_encoded(self, h: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        b, t = self._clip_shape(lead)
        for block in self.encoder_blocks:
            h = block(h, b, t)
        return h

    def mix_quantized(self, h: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        b, t = self._clip_shape(lead)
        for block in self.decoder_blocks:
            h = block(h, b, t)
        return h


@register_model("camera_temporal_vq", TemporalVQConfig, kind="tokenizer")
def build_temporal_vq(cfg: TemporalVQConfig) -> TemporalVQ:
    return TemporalVQ(cfg)
