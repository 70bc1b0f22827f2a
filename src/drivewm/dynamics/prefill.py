"""Causal prefill of a backbone's step state from a whole prefix in one parallel pass.

`SequenceBackbone.step` treats the n tokens it receives as one block (they see each other), which is
right for frame-causal models but not for a token-causal GPT prompt. For attention, the KV cache of a
causal prompt is exactly the keys/values the causal forward pass computes, so they are captured from
each block's qkv projection during `forward` and rotated with the backbone's own RoPE tables; the SSM's
step form is causal within a block, so its state comes from `step` directly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from drivewm.backbones import AttentionBackbone, KVCache, SequenceBackbone, apply_rotary


def causal_prefill(backbone: SequenceBackbone, x: Tensor, positions: Tensor) -> tuple[Tensor, object]:
    """x [B, L, D], positions [L] -> (causal outputs [B, L, D], step state after the L tokens)."""
    if not isinstance(backbone, AttentionBackbone):
        return backbone.step(x, backbone.init_state(x.shape[0], x.device, x.dtype), positions=positions)
    captured: list[Tensor] = []
    hooks = [
        blk.attn.qkv.register_forward_hook(lambda _m, _i, out: captured.append(out)) for blk in backbone.blocks
    ]
    try:
        out = backbone(x, positions=positions)
    finally:
        for h in hooks:
            h.remove()
    cfg = backbone.cfg
    cos, sin = backbone.rope(positions)
    keys, values = [], []
    for qkv in captured:
        b, n, _ = qkv.shape
        _q, k, v = qkv.view(b, n, 3, cfg.heads, cfg.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, n, hd]
        keys.append(apply_rotary(k, cos, sin))
        values.append(v)
    return out, KVCache(keys=tuple(keys), values=tuple(values))


def frame_positions(frames: int, per_frame: int, device: torch.device | str | None = None) -> Tensor:
    """Frame-wise 1D positions: every one of the per_frame tokens of frame t gets position t -> [frames*per_frame]."""
    return torch.arange(frames, device=device).repeat_interleave(per_frame)
