import math

import numpy as np
import pytest
import scipy.stats
import torch

from drivewm.dynamics.sampling import SamplingConfig, filter_logits, sample_logits, sample_with_logprob
from drivewm.dynamics.maskgit import decode_step
from drivewm.dynamics.schedule import (
    copilot4d_num_fixed,
    corrupt_tokens,
    mask_input_tokens,
    maskgit_mask_len,
    num_masked_train,
)


def test_train_mask_counts_follow_cosine_schedule():
    n, b = 64, 32
    tokens = torch.randint(0, 10, (b, n), generator=torch.Generator().manual_seed(3))
    out, masked, noised = corrupt_tokens(tokens, 10, 10, 0.2, generator=torch.Generator().manual_seed(7))
    u = torch.rand(b, generator=torch.Generator().manual_seed(7))  # the first draw of corrupt_tokens
    expected = [max(1, math.ceil(math.cos(float(x) * math.pi / 2) * n)) for x in u]
    assert masked.sum(1).tolist() == expected
    assert bool((out[masked] == 10).all())
    # Noise: at most 20 % of the unmasked tokens, every noised token changed to another valid code.
    unmasked = n - masked.sum(1)
    assert bool((noised.sum(1) <= torch.floor(0.2 * unmasked)).all()) and int(noised.sum()) > 0
    assert not bool((noised & masked).any())
    assert bool((out[noised] != tokens[noised]).all()) and int(out[noised].max()) < 10
    keep = ~masked & ~noised
    assert torch.equal(out[keep], tokens[keep])
    assert num_masked_train(torch.tensor([0.0, 1.0]), n).tolist() == [n, 1]


def test_input_masking_draws_a_uniform_fraction_per_clip_only_where_asked():
    b, t, n = 400, 3, 256
    tokens = torch.randint(0, 10, (b, t, 16, 16), generator=torch.Generator().manual_seed(0))
    where = torch.zeros(b, t, dtype=torch.bool)
    where[:, :2] = True  # the last frame is never masked
    out = mask_input_tokens(tokens, 0.5, 10, where=where, generator=torch.Generator().manual_seed(1))
    changed = out != tokens
    assert bool((out[changed] == 10).all())
    assert not bool(changed[:, 2].any())
    # Each clip's fraction r ~ U(0, 0.5), shared by its frames: the per-clip fractions are uniform on [0, 0.5].
    frac = changed[:, :2].flatten(1).float().mean(1).numpy()
    assert frac.max() <= 0.5 + 3 / math.sqrt(2 * n)
    assert scipy.stats.kstest(frac, "uniform", args=(0.0, 0.5)).pvalue > 1e-3
    assert torch.equal(mask_input_tokens(tokens, 0.0, 10), tokens)


@pytest.mark.parametrize("kind", ["gpt", "occworld", "maskgit"])
def test_input_masking_reaches_training_inputs_only(make_model, tokens, cond, kind):
    """With model.input_mask_ratio the network reads [MASK] inputs in training, never in evaluation; MaskGIT
    masks only the frames before its target (frames after it are unseen)."""
    extra = {"cond_drop_prob": 0.0, "train_pass": "whole"} if kind == "maskgit" else {}  # one net pass per loss
    model = make_model(kind, input_mask_ratio=0.9, **extra)
    seen = []
    layer = model.tok_emb if kind == "gpt" else model.net
    layer.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    for mode in (True, False):  # the same seed: MaskGIT draws the same target frames and corruption
        torch.manual_seed(0)
        model.train(mode).loss_tokens(tokens, cond)
    train_in, eval_in = seen
    mask_id = model.vocab_size
    changed = train_in != eval_in
    assert int(changed.sum()) > 0 and bool((train_in[changed] == mask_id).all())
    if kind == "maskgit":  # evaluation inputs hold [MASK] only in each clip's target frame k
        k = (eval_in == mask_id).flatten(2).any(2).int().argmax(1)  # [B]
        frame = torch.arange(eval_in.shape[1])[None]
        assert not bool(changed.flatten(2).any(2)[frame >= k[:, None]].any())
    else:
        assert int((eval_in == mask_id).sum()) == 0
    with pytest.raises(ValueError, match=r"model.input_mask_ratio must be in \[0, 1\), got 1.0"):
        make_model(kind, input_mask_ratio=1.0)


