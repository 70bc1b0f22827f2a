"""Attention pieces and the attention backbone: references, masks, RoPE, KV cache == parallel form."""

from __future__ import annotations

import math

import pytest
import torch

from drivewm.backbones import (
    Attention,
    BackboneConfig,
    RotaryEmbedding,
    TransformerBlock,
    apply_rotary,
    block_causal_mask,
    build_backbone,
)


def _backbone(**kw):
    torch.manual_seed(0)
    cfg = BackboneConfig(kind="attention", dim=32, depth=2, heads=4, max_len=128, **kw)
    return build_backbone(cfg).eval()


def test_block_causal_mask_known_answer():
    m = block_causal_mask(4, 4, 2)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    assert torch.equal(block_causal_mask(3, 3, 1), torch.ones(3, 3, dtype=torch.bool).tril())
    # queries are the last 2 of 5 positions (3 cached)
    assert torch.equal(block_causal_mask(2, 5, 1), torch.ones(5, 5, dtype=torch.bool).tril()[3:])


def test_apply_rotary_matches_complex_multiplication():
    torch.manual_seed(0)
    hd, n = 8, 5
    x = torch.randn(1, 2, n, hd)
    rope = RotaryEmbedding(hd, base=100.0, max_len=16)
    pos = torch.tensor([0, 3, 7, 1, 15])
    out = apply_rotary(x, *rope(pos))
    freqs = 100.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    z = torch.complex(x[..., : hd // 2].double(), x[..., hd // 2 :].double())
    ref = z * torch.polar(torch.ones(n, hd // 2, dtype=torch.float64), pos[:, None].double() * freqs)
    assert torch.allclose(out, torch.cat([ref.real, ref.imag], -1).float(), atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        rope(torch.tensor([16]))


def test_attention_matches_explicit_softmax_with_masks():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(2, 6, 16)
    allowed = torch.rand(6, 6) > 0.3
    allowed |= torch.eye(6, dtype=torch.bool)
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 4:] = True
    allowed_full = allowed[None] & ~padding[:, None, :] | torch.eye(6, dtype=torch.bool)[None]
    out = attn(x, attn_mask=allowed_full)
    out_pad = attn(x, attn_mask=allowed | torch.eye(6, dtype=torch.bool), key_padding_mask=padding)

    q, k, v = attn.qkv(x).view(2, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(~allowed_full[:, None], float("-inf"))
    ref = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 16))
    assert torch.allclose(out, ref, atol=1e-5)
    # padding rows of batch 1 keep their own key (the diagonal), others lose keys 4, 5
    assert torch.allclose(out_pad[0], ref[0], atol=1e-5)
    assert torch.allclose(out_pad[1, :4], ref[1, :4], atol=1e-5)


def test_bidirectional_block_is_permutation_equivariant_and_padding_ignores_keys():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, norm="layer").eval()
    x = torch.randn(1, 7, 16)
    perm = torch.randperm(7)
    assert torch.allclose(block(x)[:, perm], block(x[:, perm]), atol=1e-5)
    pad = torch.zeros(1, 7, dtype=torch.bool)
    pad[0, 5:] = True
    x2 = x.clone()
    x2[0, 5:] = torch.randn(2, 16)  # changing padded tokens leaves the others unchanged
    assert torch.allclose(block(x, key_padding_mask=pad)[:, :5], block(x2, key_padding_mask=pad)[:, :5], atol=1e-6)
    assert not torch.allclose(block(x)[:, :5], block(x2)[:, :5], atol=1e-4)


def test_causality_token_and_block():
    model = _backbone()
    x = torch.randn(1, 12, 32)
    for k in (0, 5, 11):
        x2 = x.clone()
        x2[0, k] += 1.0
        d = (model(x2) - model(x)).abs().amax(-1)[0]
        assert torch.all(d[:k] == 0) and torch.all(d[k:] > 0)
    # block-causal, blocks of 4: perturbing token 5 changes tokens 4..11, never 0..3
    x2 = x.clone()
    x2[0, 5] += 1.0
    d = (model(x2, block_size=4) - model(x, block_size=4)).abs().amax(-1)[0]
    assert torch.all(d[:4] == 0) and torch.all(d[4:] > 0)


@pytest.mark.parametrize("piece", [1, 3, 4])
def test_kv_cache_step_equals_forward(piece):
    model = _backbone()
    x = torch.randn(2, 12, 32)
    ref = model(x, block_size=piece)
    state = model.init_state(2)
    outs = []
    for i in range(0, 12, piece):
        out, state = model.step(x[:, i : i + piece], state)
        outs.append(out)
    assert state.length == 12
    assert torch.allclose(torch.cat(outs, 1), ref, atol=1e-5)


def test_states_are_values_so_rollouts_can_branch():
    model = _backbone()
    x = torch.randn(1, 5, 32)
    _, s = model.step(x[:, :4], model.init_state(1))
    a, _ = model.step(x[:, 4:], s)
    _, _ = model.step(torch.randn(1, 3, 32), s)  # another branch from the same state
    b, _ = model.step(x[:, 4:], s)
    assert torch.equal(a, b)


def test_rope_positions_are_honoured():
    model = _backbone()
    x = torch.randn(2, 8, 32)
    base = model(x)
    # RoPE is relative: shifting every position by a constant changes nothing
    assert torch.allclose(model(x, positions=torch.arange(8) + 37), base, atol=1e-4)
    # frame-wise positions (pairs of tokens share an index) change the output
    frames = torch.arange(8) // 2
    assert not torch.allclose(model(x, positions=frames), base, atol=1e-3)
    # per-batch positions: row 0 token indices, row 1 frame indices
    per_batch = torch.stack([torch.arange(8), frames])
    out = model(x, positions=per_batch)
    assert torch.allclose(out[0], base[0], atol=1e-5)
    assert torch.allclose(out[1], model(x, positions=frames)[1], atol=1e-5)
    # the step form honours given positions too
    state = model.init_state(2)
    outs = []
    for t in range(8):
        o, state = model.step(x[:, t : t + 1], state, positions=frames[t : t + 1])
        outs.append(o)
    assert torch.allclose(torch.cat(outs, 1), model(x, positions=frames), atol=1e-5)


def test_rope_axes_rotate_their_own_part_of_each_head():
    """3D RoPE (V-JEPA 2): axis a rotates the a-th part of each head by its own positions, 1D RoPE of that part."""
    torch.manual_seed(0)
    hd, n = 12, 5
    x = torch.randn(1, 2, n, hd)
    pos = torch.randint(0, 16, (n, 3))
    out = apply_rotary(x, *RotaryEmbedding(hd, base=100.0, max_len=16, axes=3)(pos))
    one = RotaryEmbedding(4, base=100.0, max_len=16)
    half = hd // 2
    for a in range(3):  # pairs (i, i + hd/2) of axis a: i in [2a, 2a + 2)
        idx = [2 * a, 2 * a + 1, half + 2 * a, half + 2 * a + 1]
        ref = apply_rotary(x[..., idx], *one(pos[:, a]))
        assert torch.allclose(out[..., idx], ref, atol=1e-6)
    # relative per axis: shifting every token by one offset leaves the backbone's output unchanged
    model = _backbone(rope_axes=2)
    y = torch.randn(2, 6, 32)
    grid = torch.stack([torch.arange(6) // 3, torch.arange(6) % 3], -1)
    base = model(y, positions=grid)
    assert torch.allclose(model(y, positions=grid + torch.tensor([5, 9])), base, atol=1e-4)
    assert not torch.allclose(model(y, positions=grid.flip(-1)), base, atol=1e-3)
    with pytest.raises(ValueError, match="positions"):
        model(y)
    with pytest.raises(ValueError, match="rope_axes"):
        BackboneConfig(kind="attention", dim=32, heads=8, rope_axes=3)  # head size 4 holds two pairs, not three
    # a head of 16 over 3 axes: 3 x 4 rotated dims, the last pair of each half unrotated
    cos, sin = RotaryEmbedding(16, max_len=16, axes=3)(pos)
    assert cos.shape == (n, 8) and torch.all(cos[:, 6:] == 1) and torch.all(sin[:, 6:] == 0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="kind"):
        BackboneConfig(kind="lstm")
    with pytest.raises(ValueError, match="heads"):
        BackboneConfig(dim=30, heads=4)
    model = _backbone()
    with pytest.raises(ValueError, match=r"\[B, L, 32\]"):
        model(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.randn(2, 5, 32), block_size=0)
    with pytest.raises(ValueError, match="positions"):
        model(torch.randn(2, 5, 32), positions=torch.arange(4))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, 5, 32), positions=torch.arange(5) + 200)


def test_attention_backbone_compiles_without_graph_breaks():
    """torch.compile traces the whole backbone as one graph: no host read (the RoPE range check) splits it.
    dynamo's explain traces without compiling, so this runs on any machine."""
    net = _backbone()
    explained = torch._dynamo.explain(net)(torch.randn(2, 16, 32))
    assert explained.graph_break_count == 0, [str(b.reason)[:120] for b in explained.break_reasons]
    torch._dynamo.reset()
