"""VectorQuantizer: nearest code, straight-through, EMA formula, k-means init, dead-code restarts."""

import torch

from drivewm.tokenizers import vq as vq_mod
from drivewm.tokenizers.quantizer import QuantizerConfig, code_usage_logs
from drivewm.tokenizers.vq import VectorQuantizer, nearest_code


def _vq(**kw) -> VectorQuantizer:
    base = dict(codebook_size=16, kmeans_init=False, dead_threshold=0.0)
    base.update(kw)
    return VectorQuantizer(QuantizerConfig(**base), dim=8)


def test_nearest_code_matches_brute_force_with_chunking(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(300, 8, generator=g), torch.randn(37, 8, generator=g)
    brute = torch.cdist(x, c).argmin(1)
    assert torch.equal(nearest_code(x, c), brute)
    monkeypatch.setattr(vq_mod, "_DIST_ELEMS", 37 * 7)  # chunks of 7 rows, a ragged last one
    assert torch.equal(nearest_code(x, c), brute)


def test_quantized_is_nearest_code_and_decodes_from_indices():
    torch.manual_seed(0)
    q = _vq().eval()
    x = torch.randn(4, 5, 8)
    out = q(x)
    assert out.indices.shape == (4, 5)
    brute = torch.cdist(x.reshape(-1, 8), q.embed).argmin(1).reshape(4, 5)
    assert torch.equal(out.indices, brute)
    assert torch.allclose(q.indices_to_codes(out.indices), out.quantized)


def test_straight_through_gradient_reaches_input():
    torch.manual_seed(0)
    q = _vq(beta=0.0).eval()
    x = torch.randn(10, 8, requires_grad=True)
    w = torch.randn(10, 8)
    (q(x).quantized * w).sum().backward()
    assert torch.allclose(x.grad, w)  # identity gradient through the rounding


def test_commitment_and_codebook_losses():
    torch.manual_seed(0)
    q = _vq(ema=False, beta=0.25).eval()
    x = torch.randn(10, 8, requires_grad=True)
    out = q(x)
    mse = ((x - q.embed[out.indices]) ** 2).mean()
    assert torch.allclose(out.loss, 1.25 * mse)
    out.loss.backward()
    assert q.embed.grad is not None and q.embed.grad.abs().sum() > 0  # codebook learned by the loss
    assert x.grad.abs().sum() > 0


def test_ema_update_matches_hand_computed_formula():
    q = VectorQuantizer(QuantizerConfig(codebook_size=2, decay=0.5, eps=0.0, kmeans_init=False,
                                        dead_threshold=0.0, recent_size=8), dim=1)
    q.embed.copy_(torch.tensor([[0.0], [10.0]]))
    q.embed_sum.copy_(q.embed)
    q.train()(torch.tensor([[1.0], [2.0], [9.0]]))
    # counts [2, 1], sums [3, 9]: N = .5*1 + .5*[2, 1] = [1.5, 1]; m = .5*[0, 10] + .5*[3, 9] = [1.5, 9.5]
    assert torch.allclose(q.cluster_size, torch.tensor([1.5, 1.0]))
    assert torch.allclose(q.embed.squeeze(1), torch.tensor([1.0, 9.5]))
    # Laplace smoothing: N~ = (N + eps) / (sum N + K eps) * sum N
    q2 = VectorQuantizer(QuantizerConfig(codebook_size=2, decay=0.5, eps=0.5, kmeans_init=False,
                                         dead_threshold=0.0), dim=1)
    q2.embed.copy_(torch.tensor([[0.0], [10.0]]))
    q2.embed_sum.copy_(q2.embed)
    q2.train()(torch.tensor([[1.0], [2.0], [9.0]]))
    smoothed = (torch.tensor([1.5, 1.0]) + 0.5) / (2.5 + 1.0) * 2.5
    assert torch.allclose(q2.embed.squeeze(1), torch.tensor([1.5, 9.5]) / smoothed)


def test_dead_code_restarted_from_recent_inputs():
    q = VectorQuantizer(QuantizerConfig(codebook_size=3, kmeans_init=False, dead_threshold=1.0,
                                        decay=0.9, recent_size=64), dim=2)
    q.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
    q.embed_sum.copy_(q.embed)
    x = torch.tensor([[0.1, 0.0], [0.9, 1.0], [0.0, 0.1], [1.0, 0.9]])
    q.train()(x)  # code 2 gets nothing: usage 0.9 < 1 -> restarted
    new = q.embed[2]
    assert (new - torch.tensor([100.0, 100.0])).abs().max() > 50
    assert any(torch.allclose(new, xi) for xi in x)
    assert q.usage[2] >= 1.0


def test_kmeans_init_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres[:, None] + 0.1 * torch.randn(3, 50, 2)).reshape(-1, 2)
    q = VectorQuantizer(QuantizerConfig(codebook_size=3, kmeans_init=True, kmeans_iters=20, ema=False,
                                        dead_threshold=0.0), dim=2)
    q.train()(x[torch.randperm(150)])
    assert bool(q.initted)
    # every true centre has a code within 0.5
    d = torch.cdist(centres, q.embed.detach()).min(1).values
    assert d.max() < 0.5


