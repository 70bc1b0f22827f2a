"""Sparse 3-D convolution in plain PyTorch: spconv's ``SubMConv3d`` and ``SparseConv3d`` without the dependency.

A sparse voxel tensor is a set of active sites (rows) with coordinates [N, 4] (batch, d0, d1, d2) and features
[N, C]; nothing is stored for the inactive sites of the grid. A convolution runs through a *rulebook*: for
every kernel offset, the (input row, output row) pairs that the offset links. The output is then, offset by
offset, gather the input rows -> matmul with that offset's weight -> index_add into the output rows (spconv's
gather-GEMM-scatter). The work and the memory are proportional to the pairs, not to the grid.

- **Submanifold** conv (``subm=True``, stride 1, "same" padding): the output sites are the input sites, so
  the active set never grows. Equal to a dense conv3d of the zero-filled grid read at the active sites.
- **Strided sparse** conv: the output sites are every output position whose receptive field holds an active
  input (a max-pool of the activity grid). Equal to a dense strided conv3d read at those sites.

The rulebook is built from linearised coordinates: the rows are kept sorted by their key
``((b * D0 + d0) * D1 + d1) * D2 + d2``, so a neighbour is found by ``searchsorted``. Subm convs of one
resolution share their rulebook through a ``RulebookCache`` (spconv's ``indice_key``).

Backward is written out (``GatherScatterConv``) so that, as in spconv, only the input features, the weight
and the rulebook are kept for it; autograd through the gathers would keep every gathered copy, one per
kernel offset (~the number of neighbours times the feature memory).

Weights have ``nn.Conv3d``'s layout [C_out, C_in, k0, k1, k2], so a dense and a sparse layer share a state dict.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

Triple = tuple[int, int, int]


def _triple(v: int | tuple[int, ...] | list[int]) -> Triple:
    t = (v, v, v) if isinstance(v, int) else tuple(int(a) for a in v)
    if len(t) != 3:
        raise ValueError(f"sparse conv: expected an int or three ints, got {v!r}")
    return t  # type: ignore[return-value]


def linear_keys(coords: Tensor, shape: Triple) -> Tensor:
    """[N, 4] (b, d0, d1, d2) -> int64 [N], row-major over (b, d0, d1, d2)."""
    c = coords.long()
    return ((c[:, 0] * shape[0] + c[:, 1]) * shape[1] + c[:, 2]) * shape[2] + c[:, 3]


@dataclass(frozen=True)
class SparseVoxels:
    """Active sites of a batch of 3-D grids: rows sorted by ``linear_keys``, no duplicates."""

    coords: Tensor
    """int64 [N, 4]: (batch, d0, d1, d2)."""
    feats: Tensor
    """[N, C] features of the rows."""
    shape: Triple
    """Grid size (D0, D1, D2)."""
    batch_size: int

    @classmethod
    def from_dense(cls, x: Tensor, active: Tensor) -> "SparseVoxels":
        """x [B, C, D0, D1, D2] read at active bool [B, D0, D1, D2]."""
        coords = active.nonzero()  # row-major order = sorted keys
        feats = x.permute(0, 2, 3, 4, 1)[active]
        return cls(coords, feats, tuple(active.shape[1:]), active.shape[0])

    @property
    def keys(self) -> Tensor:
        return linear_keys(self.coords, self.shape)

    def replace(self, feats: Tensor) -> "SparseVoxels":
        return SparseVoxels(self.coords, feats, self.shape, self.batch_size)

    def select(self, rows: Tensor) -> "SparseVoxels":
        """The subset of rows where bool ``rows`` [N] holds (the order, hence the sorting, is kept)."""
        return SparseVoxels(self.coords[rows], self.feats[rows], self.shape, self.batch_size)

    def active(self) -> Tensor:
        """bool [B, D0, D1, D2]."""
        out = torch.zeros(self.batch_size, *self.shape, dtype=torch.bool, device=self.coords.device)
        c = self.coords
        out[c[:, 0], c[:, 1], c[:, 2], c[:, 3]] = True
        return out

    def dense(self) -> Tensor:
        """[B, C, D0, D1, D2], zero off the active sites (spconv's ``.dense()``)."""
        c = self.coords
        out = self.feats.new_zeros(self.batch_size, *self.shape, self.feats.shape[1])
        out = out.index_put((c[:, 0], c[:, 1], c[:, 2], c[:, 3]), self.feats)
        return out.permute(0, 4, 1, 2, 3)


@dataclass(frozen=True)
class Rulebook:
    """Pairs per kernel offset, concatenated in offset order: ``counts[k]`` pairs for offset k."""

    in_rows: Tensor
    out_rows: Tensor
    counts: tuple[int, ...]
    out_coords: Tensor
    out_shape: Triple


def _offsets(kernel: Triple, device) -> Tensor:
    """[K, 3] kernel positions in the row-major order of a conv weight's (k0, k1, k2) dims."""
    return torch.tensor(list(itertools.product(*(range(k) for k in kernel))), dtype=torch.long, device=device)


def _lookup(sorted_keys: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Row of each query key in ``sorted_keys`` and whether it is there."""
    pos = torch.searchsorted(sorted_keys, query).clamp_max(max(sorted_keys.numel() - 1, 0))
    found = sorted_keys[pos] == query if sorted_keys.numel() else torch.zeros_like(query, dtype=torch.bool)
    return pos, found


def _index(t: Tensor) -> Tensor:
    return t.to(torch.int32)  # as spconv's indice pairs: half the memory of int64


def submanifold_rulebook(vox: SparseVoxels, kernel: Triple) -> Rulebook:
    """Pairs of a stride-1 conv with "same" padding whose outputs are the input sites."""
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"submanifold conv needs an odd kernel, got {kernel}")
    coords, shape = vox.coords, vox.shape
    keys = vox.keys
    bounds = coords.new_tensor(shape)
    pad = coords.new_tensor([k // 2 for k in kernel])
    ins, outs, counts = [], [], []
    rows = torch.arange(coords.shape[0], device=coords.device)
    for t in _offsets(kernel, coords.device):
        nb = coords[:, 1:] + (t - pad)  # the input a kernel position reads for each output site
        inside = ((nb >= 0) & (nb < bounds)).all(1)
        q = linear_keys(torch.cat([coords[:, :1], nb], 1), shape)
        pos, found = _lookup(keys, q)
        ok = inside & found
        ins.append(pos[ok])
        outs.append(rows[ok])
        counts.append(int(ok.sum()))
    return Rulebook(_index(torch.cat(ins)), _index(torch.cat(outs)), tuple(counts), coords, shape)


def strided_rulebook(vox: SparseVoxels, kernel: Triple, stride: Triple, padding: Triple) -> Rulebook:
    """Pairs of a (strided) sparse conv: output sites are the output positions reached by an active input."""
    coords, shape = vox.coords, vox.shape
    out_shape = tuple((d + 2 * p - k) // s + 1 for d, k, s, p in zip(shape, kernel, stride, padding))
    if min(out_shape) < 1:
        raise ValueError(f"sparse conv: kernel {kernel} does not fit the grid {shape} with padding {padding}")
    s, p = coords.new_tensor(stride), coords.new_tensor(padding)
    bounds = coords.new_tensor(out_shape)
    cand = []  # per kernel position: (valid [N], output coords [N, 3]); output o reads input o * s + t - p
    for t in _offsets(kernel, coords.device):
        num = coords[:, 1:] + p - t
        o = torch.div(num, s, rounding_mode="floor")
        valid = ((num % s) == 0).all(1) & ((o >= 0) & (o < bounds)).all(1)
        cand.append((valid, o))
    batch = coords[:, :1]
    all_out = torch.cat([torch.cat([batch[v], o[v]], 1) for v, o in cand])
    out_keys = torch.unique(linear_keys(all_out, out_shape))  # sorted
    out_coords = unravel_keys(out_keys, out_shape)
    rows = torch.arange(coords.shape[0], device=coords.device)
    ins, outs, counts = [], [], []
    for valid, o in cand:
        pos, _ = _lookup(out_keys, linear_keys(torch.cat([batch[valid], o[valid]], 1), out_shape))
        ins.append(rows[valid])
        outs.append(pos)
        counts.append(int(valid.sum()))
    return Rulebook(_index(torch.cat(ins)), _index(torch.cat(outs)), tuple(counts), out_coords, out_shape)


def unravel_keys(keys: Tensor, shape: Triple) -> Tensor:
    """The inverse of ``linear_keys``: int64 [N] -> [N, 4] (b, d0, d1, d2)."""
    d2 = keys % shape[2]
    r = keys // shape[2]
    d1 = r % shape[1]
    r = r // shape[1]
    return torch.stack([r // shape[0], r % shape[0], d1, d2], 1)


class GatherScatterConv(torch.autograd.Function):
    """out[o] = sum over pairs (i, o) of offset k of feats[i] @ weight[k]; saves feats, weight and the pairs only."""

    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, in_rows: Tensor, out_rows: Tensor, counts: tuple[int, ...],
                n_out: int) -> Tensor:
        out = feats.new_zeros(n_out, weight.shape[2])
        start = 0
        for k, n in enumerate(counts):
            if n:
                i, o = in_rows[start:start + n], out_rows[start:start + n]
                out.index_add_(0, o, feats.index_select(0, i) @ weight[k])  # gather -> GEMM -> scatter
            start += n
        ctx.save_for_backward(feats, weight, in_rows, out_rows)
        ctx.counts = counts
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        feats, weight, in_rows, out_rows = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[:2]
        gx = torch.zeros_like(feats) if want_x else None
        gw = torch.zeros_like(weight) if want_w else None
        start = 0
        for k, n in enumerate(ctx.counts):
            if n:
                i, o = in_rows[start:start + n], out_rows[start:start + n]
                g = grad.index_select(0, o)
                if want_x:
                    gx.index_add_(0, i, g @ weight[k].T)
                if want_w:
                    gw[k] = feats.index_select(0, i).T @ g
            start += n
        return gx, gw, None, None, None, None


RulebookCache = dict[str, Rulebook]
"""Rulebooks by ``indice_key``, shared by the subm convs of one resolution within one forward pass."""


class SparseConv3d(nn.Module):
    """spconv's ``SubMConv3d`` (``subm=True``) or ``SparseConv3d``, bias-free as OpenPCDet uses them."""

    def __init__(self, cin: int, cout: int, kernel=3, *, stride=1, padding=0, subm: bool = False,
                 indice_key: str | None = None) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = _triple(kernel), _triple(stride), _triple(padding)
        if subm and self.stride != (1, 1, 1):
            raise ValueError("submanifold conv has stride 1")
        self.subm, self.indice_key = subm, indice_key
        self.weight = nn.Parameter(torch.empty(cout, cin, *self.kernel))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv3d's initialisation

    def rulebook(self, x: SparseVoxels, cache: RulebookCache | None) -> Rulebook:
        if self.subm and cache is not None and self.indice_key in cache:
            return cache[self.indice_key]
        rb = submanifold_rulebook(x, self.kernel) if self.subm else strided_rulebook(x, self.kernel, self.stride, self.padding)
        if self.subm and cache is not None and self.indice_key is not None:
            cache[self.indice_key] = rb
        return rb

    def forward(self, x: SparseVoxels, cache: RulebookCache | None = None) -> SparseVoxels:
        rb = self.rulebook(x, cache)
        cout, cin = self.weight.shape[:2]
        w = self.weight.permute(2, 3, 4, 1, 0).reshape(-1, cin, cout)  # [K, C_in, C_out], K in offset order
        feats = GatherScatterConv.apply(x.feats, w, rb.in_rows, rb.out_rows, rb.counts, rb.out_coords.shape[0])
        return SparseVoxels(rb.out_coords, feats, rb.out_shape, x.batch_size)


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the feature rows of the active sites (spconv's BN); one row uses the running statistics
    (a single row has no batch variance) and no row gives no row."""

    def forward(self, rows: Tensor) -> Tensor:
        if rows.shape[0] == 0:
            return rows
        if rows.shape[0] < 2 and self.training:
            return F.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(rows)


__all__ = ["GatherScatterConv", "Rulebook", "RulebookCache", "SparseBatchNorm", "SparseConv3d", "SparseVoxels",
           "linear_keys", "strided_rulebook", "submanifold_rulebook", "unravel_keys"]
