"""Selective scan of Mamba (Gu & Dao, arXiv 2312.00752): parallel chunked form, step form, sequential reference.

Recurrence per channel e and state n (zero-order hold on A, Euler on B, as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t,    y_t = C_t . h_t + D * x_t
Shapes: x, delta [B, L, E]; A [E, N] (negative); B, C [B, L, N]; D [E]; state h [B, E, N].

The parallel form is a first-order linear recurrence h_t = a_t h_{t-1} + u_t solved in chunks: all
chunks advance together from a zero state (chunk steps over [B, L / chunk, E, N] slices), the state
entering each chunk is carried across chunk ends (L / chunk small steps), and each chunk adds its
entering state times the cumulative product of its decays. Only products of decays in (0, 1] and sums
appear -- nothing exponentiates a positive number -- so float32 stays stable at any length, and the
work is O(L) with chunk + L / chunk sequential launches (chunk ~ sqrt(L) balances them). A custom backward runs
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


def _linear_scan(a: Tensor, u: Tensor, h0: Tensor | None, chunk: int, reverse: bool = False) -> Tensor:
    """All states h [B, L, ...] of h_t = a_t h_{t-1} + u_t from h0 [B, ...] (None = zeros); a, u [B, L, ...].

    reverse=True runs time backwards: h_t = a_t h_{t+1} + u_t, h0 entering after the last step.
    """
    b, length = a.shape[:2]
    rest = a.shape[2:]
    t = min(chunk, length)
    n_chunks = math.ceil(length / t)
    pad = n_chunks * t - length
    if pad:  # identity steps (a = 1, u = 0) fill the last chunk; they add nothing in either direction
        a = torch.cat([a, a.new_ones(b, pad, *rest)], 1)
        u = torch.cat([u, u.new_zeros(b, pad, *rest)], 1)
    a = a.reshape(b, n_chunks, t, *rest)
    u = u.reshape(b, n_chunks, t, *rest)
    carry = n_chunks > 1 or h0 is not None
    order = range(t - 1, -1, -1) if reverse else range(t)
    # 1) every chunk from a zero state, all chunks at once: t steps over [B, n_chunks, ...] slices, and
    #    (when a state must be carried in) the product of decays since the chunk start, all in (0, 1]
    h = torch.empty_like(u)
    a_cum = torch.empty_like(a) if carry else None
    prev = None
    for i in order:
        if prev is None:
            h[:, :, i] = u[:, :, i]
            if carry:
                a_cum[:, :, i] = a[:, :, i]
        else:
            torch.addcmul(u[:, :, i], a[:, :, i], h[:, :, prev], out=h[:, :, i])
            if carry:
                torch.mul(a[:, :, i], a_cum[:, :, prev], out=a_cum[:, :, i])
        prev = i
    if carry:
        # 2) entering state of each chunk: S_first = h0, S_next = (decay product of chunk) S + chunk's own end state
        last = 0 if reverse else t - 1
        state = h0 if h0 is not None else torch.zeros_like(h[:, 0, 0])
        entering = [state]
        for c in (range(n_chunks - 1, 0, -1) if reverse else range(n_chunks - 1)):
            state = torch.addcmul(h[:, c, last], a_cum[:, c, last], state)
            entering.append(state)
        if reverse:
            entering.reverse()
        # 3) h_t += (decay product from the chunk start to t) * S_chunk
        h.addcmul_(a_cum, torch.stack(entering, 1)[:, :, None])
    return h.reshape(b, n_chunks * t, *rest)[:, :length]


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, u: Tensor, h0: Tensor | None, chunk: int) -> Tensor:
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
        g = _linear_scan(a_next, grad_h, None, ctx.chunk, reverse=True)
        first = torch.zeros_like(h[:, :1]) if h0 is None else h0[:, None]
        h_prev = torch.cat([first, h[:, :-1]], 1)
        grad_h0 = None if h0 is None else a[:, 0] * g[:, 0]
        return g * h_prev, g, grad_h0, None


def linear_scan(a: Tensor, u: Tensor, h0: Tensor | None = None, *, chunk: int = 64) -> Tensor:
    """Differentiable states h [B, L, ...] of h_t = a_t h_{t-1} + u_t (a, u [B, L, ...], h0 [B, ...] or None = zeros)."""
    if chunk < 1:
        raise ValueError(f"scan chunk must be >= 1, got {chunk}")
    if a.shape != u.shape or a.dim() < 2:
        raise ValueError(f"linear_scan needs a and u of one shape [B, L, ...], got {tuple(a.shape)} and {tuple(u.shape)}")
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
