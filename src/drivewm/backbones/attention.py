"""Multi-head attention and pre-norm transformer blocks, usable causally, block-causally or bidirectionally.

All attention goes through `F.scaled_dot_product_attention`, which picks flash / memory-efficient
kernels on GPUs. Boolean masks follow SDPA's convention: True = may attend. `key_padding_mask`
follows nn.MultiheadAttention's: True = padding key, ignored. A query row with no allowed key
yields NaN, as in SDPA; callers keep at least one key visible per query.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones.config import BackboneConfig
from drivewm.backbones.rotary import apply_rotary

Rope = tuple[Tensor, Tensor]


def make_norm(kind: str, dim: int) -> nn.Module:
    """'rms' -> RMSNorm, 'layer' -> LayerNorm, both with a learned gain."""
    if kind == "rms":
        return nn.RMSNorm(dim, eps=1e-6)
    if kind == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"norm {kind!r} not in ('rms', 'layer')")


def block_causal_mask(q_len: int, k_len: int, block_size: int = 1, *, device: torch.device | str | None = None) -> Tensor:
    """Bool [q_len, k_len], True where query i may see key j: j // block_size <= i // block_size.

    Queries are the last q_len of the k_len positions (a KV cache holds the first k_len - q_len).
    block_size = 1 is the ordinary causal mask; block_size = tokens per frame is V-JEPA 2-AC's
    frame-causal mask (every token of frame t sees all tokens of frames <= t).
    """
    q_idx = torch.arange(k_len - q_len, k_len, device=device)
    k_idx = torch.arange(k_len, device=device)
    return (k_idx[None, :] // block_size) <= (q_idx[:, None] // block_size)


def _merge_masks(attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, q_len: int, k_len: int, device) -> Tensor | None:
    """One boolean mask (True = attend) broadcastable to [B, H, q_len, k_len], or None."""
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be bool (True = may attend), got {attn_mask.dtype}")
        if attn_mask.shape[-2:] != (q_len, k_len):
            raise ValueError(f"attn_mask must end in [{q_len}, {k_len}], got {tuple(attn_mask.shape)}")
        mask = attn_mask if attn_mask.dim() != 3 else attn_mask[:, None]  # [B, L, S] -> [B, 1, L, S]
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool or key_padding_mask.dim() != 2 or key_padding_mask.shape[1] != k_len:
            raise ValueError(f"key_padding_mask must be bool [B, {k_len}] (True = padding), got "
                             f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        keep = ~key_padding_mask[:, None, None, :]  # [B, 1, 1, S]
        mask = keep if mask is None else mask & keep
    if is_causal and mask is not None:
        mask = mask & block_causal_mask(q_len, k_len, 1, device=device)
    return mask


class Attention(nn.Module):
    """Multi-head self-attention with optional RoPE on queries and keys."""

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def _qkv(self, x: Tensor, rope: Rope | None) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, H, n, hd]
        q, k, v = qkv.unbind(0)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        return q, k, v

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal and mask is None)
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))  # [B, H, n, hd] -> [B, n, D]

    def forward(self, x: Tensor, *, rope: Rope | None = None, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x [B, L, D] -> [B, L, D]; bidirectional unless is_causal or a mask says otherwise."""
        q, k, v = self._qkv(x, rope)
        n = x.shape[1]
        mask = _merge_masks(attn_mask, key_padding_mask, is_causal, n, n, x.device)
        return self._attend(q, k, v, mask, is_causal)

    def step(self, x: Tensor, past_k: Tensor, past_v: Tensor, *, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """New tokens x [B, n, D] see the cache [B, H, S, hd] and each other -> (out, keys, values [B, H, S+n, hd])."""
        q, k, v = self._qkv(x, rope)  # keys are cached already rotated by their own positions
        k = torch.cat([past_k, k.to(past_k.dtype)], dim=2)
        v = torch.cat([past_v, v.to(past_v.dtype)], dim=2)
        return self._attend(q, k.to(q.dtype), v.to(q.dtype), None, False), k, v

    def prefill(self, x: Tensor, *, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Causal attention over x [B, L, D] -> (out [B, L, D], its rotated keys and values [B, H, L, hd])."""
        q, k, v = self._qkv(x, rope)
        return self._attend(q, k, v, None, True), k, v


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 norm: str = "rms", bias: bool = False) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = Attention(dim, heads, dropout=dropout, bias=bias)
        self.norm2 = make_norm(norm, dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, bias=bias)
        self.drop = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, cfg: BackboneConfig) -> "TransformerBlock":
        return cls(cfg.dim, cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, norm=cfg.norm)

    def forward(self, x: Tensor, *, rope: Rope | None = None, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x [B, L, D] -> [B, L, D]; masks as in Attention.forward."""
        h = self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)
        return self._mlp_residual(x, h)

    def step(self, x: Tensor, past_k: Tensor, past_v: Tensor, *, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Cached form of forward for new tokens x [B, n, D] -> (out [B, n, D], keys, values)."""
        h, k, v = self.attn.step(self.norm1(x), past_k, past_v, rope=rope)
        return self._mlp_residual(x, h), k, v

    def prefill(self, x: Tensor, *, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Causal forward of x [B, L, D] that also returns the keys and values a KV cache holds after it."""
        h, k, v = self.attn.prefill(self.norm1(x), rope=rope)
        return self._mlp_residual(x, h), k, v

    def _mlp_residual(self, x: Tensor, h: Tensor) -> Tensor:
        """x + attention output h, then the MLP's residual."""
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.norm2(x)))
