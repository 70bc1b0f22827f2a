"""RankMe, embedding spread, linear probes and codebook statistics against numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drivewm.metrics import CodebookMetric, EmbeddingStats, linear_probe, rankme


def ref_rankme(z: np.ndarray, eps: float = 1e-7) -> float:
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def test_rankme_reference_streaming_and_collapse():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 16, generator=g, dtype=torch.float64) * torch.linspace(0.1, 2, 16, dtype=torch.float64)
    assert rankme(z) == pytest.approx(ref_rankme(z.numpy()))
    stats = EmbeddingStats()
    for chunk in z.split(37):
        stats.update(chunk)
    r = stats.compute()
    assert r["rankme"] == pytest.approx(ref_rankme(z.numpy()), rel=1e-6)
    assert r["std_per_dim"] == pytest.approx(list(z.numpy().std(0, ddof=1)))
    assert 1 <= r["rankme"] <= 16
    collapsed = torch.randn(100, 1, generator=g) @ torch.randn(1, 16, generator=g)
    assert rankme(collapsed) == pytest.approx(1.0, abs=1e-3)
    iso = torch.randn(4000, 8, generator=g)
    assert rankme(iso) > 7.5
    const = EmbeddingStats()
    const.update(torch.ones(10, 2, 4))  # [B, N, D] pooled
    rc = const.compute()
    assert rc["std_min"] == 0 and rc["normalized_std"] == 0 and rc["samples"] == 20


def test_linear_probe_reference_and_tasks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, generator=g, dtype=torch.float64)
    y = x @ w + 0.5
    r = linear_probe(x[:300], y[:300], x[300:], y[300:], task="regression", ridge=0.0)
    assert r["r2"] == pytest.approx(1.0, abs=1e-9)
    # With ridge: same predictions as an independent numpy solve of the standardised problem.
    noisy = y + 0.5 * torch.randn(400, 2, generator=g, dtype=torch.float64)
    r = linear_probe(x[:300], noisy[:300], x[300:], noisy[300:], task="regression", ridge=0.1)
    xt = x[:300].numpy()
    mu, sd = xt.mean(0), xt.std(0, ddof=1)
    a = np.c_[(xt - mu) / sd, np.ones(300)]
    pen = 0.1 * 300 * np.eye(7)
    pen[-1, -1] = 0
    wr = np.linalg.solve(a.T @ a + pen, a.T @ noisy[:300].numpy())
    pred = np.c_[(x[300:].numpy() - mu) / sd, np.ones(100)] @ wr
    yt = noisy[300:].numpy()
    r2 = np.mean(1 - ((yt - pred) ** 2).sum(0) / ((yt - yt.mean(0)) ** 2).sum(0))
    assert r["r2"] == pytest.approx(r2)
    labels = (x[:, 0] + x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()  # 4 linearly separable-ish classes
    acc = linear_probe(x[:300], labels[:300], x[300:], labels[300:])["accuracy"]
    chance = linear_probe(x[:300], labels[:300][torch.randperm(300, generator=g)], x[300:], labels[300:])["accuracy"]
    assert acc > 0.85 and chance < 0.5
    seg = linear_probe(x[:300], labels[:300], x[300:], labels[300:], task="segmentation")
    assert 0.6 < seg["miou"] <= acc
    with pytest.raises(ValueError, match="test_x has 3 features"):
        linear_probe(x, labels, x[:, :3], labels)
    with pytest.raises(ValueError, match="integer class ids"):
        linear_probe(x, labels.double(), x, labels)


def test_codebook_metric_reference_split_and_bad_input():
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 12, (5, 4, 3), generator=g)  # 5 frames of 4x3 tokens, vocab 16
    whole, split = CodebookMetric(vocab_size=16), CodebookMetric(vocab_size=16)
    whole.update(codes)
    split.update(codes[:2])
    split.update(codes[2:])
    r = whole.compute()
    assert r == split.compute()
    counts = np.bincount(codes.numpy().ravel(), minlength=16)
    p = counts[counts > 0] / counts.sum()
    h = -np.sum(p * np.log(p))
    assert r["usage"] == pytest.approx((counts > 0).mean())
    assert r["perplexity"] == pytest.approx(math.exp(h))
    assert r["tokens_per_frame"] == 12 and r["frames"] == 5
    assert r["bits_per_frame"] == pytest.approx(12 * 4)
    assert r["entropy_bits_per_frame"] == pytest.approx(12 * h / math.log(2))
    uniform = CodebookMetric(vocab_size=8, frame_ndim=1)
    uniform.update(torch.arange(8).repeat(3, 1))
    ru = uniform.compute()
    assert ru["perplexity"] == pytest.approx(8) and ru["usage"] == 1.0
    with pytest.raises(ValueError, match="codes has ids"):
        whole.update(torch.tensor([[16]]))
    with pytest.raises(ValueError, match="integer code ids"):
        whole.update(torch.zeros(2, 2))
