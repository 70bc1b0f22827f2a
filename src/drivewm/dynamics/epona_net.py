"""The two networks of Epona (arXiv 2506.24113; Kevin-thu/Epona at commit 651a7c77f65bdfec1ef48b50a4c6be5e8fea7e25),
at CPU size and without the trajectory branch:

- `SpatioTemporalTransformer`: ``models/stt.py`` SpatialTemporalTransformer. Each frame is its latent patches
  plus one ego-condition token (Epona: pose and yaw tokens); a learned per-frame time embedding is added
  (``time_emb``), then every block attends causally over frames at each token position
  (CausalTimeBlock) and then over the tokens of each frame (SpaceBlock), in that order. Output: one feature
  set per frame, [B, F, N + 1, D], the condition of that frame's successor.
- `FlowHead`: ``models/flux_dit.py`` FluxDiT with single-stream blocks only (``depth_single_blocks``;
  Epona's nuPlan config also has double-stream blocks): the noisy next-frame patches and the projected
  features share one attention (cond tokens first), every block modulated by the time embedding
  (FLUX's sinusoidal ``timestep_embedding`` at time_factor 1000) plus the embedded ego condition of the
  predicted transition (Epona's ``y = pose_emb``); FLUX's ``LastLayer`` maps back to patches.

drivewm's differences: absolute learned positions for the patches in place of RoPE over (row, col) ids; the
ego condition is drivewm's per-frame vector (`drivewm.conditions`), embedded by a linear layer; the final
projection starts at zero (velocity 0), so the first steps do not fight a random output.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import RotaryEmbedding, TransformerBlock, make_norm

TIME_FEATURES = 256
"""Width of the sinusoidal time embedding (FLUX)."""


def timestep_embedding(t: Tensor, dim: int = TIME_FEATURES, max_period: float = 10000.0,
                       time_factor: float = 1000.0) -> Tensor:
    """FLUX's sinusoidal embedding [N, dim] of times t [N] in [0, 1] (scaled by time_factor)."""
    t = time_factor * t.float()
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def patchify(z: Tensor, p: int) -> Tensor:
    """Latents [..., C, h, w] -> patches [..., (h/p)(w/p), C p p] (Epona's tokenizer.patchify)."""
    *lead, c, h, w = z.shape
    x = z.reshape(-1, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [n, h/p, w/p, C, p, p]
    return x.reshape(*lead, (h // p) * (w // p), c * p * p)


def unpatchify(x: Tensor, p: int, shape: tuple[int, int, int]) -> Tensor:
    """Patches [..., N, C p p] -> latents [..., C, h, w] of `shape` (C, h, w)."""
    *lead, _, _ = x.shape
    c, h, w = shape
    z = x.reshape(-1, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)  # [n, C, h/p, p, w/p, p]
    return z.reshape(*lead, c, h, w)


class SpatioTemporalTransformer(nn.Module):
    """Per-frame patches [B, F, N, P] and ego conditions [B, F, A] -> features [B, F, N + 1, D], causal in F."""

    def __init__(self, *, patch_dim: int, tokens: int, cond_dim: int, dim: int, depth: int, heads: int,
                 max_frames: int, mlp_ratio: float, dropout: float, norm: str) -> None:
        super().__init__()
        self.patch_in = nn.Sequential(nn.Linear(patch_dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim),
                                      nn.LayerNorm(dim))  # Epona's img_projector
        self.cond_in = nn.Sequential(nn.Linear(max(cond_dim, 1), dim), nn.LayerNorm(dim))
        self.cond_dim = cond_dim
        self.space_pos = nn.Parameter(torch.randn(tokens + 1, dim) * 0.02)
        self.time_emb = nn.Parameter(torch.randn(max_frames, dim) * 0.02)
        block = dict(mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
        self.time_blocks = nn.ModuleList(TransformerBlock(dim, heads, **block) for _ in range(depth))
        self.space_blocks = nn.ModuleList(TransformerBlock(dim, heads, **block) for _ in range(depth))
        self.rope = RotaryEmbedding(dim // heads, max_len=max_frames)
        self.norm = make_norm(norm, dim)
        self.max_frames = max_frames

    def forward(self, patches: Tensor, cond: Tensor) -> Tensor:
        b, f, n, _ = patches.shape
        if f > self.max_frames:
            raise ValueError(f"{f} frames exceed the transformer's {self.max_frames}")
        cond = cond if self.cond_dim else cond.new_zeros(b, f, 1)
        x = torch.cat([self.cond_in(cond)[:, :, None], self.patch_in(patches)], 2)  # [B, F, N+1, D]
        x = x + self.space_pos + self.time_emb[:f, None]
        rope = self.rope(torch.arange(f, device=x.device))
        d = x.shape[-1]
        for time_block, space_block in zip(self.time_blocks, self.space_blocks):
            x = x.transpose(1, 2).reshape(b * (n + 1), f, d)  # each token position over frames
            x = time_block(x, rope=rope, is_causal=True)
            x = x.reshape(b, n + 1, f, d).transpose(1, 2).reshape(b * f, n + 1, d)  # each frame's tokens
            x = space_block(x).reshape(b, f, n + 1, d)
        return self.norm(x)


class Modulation(nn.Module):
    """FLUX's adaptive-norm modulation: vec [N, D] -> shift, scale, gate [N, 1, D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, 3 * dim)

    def forward(self, vec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.lin(F.silu(vec))[:, None].chunk(3, -1)


class SingleStreamBlock(nn.Module):
    """FLUX's single-stream DiT block: parallel attention (QK RMS-norm) and MLP from one modulated norm."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.hidden = int(dim * mlp_ratio)
        self.linear1 = nn.Linear(dim, 3 * dim + self.hidden)
        self.linear2 = nn.Linear(dim + self.hidden, dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6)
        self.pre_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = Modulation(dim)

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale, gate = self.modulation(vec)
        b, n, d = x.shape
        qkv, mlp = torch.split(self.linear1((1 + scale) * self.pre_norm(x) + shift), [3 * d, self.hidden], -1)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, n, hd] each
        attn = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        attn = attn.transpose(1, 2).reshape(b, n, d)
        return x + gate * self.linear2(torch.cat([attn, F.gelu(mlp, approximate="tanh")], -1))


class FlowHead(nn.Module):
    """Velocity of the next frame's patches: (x_t [M, N, P], t [M], cond features [M, K, Dc], ego [M, A])
    -> [M, N, P]."""

    def __init__(self, *, patch_dim: int, tokens: int, cond_width: int, cond_dim: int, dim: int, depth: int,
                 heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.img_in = nn.Linear(patch_dim, dim)
        self.img_pos = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.cond_in = nn.Linear(cond_width, dim)
        self.time_in = nn.Sequential(nn.Linear(TIME_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.vector_in = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if cond_dim else None
        self.blocks = nn.ModuleList(SingleStreamBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final = nn.Linear(dim, patch_dim)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor, ego: Tensor) -> Tensor:
        vec = self.time_in(timestep_embedding(t))
        if self.vector_in is not None:
            vec = vec + self.vector_in(ego)
        img = self.img_in(x_t) + self.img_pos
        k = cond.shape[1]
        x = torch.cat([self.cond_in(cond), img], 1)  # [M, K + N, D]
        for block in self.blocks:
            x = block(x, vec)
        shift, scale = self.final_modulation(vec)[:, None].chunk(2, -1)
        return self.final((1 + scale) * self.final_norm(x[:, k:]) + shift)
