"""Selective scan: chunked parallel form == sequential recurrence, gradients == finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.signal import lfilter

from drivewm.backbones import linear_scan, selective_scan, selective_scan_reference


def _inputs(b, length, e, n, *, dtype=torch.float32, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, e, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(b, length, e, generator=g, dtype=dtype)) * delta_scale
    A = -(torch.rand(e, n, generator=g, dtype=dtype) * 4 + 0.05)
    B = torch.randn(b, length, n, generator=g, dtype=dtype)
    C = torch.randn(b, length, n, generator=g, dtype=dtype)
    D = torch.randn(e, generator=g, dtype=dtype)
    h0 = torch.randn(b, e, n, generator=g, dtype=dtype)
    return x, delta, A, B, C, D, h0


@pytest.mark.parametrize("length,chunk,segment", [(1, 8, None), (5, 8, 2), (16, 16, None), (17, 16, 5), (63, 8, 64),
                                                  (200, 64, 37), (2049, 64, None), (2049, 64, 300)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_parallel_scan_equals_sequential_recurrence(length, chunk, segment, with_h0):
    x, delta, A, B, C, D, h0 = _inputs(2, length, 6, 4)
    h0 = h0 if with_h0 else None
    y, h = selective_scan(x, delta, A, B, C, D, h0=h0, chunk=chunk, segment=segment)
    y_ref, h_ref = selective_scan_reference(x, delta, A, B, C, D, h0=h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_long_memory_sequence_stays_accurate_in_float32():
    # tiny steps: decays ~ 1, the state integrates 4096 inputs across 64 chunk boundaries
    x, delta, A, B, C, D, _ = _inputs(1, 4096, 4, 4, delta_scale=1e-3, seed=1)
    y, h = selective_scan(x, delta, A, B, C, D, chunk=64)
    y_ref, h_ref = selective_scan_reference(x.double(), delta.double(), A.double(), B.double(), C.double(), D.double())
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    # huge steps: decays underflow to 0, nothing overflows
    x, delta, A, B, C, D, _ = _inputs(1, 300, 4, 4, delta_scale=1e4, seed=2)
    y, _ = selective_scan(x, delta, A, B, C, D, chunk=16)
    assert torch.isfinite(y).all()


def test_time_invariant_case_matches_scipy_lfilter():
    # constant delta, B, C: per state n an IIR filter y = c b d / (1 - exp(d a) z^-1) applied to x
    length, e, n = 50, 1, 3
    x = torch.randn(1, length, e, dtype=torch.float64)
    d = 0.3
    A = -torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    Bc = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    Cc = torch.tensor([0.3, 0.7, -1.1], dtype=torch.float64)
    y, _ = selective_scan(x, torch.full_like(x, d), A, Bc.expand(1, length, n), Cc.expand(1, length, n), chunk=8)
    ref = sum(
        lfilter([Cc[i].item() * Bc[i].item() * d], [1.0, -torch.exp(d * A[0, i]).item()], x[0, :, 0].numpy())
        for i in range(n)
    )
    assert torch.allclose(y[0, :, 0], torch.from_numpy(ref), atol=1e-10)


def test_gradients_match_finite_differences():
    x, delta, A, B, C, D, h0 = _inputs(1, 7, 2, 3, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (x, delta, A, B, C, D, h0)]

    for segment in (None, 3):  # one segment keeps its states; 3 + 3 + 1 recomputes them in backward
        def fn(x, delta, A, B, C, D, h0):
            return selective_scan(x, delta, A, B, C, D, h0=h0, chunk=2, segment=segment)  # chunks cross segment ends

        assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)
        assert torch.autograd.gradcheck(lambda *a: fn(*a, None), args[:-1], eps=1e-6, atol=1e-5)
    a = torch.rand(2, 9, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, u: linear_scan(a, u, chunk=4), (a, u), eps=1e-6, atol=1e-5)


def test_custom_backward_matches_autograd_through_the_recurrence():
    x, delta, A, B, C, D, h0 = _inputs(2, 100, 4, 4)
    w = torch.randn(2, 100, 4)
    grads = []
    for scan in (lambda *a: selective_scan(*a, chunk=16, segment=30), selective_scan_reference):
        args = [t.clone().requires_grad_() for t in (x, delta, A, B, C, D)]
        y, _ = scan(*args)
        (y * w).sum().backward()
        grads.append([t.grad for t in args])
    for g, g_ref in zip(*grads):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_low_precision_inputs_scan_in_float32():
    x, delta, A, B, C, D, _ = _inputs(1, 100, 4, 4)
    y16, h = selective_scan(x.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, chunk=16)
    assert y16.dtype == torch.bfloat16 and h.dtype == torch.float32
    y_ref, _ = selective_scan_reference(x.bfloat16().float(), delta.bfloat16().float(), A, B.bfloat16().float(),
                                        C.bfloat16().float(), D)
    torch.testing.assert_close(y16.float(), y_ref, atol=3e-2, rtol=1e-2)  # only the output rounding differs


def test_bad_chunk_is_rejected():
    x, delta, A, B, C, D, _ = _inputs(1, 4, 2, 2)
    with pytest.raises(ValueError, match="chunk"):
        selective_scan(x, delta, A, B, C, D, chunk=0)
