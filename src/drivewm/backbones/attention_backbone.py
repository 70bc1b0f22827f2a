"""Causal transformer backbone: pre-norm blocks, rotary positions, block-causal masks, KV-cache step form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones.attention import TransformerBlock, block_causal_mask, make_norm
from drivewm.backbones.base import SequenceBackbone
from drivewm.backbones.config import BackboneConfig
from drivewm.backbones.rotary import RotaryEmbedding


@dataclass(frozen=True)
class KVCache:
    """Per-layer keys and values [B, H, S, hd] of the S tokens seen so far (keys already rotated)."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]


def _positions(positions: Tensor | None, start: int, n: int, device: torch.device, axes: int = 1) -> Tensor:
    """Default positions are token indices start..start+n-1; given ones must be [n] or [B, n] (+ [axes] when > 1)."""
    if positions is None:
        if axes > 1:
            raise ValueError(f"rope_axes={axes}: give positions [{n}, {axes}] (no default for several axes)")
        return torch.arange(start, start + n, device=device)
    length = positions.shape[-2] if axes > 1 and positions.dim() >= 2 else positions.shape[-1]
    if positions.dim() - (axes > 1) not in (1, 2) or length != n:
        extra = f", {axes}" if axes > 1 else ""
        raise ValueError(f"positions must be [{n}{extra}] or [B, {n}{extra}], got shape {tuple(positions.shape)}")
    return positions


class AttentionBackbone(SequenceBackbone):
    """Stack of TransformerBlocks; token i attends to j iff j // block_size <= i // block_size."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rope = RotaryEmbedding(cfg.head_dim, base=cfg.rope_base, max_len=cfg.max_len, axes=cfg.rope_axes)
        self.blocks = nn.ModuleList(TransformerBlock.from_config(cfg) for _ in range(cfg.depth))
        self.norm = make_norm(cfg.norm, cfg.dim)

    def forward(self, x: Tensor, *, positions: Tensor | None = None, block_size: int = 1) -> Tensor:
        self._check_input(x, block_size)
        n = x.shape[1]
        rope = self.rope(_positions(positions, 0, n, x.device, self.cfg.rope_axes))
        # block_size 1 takes SDPA's is_causal path (flash kernel); blocks need an explicit mask.
        mask = None if block_size == 1 else block_causal_mask(n, n, block_size, device=x.device)
        for block in self.blocks:
            x = block(x, rope=rope, attn_mask=mask, is_causal=block_size == 1)
        return self.norm(x)

    def init_state(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> KVCache:
        dtype = dtype or torch.float32
        empty = torch.zeros(batch, self.cfg.heads, 0, self.cfg.head_dim, device=device, dtype=dtype)
        return KVCache(keys=(empty,) * self.cfg.depth, values=(empty,) * self.cfg.depth)

    def prefill(self, x: Tensor, *, positions: Tensor | None = None) -> tuple[Tensor, KVCache]:
        """The causal forward pass, keeping every layer's rotated keys and values as the KV cache."""
        self._check_input(x)
        rope = self.rope(_positions(positions, 0, x.shape[1], x.device, self.cfg.rope_axes))
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block.prefill(x, rope=rope)
            keys.append(k)
            values.append(v)
        return self.norm(x), KVCache(keys=tuple(keys), values=tuple(values))

    def step(self, x: Tensor, state: KVCache, *, positions: Tensor | None = None) -> tuple[Tensor, KVCache]:
        self._check_input(x)
        if state.keys[0].shape[0] != x.shape[0]:
            raise ValueError(f"state holds batch {state.keys[0].shape[0]}, input has batch {x.shape[0]}")
        rope = self.rope(_positions(positions, state.length, x.shape[1], x.device, self.cfg.rope_axes))
        keys, values = [], []
        for block, past_k, past_v in zip(self.blocks, state.keys, state.values):
            x, k, v = block.step(x, past_k, past_v, rope=rope)
            keys.append(k)
            values.append(v)
        return self.norm(x), KVCache(keys=tuple(keys), values=tuple(values))
