"""Causality of all three models and KV-cache == uncached GPT sampling."""

import pytest
import torch

from drivewm.dynamics import SamplingConfig, guided_logits
from drivewm.dynamics.warp_prior import WarpPrior

BACKBONES = ["attention", "ssm"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_gpt_changing_a_token_never_changes_earlier_predictions(make_model, tokens, cond, backbone):
    model = make_model("gpt", backbone).eval()
    x = model.embed_frames(tokens, cond)
    base = model.forward_logits(x, tokens.shape[1])
    n1 = model.tokens_per_frame + 1
    for p in (5, n1 + 3, 3 * n1):  # a scene token of frame 0, frame 1 and the first of frame 3
        t, j = divmod(p, n1)
        changed = tokens.clone()
        changed[:, t].view(2, -1)[:, j] = (changed[:, t].view(2, -1)[:, j] + 1) % model.vocab_size
        out = model.forward_logits(model.embed_frames(changed, cond), tokens.shape[1])
        assert torch.allclose(out[:, :p], base[:, :p], atol=1e-5)
        assert not torch.allclose(out[:, p:], base[:, p:], atol=1e-5)  # later predictions do see it


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("kind", ["occworld", "maskgit"])
def test_frame_models_are_causal_over_frames(make_model, tokens, cond, kind, backbone):
    model = make_model(kind, backbone).eval()
    fn = model.next_frame_logits if kind == "occworld" else model.denoise_logits
    base = fn(tokens, cond)
    changed = tokens.clone()
    changed[:, 3] = (changed[:, 3] + 1) % model.vocab_size
    changed_cond = cond.clone()
    changed_cond[:, 4] += 1.0  # the last frame's own transition: no frame may depend on it for OccWorld
    out = fn(changed, changed_cond)
    assert torch.allclose(out[:, :3], base[:, :3], atol=1e-5)
    assert not torch.allclose(out[:, 3:], base[:, 3:], atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=5)])
def test_kv_cache_sampling_equals_uncached(make_model, tokens, cond, backbone, sampling):
    model = make_model("gpt", backbone).eval()
    outs = [
        model.rollout(tokens[:, :3], cond, 2, sampling=sampling, generator=torch.Generator().manual_seed(11), use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(outs[0], outs[1])
    # A different seed gives a different sample (the equality above is not vacuous).
    other = model.rollout(tokens[:, :3], cond, 2, sampling=sampling, generator=torch.Generator().manual_seed(12))
    assert not torch.equal(outs[0], other)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_maskgit_context_cache_equals_full_passes(make_model, tokens, cond, backbone, guidance):
    model = make_model("maskgit", backbone).eval()
    window = torch.cat([tokens[:, :3], torch.full_like(tokens[:, :1], model.mask_id)], 1)
    cache = model.context_cache(window, cond, guidance)
    full = model.frame_logits(window, cond, guidance)
    assert torch.allclose(model.frame_logits(window, cond, guidance, cache), full, atol=1e-4)
    # Both paths batch [conditional; unconditional] rows: they equal two separate full passes.
    drop = torch.ones(window.shape[0], dtype=torch.bool)
    separate = guided_logits(model.denoise_logits(window, cond)[:, -1], model.denoise_logits(window, cond, drop)[:, -1],
                             guidance).flatten(1, 2)
    assert torch.allclose(full, separate, atol=1e-4)
    outs = [
        model.rollout(tokens[:, :3], cond, 2, guidance_weight=guidance, generator=torch.Generator().manual_seed(3), use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(outs[0], outs[1])


def test_guidance_formula_exact_at_0_and_minus_1():
    """Copilot4D's cond + w (cond - uncond): w = 0 is the conditional model, w = -1 the unconditional one."""
    c, u = torch.randn(3, 7, 11), torch.randn(3, 7, 11)
    assert torch.equal(guided_logits(c, u, 0.0), c)
    assert torch.equal(guided_logits(c, u, -1.0), u)
    assert torch.allclose(guided_logits(c, u, 2.0), c + 2.0 * (c - u), atol=1e-5)


def test_guidance_minus_1_and_0_reduce_to_unconditional_and_conditional_models(make_model, tokens, cond):
    model = make_model("maskgit").eval()
    ctx = tokens[:, :3]

    def run(guidance):
        return model.rollout(ctx, cond, 2, guidance_weight=guidance, generator=torch.Generator().manual_seed(4))

    guided0, guided1 = run(-1.0), run(0.0)
    original = model.frame_logits
    # The plain conditional model: conditional logits only.
    model.frame_logits = lambda w, c, g, cache=None, prior=None: model.denoise_logits(w, c)[:, -1].flatten(1, 2)
    plain_cond = run(0.0)
    # The plain unconditional model: past frames and actions dropped.
    drop = torch.ones(ctx.shape[0], dtype=torch.bool)
    model.frame_logits = lambda w, c, g, cache=None, prior=None: model.denoise_logits(w, c, drop)[:, -1].flatten(1, 2)
    plain_uncond = run(-1.0)
    model.frame_logits = original
    assert torch.equal(guided1, plain_cond)
    assert torch.equal(guided0, plain_uncond)
    assert not torch.equal(plain_cond, plain_uncond)
    # The unconditional model ignores the context frames entirely.
    other_ctx = (ctx + 1) % model.vocab_size
    drop_logits = model.denoise_logits(torch.cat([ctx, ctx[:, :1]], 1), cond[:, :4], drop)
    drop_logits2 = model.denoise_logits(torch.cat([other_ctx, ctx[:, :1]], 1), cond[:, :4] + 1, drop)
    assert torch.allclose(drop_logits[:, -1], drop_logits2[:, -1], atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_maskgit_training_logits_one_pass_equal_cut_clips(make_model, backbone):
    """The GPU's one pass over whole clips gives the CPU's per-target cut-clip logits, with the warp prior and
    unconditional rows (whose past before the target, and only that, turns to [MASK])."""
    model = make_model("maskgit", backbone, warp_prior=True).eval()
    g = torch.Generator().manual_seed(5)
    b, t, v, grid = 6, 6, model.vocab_size, model.token_shape
    inputs = torch.randint(0, v, (b, t, *grid), generator=g)
    cond = torch.randn(b, t, model.action_dim, generator=g)
    prior = WarpPrior(torch.randint(0, v, (b, t - 1, *grid), generator=g))
    k = torch.tensor([1, 5, 3, 3, 2, 5])
    uncond = torch.tensor([False, True, False, True, True, False])
    model.cfg.train_pass = "cut"
    cut = model._logits_at(inputs, cond, uncond, k, prior)
    model.cfg.train_pass = "whole"
    one = model._logits_at(inputs, cond, uncond, k, prior)
    assert torch.allclose(cut, one, atol=1e-5)
    # The frames after each target are really there in the one pass: changing them changes frame t-1's logits.
    later = inputs.clone()
    later[:, -1] = (later[:, -1] + 1) % v
    assert not torch.allclose(model.denoise_logits(later, cond, uncond, prior)[:, -1],
                              model.denoise_logits(inputs, cond, uncond, prior)[:, -1])
    assert torch.allclose(model._logits_at(later, cond, uncond, k, prior)[k < t - 1], one[k < t - 1],
                          atol=1e-5)