def test_maskgit_mask_len_is_parallel_decode_s():
    """floor(n cos((s+1)/S pi/2)), kept in [1, unknown - 1] before the last step (parallel_decode.py's clamp)."""
    n, steps = 256, 8
    counts, unknown = [], n
    for s in range(steps):
        counts.append(maskgit_mask_len(s, steps, n, unknown))
        unknown = counts[-1]
    assert counts[:-1] == [int(math.floor(math.cos((s + 1) / steps * math.pi / 2) * n)) for s in range(steps - 1)]
    assert counts[-1] == 0
    # The clamps: a tiny frame still decodes one token per step and keeps one masked until the last step.
    assert [maskgit_mask_len(s, 4, 3, u) for s, u in [(0, 3), (1, 2), (2, 1), (3, 1)]] == [2, 1, 1, 0]


def test_copilot4d_sampler_fixes_algorithm_2_counts():
    """Algorithm 2 (arXiv 2311.01017) for N = 2500, K = 10: after iteration k (9, ..., 0) M = ceil(cos(k/K pi/2) N)
    tokens are decoded; worked out by hand from the cosines."""
    n, steps = 2500, 10
    expected = [392, 773, 1135, 1470, 1768, 2023, 2228, 2378, 2470, 2500]
    assert [copilot4d_num_fixed(k, steps, n) for k in range(steps - 1, -1, -1)] == expected
    g = torch.Generator().manual_seed(0)
    x = torch.full((2, n), 8, dtype=torch.long)  # vocabulary 8, [MASK] = 8
    fixed = []
    for s in range(steps):
        logits = torch.randn(2, n, 8, generator=g)
        x = decode_step(x, logits, s, steps, mask_id=8, sampler="copilot4d", sampling=SamplingConfig(top_k=3),
                        choice_temperature=1.0, generator=g)
        fixed.append((x != 8).sum(1).tolist())
    assert fixed == [[m, m] for m in expected]


def test_copilot4d_sampler_resamples_decoded_tokens_and_maskgit_keeps_them():
    n, greedy = 6, SamplingConfig(temperature=0.0)
    x0 = torch.full((1, n), 4, dtype=torch.long)
    ones = torch.tensor([0.0, 5.0, 0.0, 0.0]).expand(1, n, 4)  # every position: token 1
    twos = torch.tensor([0.0, 0.0, 5.0, 0.0]).expand(1, n, 4)  # every position: token 2
    kw = dict(mask_id=4, sampling=greedy, choice_temperature=0.0, generator=None)
    for sampler, later in [("copilot4d", 2), ("maskgit", 1)]:
        x1 = decode_step(x0, ones, 0, 3, sampler=sampler, **kw)
        decoded = x1 != 4
        assert int(decoded.sum()) > 0 and bool((x1[decoded] == 1).all())
        x2 = decode_step(x1, twos, 1, 3, sampler=sampler, **kw)
        assert bool((x2[decoded] == later).all())  # Algorithm 2 re-samples them; MaskGIT keeps them


def test_confidence_is_the_models_probability_not_the_top_k_share():
    """A position uniform over the vocabulary (log p = -log 512) ranks below a 3-way tie (-log 3), although
    after top-3 both would be a 1/3 share; the MaskGIT step masks the uniform one again."""
    v = 512
    uniform = torch.zeros(v)
    tie = torch.full((v,), -1e4)
    tie[:3] = 0.0
    logits = torch.stack([uniform, tie])[None]  # [1, 2, V]
    ids, conf = sample_with_logprob(logits, SamplingConfig(temperature=1.0, top_k=3), torch.Generator().manual_seed(0))
    assert torch.allclose(conf, torch.tensor([[-math.log(v), -math.log(3)]]), atol=1e-5)
    x = torch.full((1, 2), v, dtype=torch.long)
    out = decode_step(x, logits, 0, 2, mask_id=v, sampler="maskgit", sampling=SamplingConfig(top_k=3),
                      choice_temperature=0.0, generator=torch.Generator().manual_seed(0))
    assert out[0, 0] == v and out[0, 1] < 3  # the uniform position waits, the tie is decoded


