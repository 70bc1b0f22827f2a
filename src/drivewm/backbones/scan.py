"""Selective scan of Mamba (Gu & Dao, arXiv 2312.00752): parallel chunked form, step form, sequential reference.

Recurrence per channel e and state n (zero-order hold on A, Euler on B, as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t,    y_t = C_t . h_t + D * x_t
Shapes: x, delta [B, L, E]; A [E, N] (negative); B, C [B, L, N]; D [E]; state h [B, E, N].

The parallel form is a first-order linear recurrence h_t = a_t h_{t-1} + u_t, solved per chunk with
a log-depth (Hillis-Steele) scan over the pair (a, u) -- only products of decays in (0, 1] and sums,
so it never exponentiates a positive number and stays stable in float32 -- then the state is carried
across chunks with a second scan over the chunk ends. Work is O(L log chunk). A custom backward runs
the same scan in reverse time (dL/dh_t = g_t + a_{t+1} dL/dh_{t+1}), so autograd stores only the
decays and the states instead of every scan level. Computation happens in float32 (float64 stays
float64); outputs return in the input dtype. With `mamba_ssm` installed and CUDA inputs, its fused
`selective_scan_fn` runs instead (same results within tolerance).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

try:  # optional fused CUDA kernel of the Mamba authors
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _fused_scan
except ImportError:  # the PyTorch path below is the reference implementation
    _fused_scan = None


def fused_available() -> bool:
    return _fused_scan is not None


def _hillis_steele(a: Tensor, u: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Inclusive scan of h_t = a_t h_{t-1} + u_t (h_{-1} = 0) along dim -> (prod of a up to t, h_t)."""
    a, u = a.clone(), u.clone()
    n = a.shape[dim]
    offset = 1
    while offset < n:
        a_hi, a_lo = a.narrow(dim, offset, n - offset), a.narrow(dim, 0, n - offset)
        u_hi, u_lo = u.narrow(dim, offset, n - offset), u.narrow(dim, 0, n - offset)
        new_u = u_hi + a_hi * u_lo  # compose (a_lo, u_lo) then (a_hi, u_hi); both read before writing
        new_a = a_hi * a_lo
        u_hi.copy_(new_u)
        a_hi.copy_(new_a)
        offset *= 2
    return a, u


def _linear_scan(a: Tensor, u: Tensor, h0: Tensor, chunk: int) -> Tensor:
    """All states h [B, L, ...] of h_t = a_t h_{t-1} + u_t from h0 [B, ...]; a, u [B, L, ...]."""
    b, length = a.shape[:2]
    rest = a.shape[2:]
    t = min(chunk, length)
    n_chunks = math.ceil(length / t)
    pad = n_chunks * t - length
    if pad:  # identity steps (a = 1, u = 0) fill the last chunk
        a = torch.cat([a, a.new_ones(b, pad, *rest)], 1)
        u = torch.cat([u, u.new_zeros(b, pad, *rest)], 1)
    a = a.reshape(b, n_chunks, t, *rest)
    u = u.reshape(b, n_chunks, t, *rest)
    a_cum, h = _hillis_steele(a, u, dim=2)  # within each chunk, from a zero state
    # carry: state entering chunk c is S_c, S_0 = h0, S_{c+1} = a_end_c S_c + h_end_c
    a_end, h_end = _hillis_steele(a_cum[:, :, -1], h[:, :, -1], dim=1)  # [B, n_chunks, ...]
    h0 = h0[:, None]
    entering = torch.cat([h0, h_end[:, :-1] + a_end[:, :-1] * h0], 1)  # [B, n_chunks, ...]
    h = h + a_cum * entering[:, :, None]
    return h.reshape(b, n_chunks * t, *rest)[:, :length]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, u: Tensor, h0: Tensor, chunk: int) -> Tensor:
        h = _linear_scan(a, u, h0, chunk)
        ctx.save_for_backward(a, h, h0)
        ctx.chunk = chunk
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        # total gradient g_t = grad_h_t + a_{t+1} g_{t+1}: the same recurrence in reverse time
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], 1)
        g = _linear_scan(a_next.flip(1), grad_h.flip(1), torch.zeros_like(h0), ctx.chunk).flip(1)
        h_prev = torch.cat([h0[:, None], h[:, :-1]], 1)
        return g * h_prev, g, a[:, 0] * g[:, 0], None


