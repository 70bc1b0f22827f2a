"""DIAMOND's EDM machinery: the preconditioned denoiser's formulas, its U-Net and its sampler.

Ported from the official code, eloialonso/diamond at commit 5bcd1599755b4f2fae8e5e079e02f0728e174965
(branch main): ``src/models/blocks.py`` (GroupNorm, AdaGroupNorm, SelfAttention2d, FourierFeatures,
Downsample, Upsample, ResBlock(s), UNet), ``src/models/diffusion/denoiser.py`` (``compute_conditioners``,
``apply_noise``, ``setup_training``'s sigma distribution, ``wrap_model_output``'s 8-bit quantization) and
``src/models/diffusion/diffusion_sampler.py`` (``build_sigmas``, the Euler / Heun sampler with churn).
Default values are those of ``config/agent/default.yaml`` and ``config/trainer.yaml`` there.

The preconditioning is EDM's (Karras et al. 2022, arXiv 2206.00364, Table 1) with DIAMOND's offset-noise
correction: the network sees sigma' = sqrt(sigma^2 + sigma_offset^2), then

    c_in = 1 / sqrt(sigma'^2 + sigma_data^2)      c_skip = sigma_data^2 / (sigma'^2 + sigma_data^2)
    c_out = sigma' * sigma_data / sqrt(sigma'^2 + sigma_data^2)  (= sigma' * sqrt(c_skip))
    c_noise = ln(sigma') / 4

and D(x; sigma) = c_skip x + c_out F(c_in x; c_noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

GN_GROUP_SIZE = 32
GN_EPS = 1e-5
ATTN_HEAD_DIM = 8


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0)


class GroupNorm(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(max(1, in_channels // GN_GROUP_SIZE), in_channels, eps=GN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class AdaGroupNorm(nn.Module):
    """Group norm without its own affine, scaled and shifted by a linear map of the conditioning vector
    (noise level + actions): x * (1 + scale) + shift."""

    def __init__(self, in_channels: int, cond_channels: int) -> None:
        super().__init__()
        self.num_groups = max(1, in_channels // GN_GROUP_SIZE)
        self.linear = nn.Linear(cond_channels, in_channels * 2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(cond).chunk(2, dim=1)  # [B, C] each
        b, c = x.shape[:2]
        if x.is_contiguous():
            # One group-norm kernel: the batch folded into the channels, each image's groups its own, and its
            # scale and shift that kernel's per-channel affine (broadcasting a [B, C, 1, 1] operand over a
            # large image runs several times slower on a CPU).
            y = F.group_norm(x.reshape(1, b * c, *x.shape[2:]), b * self.num_groups, (1 + scale).reshape(-1),
                             shift.reshape(-1), GN_EPS)
            return y.view_as(x)
        y = F.group_norm(x, self.num_groups, eps=GN_EPS)  # channels-last
        scale, shift = (1 + scale)[:, :, None, None], shift.contiguous()[:, :, None, None]
        return torch.addcmul(shift, y, scale) if torch.is_grad_enabled() else y.mul_(scale).add_(shift)


class SelfAttention2d(nn.Module):
    def __init__(self, in_channels: int, head_dim: int = ATTN_HEAD_DIM) -> None:
        super().__init__()
        self.n_head = max(1, in_channels // head_dim)
        if in_channels % self.n_head:
            raise ValueError(f"attention over {in_channels} channels needs a multiple of {self.n_head} heads")
        self.norm = GroupNorm(in_channels)
        self.qkv_proj = _conv1x1(in_channels, in_channels * 3)
        self.out_proj = _conv1x1(in_channels, in_channels)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = self.norm(x)  # the residual is taken after the norm, as the official block does
        qkv = self.qkv_proj(x).view(n, self.n_head * 3, c // self.n_head, h * w).transpose(2, 3)
        q, k, v = qkv.chunk(3, dim=1)  # [N, heads, HW, head_dim] each
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out_proj(y.transpose(2, 3).reshape(n, c, h, w))


class FourierFeatures(nn.Module):
    """cos / sin of 2 pi c_noise w, w a fixed N(0, 1) buffer of cond_channels / 2 frequencies."""

    def __init__(self, cond_channels: int) -> None:
        super().__init__()
        if cond_channels % 2:
            raise ValueError(f"cond_channels must be even, got {cond_channels}")
        self.register_buffer("weight", torch.randn(1, cond_channels // 2))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * c_noise[:, None] @ self.weight  # [B, cond / 2]
        return torch.cat([f.cos(), f.sin()], dim=-1)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        nn.init.orthogonal_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Two AdaGroupNorm-SiLU-conv layers with a residual (1x1 projection when widths differ), optional
    self-attention; the second conv starts at zero so every block starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, attn: bool) -> None:
        super().__init__()
        self.proj = _conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.norm1 = AdaGroupNorm(in_channels, cond_channels)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.norm2 = AdaGroupNorm(out_channels, cond_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.attn = SelfAttention2d(out_channels) if attn else nn.Identity()
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        r = self.proj(x)
        inplace = not torch.is_grad_enabled()  # sampling: the norms and conv2 return fresh tensors
        x = self.conv1(F.silu(self.norm1(x, cond), inplace=inplace))
        x = self.conv2(F.silu(self.norm2(x, cond), inplace=inplace))
        return self.attn(x.add_(r) if inplace else x + r)


class ResBlocks(nn.Module):
    def __init__(self, ins: list[int], outs: list[int], cond_channels: int, attn: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResBlock(i, o, cond_channels, attn) for i, o in zip(ins, outs))

    def forward(self, x: torch.Tensor, cond: torch.Tensor,
                to_cat: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outputs = []
        for i, block in enumerate(self.resblocks):
            x = block(x if to_cat is None else torch.cat((x, to_cat[i]), dim=1), cond)
            outputs.append(x)
        return x, outputs


class UNet(nn.Module):
    """DIAMOND's U-Net: per level `depth` ResBlocks down and depth + 1 up (each taking one skip), strided
    convs down, nearest + conv up, two attention ResBlocks in the middle (always, as the official code;
    `attn_depths` switches attention on the levels). Inputs are padded to a multiple of 2^(levels - 1)."""

    def __init__(self, cond_channels: int, depths: list[int], channels: list[int], attn_depths: list[bool]) -> None:
        super().__init__()
        if not len(depths) == len(channels) == len(attn_depths):
            raise ValueError(f"depths, channels and attn_depths must have one entry per level: "
                             f"{depths}, {channels}, {attn_depths}")
        self._num_down = len(channels) - 1
        d_blocks, u_blocks = [], []
        for i, n in enumerate(depths):
            c1, c2 = channels[max(0, i - 1)], channels[i]
            d_blocks.append(ResBlocks([c1] + [c2] * (n - 1), [c2] * n, cond_channels, bool(attn_depths[i])))
            u_blocks.append(ResBlocks([2 * c2] * n + [c1 + c2], [c2] * n + [c1], cond_channels, bool(attn_depths[i])))
        self.d_blocks = nn.ModuleList(d_blocks)
        self.u_blocks = nn.ModuleList(reversed(u_blocks))
        self.mid_blocks = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_channels, attn=True)
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]])
        self.upsamples = nn.ModuleList([nn.Identity()] + [Upsample(c) for c in reversed(channels[:-1])])

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self._num_down
        pad = (0, math.ceil(w / m) * m - w, 0, math.ceil(h / m) * m - h)
        x = F.pad(x, pad) if any(pad) else x
        d_outputs = []
        for block, down in zip(self.d_blocks, self.downsamples):
            x_down = down(x)
            x, outs = block(x_down, cond)
            d_outputs.append((x_down, *outs))
        x, _ = self.mid_blocks(x, cond)
        for block, up, skip in zip(self.u_blocks, self.upsamples, reversed(d_outputs)):
            x, _ = block(up(x), cond, skip[::-1])
        return x[..., :h, :w]


# --- EDM preconditioning, training noise and sampling (denoiser.py, diffusion_sampler.py) ---


@dataclass(frozen=True)
class Conditioners:
    c_in: torch.Tensor
    c_out: torch.Tensor
    c_skip: torch.Tensor
    c_noise: torch.Tensor


def compute_conditioners(sigma: torch.Tensor, sigma_data: float, sigma_offset_noise: float) -> Conditioners:
    """EDM's preconditioning of noise levels sigma [B] (module docstring); c_in, c_out, c_skip come back as
    [B, 1, 1, 1], c_noise as [B]."""
    sigma = (sigma**2 + sigma_offset_noise**2).sqrt()
    c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * c_skip.sqrt()
    c_noise = sigma.log() / 4
    return Conditioners(*(c[:, None, None, None] for c in (c_in, c_out, c_skip)), c_noise)


def sample_training_sigma(n: int, *, loc: float, scale: float, sigma_min: float, sigma_max: float,
                          device: torch.device | None = None) -> torch.Tensor:
    """Training noise levels [n]: log-normal exp(N(loc, scale^2)), clipped to [sigma_min, sigma_max]."""
    return (torch.randn(n, device=device) * scale + loc).exp().clip(sigma_min, sigma_max)


def apply_noise(x: torch.Tensor, sigma: torch.Tensor, sigma_offset_noise: float) -> torch.Tensor:
    """x [B, C, H, W] + offset noise (one N(0, sigma_offset^2) value per image and channel) + sigma N(0, 1)."""
    offset = sigma_offset_noise * torch.randn(*x.shape[:2], 1, 1, device=x.device)
    return x + offset + torch.randn_like(x) * sigma[:, None, None, None]


def quantize(d: torch.Tensor) -> torch.Tensor:
    """The denoised frame clipped to [-1, 1] and floored onto the 8-bit grid (the official
    ``wrap_model_output``: ``.byte()`` truncates), back in [-1, 1]."""
    return d.clamp(-1, 1).add(1).div(2).mul(255).byte().div(255).mul(2).sub(1)


def build_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float,
                 device: torch.device | None = None) -> torch.Tensor:
    """Karras et al.'s schedule: num_steps levels from sigma_max to sigma_min, evenly spaced in
    sigma^(1/rho), then a final 0: [num_steps + 1]. With one step it is [sigma_max, 0]."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    ramp = torch.linspace(0, 1, num_steps, device=device)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat((sigmas, sigmas.new_zeros(1)))