def test_l2_normalised_codes_are_unit_and_match_cosine():
    torch.manual_seed(0)
    q = _vq(l2_normalize=True).eval()
    x = torch.randn(20, 8) * 5
    out = q(x)
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(16), atol=1e-5)
    cos = torch.nn.functional.normalize(x, dim=1) @ q.codebook.t()
    assert torch.equal(out.indices, cos.argmax(1))


def test_usage_logs():
    logs = code_usage_logs(torch.arange(8).repeat(3), 16)
    assert torch.isclose(logs["perplexity"], torch.tensor(8.0)) and logs["used"] == 0.5


def test_large_codebook_trains_without_error():
    torch.manual_seed(0)
    q = VectorQuantizer(QuantizerConfig(codebook_size=16384, kmeans_iters=2), dim=16).train()
    out = q(torch.randn(2048, 16))
    assert out.indices.max() < 16384 and torch.isfinite(out.loss)


def test_codes_chosen_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    q = VectorQuantizer(QuantizerConfig(codebook_size=512, kmeans_init=False, dead_threshold=0.0), dim=64).eval()
    x = torch.randn(1024, 64) / 8  # bf16 distances pick a different code for ~1% of these
    plain = q(x).indices
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        auto = q(x).indices
    assert torch.equal(plain, auto)


def test_rotation_trick_gradient_is_the_scaled_rotation_onto_the_code():
    # e = (2, 0) onto q = (0, 3): R rotates by +90 degrees, lambda = 3 / 2, and the input's gradient is lambda R^T g.
    e = torch.tensor([[2.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 3.0]])
    out = vq_mod.rotation_trick(e, q)
    assert torch.allclose(out, q, atol=1e-6)
    (out * torch.tensor([[1.0, 0.0]])).sum().backward()
    assert torch.allclose(e.grad, torch.tensor([[0.0, -1.5]]), atol=1e-5)
    # In any dimension: a gradient along the code reaches the input along the input, norms scaled by lambda.
    g = torch.Generator().manual_seed(0)
    e, q = torch.randn(6, 8, generator=g).requires_grad_(), torch.randn(6, 8, generator=g)
    q_hat = q / q.norm(dim=1, keepdim=True)
    (vq_mod.rotation_trick(e, q) * q_hat).sum().backward()
    lam = q.norm(dim=1, keepdim=True) / e.detach().norm(dim=1, keepdim=True)
    assert torch.allclose(e.grad, lam * e.detach() / e.detach().norm(dim=1, keepdim=True), atol=1e-5)


def test_rotation_trick_option_keeps_codes_and_changes_only_the_gradient():
    torch.manual_seed(0)
    plain, rot = _vq(beta=0.0).eval(), _vq(beta=0.0, rotation_trick=True).eval()
    rot.load_state_dict(plain.state_dict())
    x = torch.randn(10, 8, requires_grad=True)
    out = rot(x)
    assert torch.equal(out.indices, plain(x).indices)
    assert torch.allclose(out.quantized, rot.indices_to_codes(out.indices), atol=1e-6)
    w = torch.randn(10, 8)
    (out.quantized * w).sum().backward()
    assert not torch.allclose(x.grad, w)  # not the straight-through copy
    lam = rot.embed[out.indices].norm(dim=1) / x.detach().norm(dim=1)
    assert torch.allclose(x.grad.norm(dim=1), lam * w.norm(dim=1), rtol=1e-4)  # a rotation keeps the norm
