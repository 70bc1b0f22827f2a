"""Selective scan of Mamba (Gu & Dao, arXiv 2312.00752): parallel chunked form, step form, sequential reference.

Recurrence per channel e and state n (zero-order hold on A, Euler on B, as in Mamba):
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t,    y_t = C_t . h_t + D * x_t
Shapes: x, delta [B, L, E]; A [E, N] (negative); B, C [B, L, N]; D [E]; state h [B, E, N].

The parallel form solves the first-order linear recurrence h_t = a_t h_{t-1} + u_t in chunks: all
chunks advance together from a zero state (chunk steps over [B, L / chunk, E, N] slices), the state
entering each chunk is carried across chunk ends (L / chunk small steps), and each chunk adds its
entering state times the running product of its decays. Only products of decays in (0, 1] and sums
appear -- nothing exponentiates a positive number -- so float32 stays stable at any length; work is
O(L) with chunk + L / chunk sequential launches (the chunk is capped at ceil(sqrt(L)) to balance them).

Like the fused kernel, the sequence is processed in time segments whose [l, E, N] states fit the
cache; a custom backward runs the same scan in reverse time (dL/dh_t = dL/dy_t C_t + a_{t+1} dL/dh_{t+1}),
recomputing a segment's states from the state saved at its start, so once a sequence spans several
segments training memory grows as O(L E), not O(L E N). Computation happens in float32 (float64 stays float64); outputs return in the input dtype.
With `mamba_ssm` installed and CUDA inputs starting from a zero state, its fused `selective_scan_fn`
runs instead (same recurrence; not exercised by the CPU test suite).
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
    t = min(chunk, math.ceil(math.sqrt(length)))  # balances t in-chunk steps against L / t carry steps
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


def _decays(delta, A):
    """exp(delta A) in a [B, l + 1, E, N] buffer whose last step is 0: [:, :-1] are the decays a_t,
    [:, 1:] the shifted a_{t+1} of the reverse scan, with no copy."""
    b, length, e = delta.shape
    buf = delta.new_empty(b, length + 1, e, A.shape[1])
    torch.mul(delta[..., None], A, out=buf[:, :length]).exp_()  # in (0, 1] since A < 0, delta > 0
    buf[:, length] = 0
    return buf


def _segment_states(x, delta, A, B, h0, chunk):
    """States h [B, l, E, N] and the decay buffer (see _decays) of one segment entered with state h0."""
    decays = _decays(delta, A)
    u = (delta * x)[..., None] * B[:, :, None, :]  # [B, l, E, N]
    return _linear_scan(decays[:, :-1], u, h0, chunk), decays


def _segment_backward(x, delta, A, B, C, D, h0, h, decays, grad_y, grad_last, chunk):
    """Gradients of one segment given dL/dy and dL/d(last state); returns them plus dL/dh0."""
    grad_h = grad_y[..., None] * C[:, :, None, :]  # direct dL/dh_t from y_t = C_t . h_t
    grad_h[:, -1] += grad_last
    # total dL/dh_t = grad_h_t + a_{t+1} dL/dh_{t+1}: the recurrence in reverse time; it is also dL/du_t
    g = _linear_scan(decays[:, 1:], grad_h, None, chunk, reverse=True)
    del grad_h
    decay = decays[:, :-1]
    g_log = torch.empty_like(g)  # dL/d(delta A)_t = g_t * h_{t-1} * a_t
    if h0 is None:
        g_log[:, 0] = 0
    else:
        torch.mul(g[:, 0], h0, out=g_log[:, 0])
    torch.mul(g[:, 1:], h[:, :-1], out=g_log[:, 1:])
    g_log.mul_(decay)
    grad_h0 = None if h0 is None else decay[:, 0] * g[:, 0]
    grad_A = torch.einsum("blen,ble->en", g_log, delta)
    grad_delta = (g_log * A).sum(-1)  # [B, l, E]
    del g_log
    g_b = torch.matmul(g, B[..., None]).squeeze(-1)  # sum_n g * B_t = dL/d(delta x): [B, l, E]
    grad_delta += g_b * x
    grad_x = g_b * delta
    grad_B = torch.einsum("blen,ble->bln", g, delta * x)
    grad_C = torch.einsum("blen,ble->bln", h, grad_y)
    grad_D = None
    if D is not None:
        grad_x += grad_y * D
        grad_D = (grad_y * x).sum((0, 1))
    return grad_x, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_h0


class _SelectiveScan(torch.autograd.Function):
    """Selective scan over time segments, like the fused kernel's SRAM chunks: each segment's [l, E, N]
    states stay cache-sized; one segment keeps its states for backward, several keep only the states at
    segment starts and recompute the rest in backward (memory O(L E) instead of O(L E N))."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, h0, chunk, segment):
        length = x.shape[1]
        bounds = [(s, min(s + segment, length)) for s in range(0, length, segment)]
        ys, starts, state, kept = [], [], h0, None
        for s, e in bounds:
            starts.append(state)
            h, _ = _segment_states(x[:, s:e], delta[:, s:e], A, B[:, s:e], state, chunk)
            ys.append(torch.matmul(h, C[:, s:e, :, None]).squeeze(-1))  # C_t . h_t: [B, l, E]
            state = h[:, -1].clone()  # a view would pin the whole segment's states
            kept = h if len(bounds) == 1 else None
        y = torch.cat(ys, 1)
        if D is not None:
            y = y + D * x
        ctx.save_for_backward(x, delta, A, B, C, D, kept)
        ctx.starts, ctx.bounds, ctx.chunk = starts, bounds, chunk
        return y, state

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, grad_last):
        x, delta, A, B, C, D, kept = ctx.saved_tensors
        grad_x, grad_delta = torch.empty_like(x), torch.empty_like(delta)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A = torch.zeros_like(A)
        grad_D = None if D is None else torch.zeros_like(D)
        carry = grad_last  # dL/d(state leaving the segment)
        for (s, e), h0 in zip(reversed(ctx.bounds), reversed(ctx.starts)):
            if kept is not None:
                h, decays = kept, _decays(delta, A)
            else:
                h, decays = _segment_states(x[:, s:e], delta[:, s:e], A, B[:, s:e], h0, ctx.chunk)
            gx, gdelta, gA, gB, gC, gD, carry = _segment_backward(
                x[:, s:e], delta[:, s:e], A, B[:, s:e], C[:, s:e], D, h0, h, decays, grad_y[:, s:e], carry, ctx.chunk)
            grad_x[:, s:e], grad_delta[:, s:e], grad_B[:, s:e], grad_C[:, s:e] = gx, gdelta, gB, gC
            grad_A += gA
            if D is not None:
                grad_D += gD
        return grad_x, grad_delta, grad_A, grad_B, grad_C, grad_D, carry, None, None


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *,
                   h0: Tensor | None = None, chunk: int = 64, segment: int | None = None,
                   fused: bool | None = None) -> tuple[Tensor, Tensor]:
    """Parallel selective scan -> (y [B, L, E] in x's dtype, last state [B, E, N] in float32 or wider).

    segment: time steps whose [B, l, E, N] states are materialised at once; None = about 2 MiB of
    states on CPU (cache-sized), 128 MiB on GPU. Sequences longer than one segment recompute states
    in backward instead of storing them.
    fused: None = the mamba_ssm kernel when installed, on CUDA and starting from a zero state;
    False = always the PyTorch path; True = require the kernel.
    """
    if x.shape[1] == 0:
        raise ValueError("selective_scan needs at least one time step")
    if chunk < 1:
        raise ValueError(f"scan chunk must be >= 1, got {chunk}")
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
    if segment is None:
        per_step = x.shape[0] * x.shape[2] * A.shape[1]
        segment = max(chunk, (2**25 if x.is_cuda else 2**19) // per_step)  # float32 elements per state tensor
    if segment < 1:
        raise ValueError(f"scan segment must be >= 1, got {segment}")
    y, last = _SelectiveScan.apply(x.to(cd), delta.to(cd), A.to(cd), B.to(cd), C.to(cd),
                                   None if D is None else D.to(cd), None if h0 is None else h0.to(cd), chunk, segment)
    return y.to(x.dtype), last


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
