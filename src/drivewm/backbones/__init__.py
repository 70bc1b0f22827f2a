"""Temporal sequence backbones: attention and a Mamba-style selective SSM behind one interface.

Public API (other families build on these exact names):

- ``BackboneConfig`` (kw_only dataclass): kind 'attention' | 'ssm', dim, depth, heads, mlp_ratio,
  dropout, rope_base, max_len, norm 'rms' | 'layer'; SSM: d_state, d_conv, expand, dt_rank, chunk.
- ``build_backbone(cfg) -> SequenceBackbone`` (nn.Module):

  * ``forward(x [B, L, D], *, positions=None, block_size=1) -> [B, L, D]``: causal mixing. With
    block_size > 1 attention is block-causal (token i sees j iff j // block_size <= i // block_size,
    V-JEPA 2-AC's frame-causal mask). ``positions`` (LongTensor [L] or [B, L], default token index)
    feed RoPE; pass the frame index of every token for frame-wise 1D RoPE (DrivingGPT).
    SSM: strictly causal in sequence order; block_size only checks "sees all earlier tokens" (an
    SSM token never sees later tokens of its own block) and positions are ignored, the recurrence
    being order-aware.
  * ``init_state(batch, device, dtype) -> state`` and ``step(x [B, n, D], state, *, positions=None)
    -> (out [B, n, D], new_state)``: append n tokens (attention: KV cache, the n tokens form one
    block; SSM: conv + scan state, O(1) per token). Running a sequence through ``step`` in pieces of
    n equals ``forward(x, block_size=n)`` for attention and ``forward(x)`` for the SSM. States are
    immutable values (``KVCache`` / ``SSMState``); branch a rollout by reusing one.

- Reusable pieces: ``TransformerBlock`` / ``Attention`` (bidirectional by default, ``attn_mask``
  bool True = attend, ``key_padding_mask`` bool True = padding, ``is_causal``, ``rope=(cos, sin)``,
  ``step`` for KV caching), ``MLP``, ``make_norm('rms' | 'layer', dim)``, ``block_causal_mask``,
  ``RotaryEmbedding(head_dim, base=, max_len=)(positions) -> (cos, sin)``, ``apply_rotary(x, cos, sin)``,
  ``MambaBlock`` (gated selective-SSM mixer), ``selective_scan`` (chunked parallel form) and
  ``selective_scan_reference`` (sequential recurrence), ``selective_scan_step``, ``linear_scan``
  (differentiable chunked scan of h_t = a_t h_{t-1} + u_t).
"""

from drivewm.backbones.attention import MLP, Attention, TransformerBlock, block_causal_mask, make_norm
from drivewm.backbones.attention_backbone import AttentionBackbone, KVCache
from drivewm.backbones.base import SequenceBackbone
from drivewm.backbones.build import build_backbone
from drivewm.backbones.config import BackboneConfig
from drivewm.backbones.rotary import RotaryEmbedding, apply_rotary
from drivewm.backbones.scan import (
    fused_available,
    linear_scan,
    selective_scan,
    selective_scan_reference,
    selective_scan_step,
)
from drivewm.backbones.ssm import MambaBlock, SSMBackbone, SSMState

__all__ = [
    "MLP",
    "Attention",
    "AttentionBackbone",
    "BackboneConfig",
    "KVCache",
    "MambaBlock",
    "RotaryEmbedding",
    "SSMBackbone",
    "SSMState",
    "SequenceBackbone",
    "TransformerBlock",
    "apply_rotary",
    "block_causal_mask",
    "build_backbone",
    "fused_available",
    "linear_scan",
    "make_norm",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_step",
]
