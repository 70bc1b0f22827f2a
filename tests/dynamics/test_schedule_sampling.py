import math

import numpy as np
import torch

from drivewm.dynamics.sampling import SamplingConfig, filter_logits, sample_logits
from drivewm.dynamics.schedule import corrupt_tokens, num_masked_after_step, num_masked_train




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


def test_decoding_schedule_counts():
    n, steps = 256, 8
    counts = [num_masked_after_step(s, steps, n) for s in range(steps)]
    assert counts == [int(math.floor(math.cos((s + 1) / steps * math.pi / 2) * n)) for s in range(steps)]
    assert counts[-1] == 0 and all(a >= b for a, b in zip(counts, counts[1:]))


def test_maskgit_decoder_masks_the_stated_counts(make_model, tokens, cond):
    model = make_model("maskgit").eval()
    seen = []
    original = model.frame_logits

    def recording(window, c, guidance, caches=None):
        seen.append(int((window[:, -1] == model.mask_id).sum(dim=(1, 2))[0]))
        return original(window, c, guidance, caches)

    model.frame_logits = recording
    steps, n = 5, 16
    out = model.rollout(tokens[:, :2], cond, 1, steps=steps, generator=torch.Generator().manual_seed(0))
    assert seen == [n] + [num_masked_after_step(s, steps, n) for s in range(steps - 1)]
    assert int(out.max()) < model.vocab_size  # no [MASK] left


def test_top_k_and_top_p_filters_match_numpy():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2)).squeeze(0).tolist()
    assert kept == [True, True, False, False, False]
    p = np.exp(logits.numpy()[0]) / np.exp(logits.numpy()[0]).sum()
    order = np.argsort(-p)
    before = np.cumsum(p[order]) - p[order]
    ref = np.zeros(5, bool)
    ref[order[before < 0.8]] = True
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).squeeze(0).tolist() == ref.tolist()


def test_sampling_greedy_and_seeded():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_logits(logits, SamplingConfig(temperature=0)), logits.argmax(-1))
    cfg = SamplingConfig(temperature=1.0, top_k=3)
    a = sample_logits(logits, cfg, torch.Generator().manual_seed(5))
    b = sample_logits(logits, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    top3 = logits.topk(3, -1).indices
    assert bool((top3 == a[:, None]).any(-1).all())