@dataclass(kw_only=True)
class SamplerConfig:
    """``DiffusionSamplerConfig`` of the official code; defaults of ``config/trainer.yaml``'s world_model_env."""

    num_steps: int = 3
    """Denoising steps (network evaluations with order 1)."""
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    order: int = 1
    """1: Euler; 2: Heun (a second evaluation per step, except the last)."""
    s_churn: float = 0.0
    """Stochasticity (EDM Algorithm 2's S_churn); 0 is the deterministic sampler."""
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    def check(self) -> None:
        if self.num_steps < 1 or self.order not in (1, 2):
            raise ValueError(f"sampler.num_steps must be >= 1 and sampler.order 1 or 2, got {self}")
        if not 0 < self.sigma_min <= self.sigma_max or self.rho <= 0 or self.s_churn < 0:
            raise ValueError(f"sampler needs 0 < sigma_min <= sigma_max, rho > 0, s_churn >= 0, got {self}")


def edm_sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
               cfg: SamplerConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The official ``DiffusionSampler.sample`` loop from x (the official code starts from x ~ N(0, I), not
    scaled by sigma_max; the caller draws it): ``denoise(x, sigma [B]) -> D(x; sigma)``. Churn noise, when
    s_churn > 0, comes from ``generator``."""
    sigmas = build_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    s_in = torch.ones(x.shape[0], device=x.device)
    gamma_ = min(cfg.s_churn / (len(sigmas) - 1), 2**0.5 - 1)
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:]):
        gamma = gamma_ if cfg.s_tmin <= sigma <= cfg.s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * cfg.s_noise
            x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
        d = (x - denoise(x, sigma * s_in)) / sigma_hat
        dt = next_sigma - sigma_hat
        if cfg.order == 1 or next_sigma == 0:
            x = x + d * dt  # Euler
        else:
            x_2 = x + d * dt  # Heun
            d_2 = (x_2 - denoise(x_2, next_sigma * s_in)) / next_sigma
            x = x + (d + d_2) / 2 * dt
    return x
