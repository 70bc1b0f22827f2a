"""The JEPA predictor (I-JEPA, arXiv 2301.08243, Sec. 3): a narrow ViT over the context embeddings plus
one learned mask token per target position, each carrying its 2-D sin-cos position; it outputs the
predicted target embeddings. Each target block is predicted in its own pass (the context repeated),
so target blocks do not see each other, as in I-JEPA.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones import TransformerBlock, make_norm
from drivewm.jepa.encoders import gather_tokens, sincos_2d, spacetime_pos


class Predictor(nn.Module):
    """context [B, Nc, D] at ctx_idx [B, Nc], targets [B, K, Nt] -> predictions [B, K, Nt, D]."""

    def __init__(self, dim: int, token_grid: tuple[int, int], width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer("pos", sincos_2d(*token_grid, width), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, norm="layer") for _ in range(depth))
        self.norm = make_norm("layer", width)
        self.out = nn.Linear(width, dim)

    def forward(self, ctx: Tensor, ctx_idx: Tensor, tgt_idx: Tensor, frames: int = 1) -> Tensor:
        """``frames`` > 1: indices run over T * N space-time tokens (V-JEPA tubes)."""
        b, k, nt = tgt_idx.shape
        nc = ctx.shape[1]
        pos = self.pos if frames == 1 else spacetime_pos(self.pos, frames)
        pos = pos.unsqueeze(0).expand(b, -1, -1)  # [B, T*N, W]
        c = self.embed(ctx) + gather_tokens(pos, ctx_idx)  # [B, Nc, W]
        c = c.unsqueeze(1).expand(-1, k, -1, -1).reshape(b * k, nc, -1)  # one pass per target block
        m = self.mask_token + gather_tokens(pos, tgt_idx.reshape(b, k * nt)).reshape(b * k, nt, -1)
        x = torch.cat([c, m], dim=1)  # [B*K, Nc+Nt, W]
        for blk in self.blocks:
            x = blk(x)
        x = self.out(self.norm(x[:, nc:]))  # [B*K, Nt, D]
        return x.view(b, k, nt, -1)