def test_maskgit_decoder_masks_the_stated_counts(make_model, tokens, cond):
    model = make_model("maskgit").eval()
    seen = []
    original = model.frame_logits

    def recording(window, c, guidance_weight, cache=None, prior=None):
        seen.append(int((window[:, -1] == model.mask_id).sum(dim=(1, 2))[0]))
        return original(window, c, guidance_weight, cache, prior)

    model.frame_logits = recording
    steps, n = 5, 16
    out = model.rollout(tokens[:, :2], cond, 1, steps=steps, generator=torch.Generator().manual_seed(0))
    expected = [n]
    for s in range(steps - 1):
        expected.append(maskgit_mask_len(s, steps, n, expected[-1]))
    assert seen == expected
    assert int(out.max()) < model.vocab_size  # no [MASK] left


def test_top_k_filter_keeps_the_k_largest():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2)).squeeze(0).tolist()
    assert kept == [True, True, False, False, False]
    assert torch.equal(filter_logits(logits, top_k=0), logits)  # 0: the whole vocabulary


def test_sampling_greedy_and_seeded():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_logits(logits, SamplingConfig(temperature=0)), logits.argmax(-1))
    cfg = SamplingConfig(temperature=1.0, top_k=3)
    a = sample_logits(logits, cfg, torch.Generator().manual_seed(5))
    b = sample_logits(logits, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    top3 = logits.topk(3, -1).indices
    assert bool((top3 == a[:, None]).any(-1).all())


@pytest.mark.parametrize(
    "cfg",
    [
        SamplingConfig(temperature=1.0, top_k=3),
        SamplingConfig(temperature=0.7, top_k=5),
        SamplingConfig(temperature=1.3),
        SamplingConfig(temperature=1.0),
    ],
)
def test_sample_with_logprob_draws_the_filtered_distribution(cfg):
    """MaskGIT's fused sampler: same distribution as sample_logits; each draw's log-probability is the model's
    own (log_softmax of the raw logits over the whole vocabulary)."""
    base = torch.randn(8, generator=torch.Generator().manual_seed(2)) * 1.5
    draws = 40000
    ids, logp = sample_with_logprob(base.expand(draws, 8), cfg, torch.Generator().manual_seed(9))
    ref_logp = filter_logits(base[None] / cfg.temperature, cfg.top_k).log_softmax(-1)[0]  # [8] the draw's law
    assert torch.allclose(logp, base.log_softmax(-1)[ids], atol=1e-5)  # each draw's log-probability
    p = ref_logp.exp().double().numpy()
    counts = np.bincount(ids.numpy(), minlength=8)
    assert counts[p == 0].sum() == 0  # nothing outside the top-k set
    keep = p > 0
    chi2 = (((counts[keep] - draws * p[keep]) ** 2) / (draws * p[keep])).sum()
    assert chi2 < scipy.stats.chi2.ppf(0.999, keep.sum() - 1)
    # sample_logits draws the same distribution (its frequencies pass the same check).
    other = sample_logits(base.expand(draws, 8), cfg, torch.Generator().manual_seed(9)).numpy()
    other_counts = np.bincount(other, minlength=8)
    assert (((other_counts[keep] - draws * p[keep]) ** 2) / (draws * p[keep])).sum() < scipy.stats.chi2.ppf(
        0.999, keep.sum() - 1
    )


def test_sample_with_logprob_greedy_and_seeded():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    ids, logp = sample_with_logprob(logits, SamplingConfig(temperature=0, top_k=3))
    assert torch.equal(ids, logits.argmax(-1))
    ref = logits.log_softmax(-1).gather(-1, ids[:, None]).squeeze(-1)
    assert torch.allclose(logp, ref, atol=1e-6)
    cfg = SamplingConfig(temperature=1.0, top_k=3)
    a = sample_with_logprob(logits, cfg, torch.Generator().manual_seed(5))
    b = sample_with_logprob(logits, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