def linear_scan(a: Tensor, u: Tensor, h0: Tensor | None = None, *, chunk: int = 64) -> Tensor:
    """Differentiable states h [B, L, ...] of h_t = a_t h_{t-1} + u_t (a, u [B, L, ...], h0 [B, ...] or zeros)."""
    if chunk < 1:
        raise ValueError(f"scan chunk must be >= 1, got {chunk}")
    if h0 is None:
        h0 = a.new_zeros(a.shape[:1] + a.shape[2:])
    return _LinearScan.apply(a, u, h0, chunk)


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *,
                   h0: Tensor | None = None, chunk: int = 64, fused: bool | None = None) -> tuple[Tensor, Tensor]:
    """Parallel selective scan -> (y [B, L, E] in x's dtype, last state [B, E, N] in float32 or wider).

    fused: None = the mamba_ssm kernel when installed, on CUDA and starting from a zero state;
    False = always the PyTorch path; True = require the kernel.
    """
    if x.shape[1] == 0:
        raise ValueError("selective_scan needs at least one time step")
    use_fused = fused if fused is not None else (_fused_scan is not None and x.is_cuda and h0 is None)
    if use_fused:
        if _fused_scan is None or h0 is not None:
            raise ValueError("fused selective scan needs mamba_ssm installed and no initial state h0")
        y, last = _fused_scan(
            x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A.float().contiguous(),
            B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
            D=None if D is None else D.float(), return_last_state=True,
        )  # [B, E, L], [B, E, N]
        return y.transpose(1, 2).to(x.dtype), last
    cd = _compute_dtype(x)
    xf, df, Bf, Cf = x.to(cd), delta.to(cd), B.to(cd), C.to(cd)
    decay = torch.exp(df[..., None] * A.to(cd))  # [B, L, E, N], in (0, 1] since A < 0, delta > 0
    u = (df * xf)[..., None] * Bf[:, :, None, :]  # [B, L, E, N]
    h = linear_scan(decay, u, None if h0 is None else h0.to(cd), chunk=chunk)  # [B, L, E, N]
    y = torch.matmul(h, Cf[..., None]).squeeze(-1)  # C_t . h_t: [B, L, E]
    if D is not None:
        y = y + D.to(cd) * xf
    return y.to(x.dtype), h[:, -1]


def selective_scan_step(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                        h: Tensor) -> tuple[Tensor, Tensor]:
    """One recurrent step, O(1) in sequence length: x, delta [B, E]; B, C [B, N]; h [B, E, N] -> (y [B, E], h)."""
    cd = _compute_dtype(h)
    xf, df = x.to(cd), delta.to(cd)
    h = torch.exp(df[..., None] * A.to(cd)) * h + (df * xf)[..., None] * B.to(cd)[:, None, :]
    y = (h * C.to(cd)[:, None, :]).sum(-1)
    if D is not None:
        y = y + D.to(cd) * xf
    return y.to(x.dtype), h


def selective_scan_reference(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *,
                             h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Sequential recurrence, one step at a time: the ground truth of selective_scan (same signature)."""
    h = h0 if h0 is not None else x.new_zeros(x.shape[0], x.shape[2], A.shape[1], dtype=_compute_dtype(x))
    ys = []
    for t in range(x.shape[1]):
        y, h = selective_scan_step(x[:, t], delta[:, t], A, B[:, t], C[:, t], D, h)
        ys.append(y)
    return torch.stack(ys, 1), h
