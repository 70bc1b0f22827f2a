"""Sparse 3-D convolution in plain PyTorch: spconv's ``SubMConv3d`` and ``SparseConv3d`` without the dependency.

A sparse voxel tensor is a set of active sites (rows) with coordinates [N, 4] (batch, d0, d1, d2) and features
[N, C]; nothing is stored for the inactive sites of the grid. A convolution runs through a *rulebook*: for
every output row and kernel position, the input row it reads (spconv's indice pairs, here as a neighbour table
[N_out, K]). The output is gather the neighbours' rows -> one matmul with the weight [K * C_in, C_out]
(a missing neighbour reads a zero row), chunk by chunk; no scatter-add is needed in the forward pass, and the
backward pass gathers through the transposed table. Work and memory scale with the active sites, not the grid.

- **Submanifold** conv (``subm=True``, stride 1, "same" padding): the output sites are the input sites, so
  the active set never grows. Equal to a dense conv3d of the zero-filled grid read at the active sites.
- **Strided sparse** conv: the output sites are every output position whose receptive field holds an active
  input (a max-pool of the activity grid). Equal to a dense strided conv3d read at those sites.

Rows are kept sorted by the linearised key ``((b * D0 + d0) * D1 + d1) * D2 + d2``; a neighbour's row is
found from its key in a dense key -> row table on grids up to ``DENSE_INDEX_LIMIT`` sites, else by
``searchsorted`` on the sorted keys. Subm convs of one resolution share their rulebook through a
``RulebookCache`` (spconv's ``indice_key``).

Backward is written out (``GatherConv``) so that, as in spconv, only the input features, the weight and the
rulebook are kept for it; autograd through the gathers would keep the gathered [N, K * C_in] matrix of every
layer (K times the feature memory).

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
    """Neighbour tables of a sparse conv (spconv's indice pairs, as tables). ``gather[o, k]``: the input row that
    kernel position k of output row o reads; ``scatter[i, k]``: the output row that reads input row i at k
    (None for a subm conv: there it is ``gather`` with the kernel flipped). A missing neighbour holds the row
    count, which indexes an appended zero row."""

    gather: Tensor
    """int32 [N_out, K]."""
    scatter: Tensor | None
    """int32 [N_in, K], or None (subm)."""
    n_in: int
    out_coords: Tensor
    out_shape: Triple

    @property
    def pairs(self) -> int:
        """(input, output) pairs: the multiply-adds per pair of channels."""
        return int((self.gather < self.n_in).sum())


DENSE_INDEX_LIMIT = 1 << 24
"""Grids (batch x sites) up to this size find a site's row in a dense table of rows; larger ones by binary search
over the sorted keys (a dense table costs 8 bytes per grid site)."""


class SiteIndex:
    """Row of a site from its key: a dense table of rows (small grids) or ``searchsorted`` on the sorted keys."""

    def __init__(self, keys: Tensor, size: int) -> None:
        self.keys, self.n = keys, keys.numel()
        self.table = None
        if size <= DENSE_INDEX_LIMIT:
            self.table = torch.full((size,), -1, dtype=torch.long, device=keys.device)
            self.table[keys] = torch.arange(self.n, device=keys.device)

    def rows(self, query: Tensor) -> Tensor:
        """Row of each key of ``query`` (keys inside the grid); -1 where no site is."""
        if self.table is not None:
            return self.table[query]
        if self.n == 0:
            return torch.full_like(query, -1)
        pos = torch.searchsorted(self.keys, query).clamp_max(self.n - 1)
        return torch.where(self.keys[pos] == query, pos, -1)


def _positions(kernel: Triple) -> list[Triple]:
    """Kernel positions in the row-major order of a conv weight's (k0, k1, k2) dims."""
    return list(itertools.product(*(range(k) for k in kernel)))


def _axis_outputs(coords: Tensor, kernel: Triple, stride: Triple, padding: Triple, out_shape: Triple):
    """Per axis a and kernel position t: (o, valid) for every input row, where output o = (c + p - t) / s reads
    the input c at t; valid where the division is exact and o lies in the output grid."""
    out = []
    for a in range(3):
        c = coords[:, 1 + a]
        per_t = []
        for t in range(kernel[a]):
            num = c + (padding[a] - t)
            if stride[a] == 1:
                o, ok = num, (num >= 0) & (num < out_shape[a])
            else:
                o = torch.div(num, stride[a], rounding_mode="floor")
                ok = (num == o * stride[a]) & (o >= 0) & (o < out_shape[a])
            per_t.append((o, ok))
        out.append(per_t)
    return out


def _grid_size(batch: int, shape: Triple) -> int:
    return batch * shape[0] * shape[1] * shape[2]


def submanifold_rulebook(vox: SparseVoxels, kernel: Triple) -> Rulebook:
    """Tables of a stride-1 conv with "same" padding whose outputs are the input sites."""
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"submanifold conv needs an odd kernel, got {kernel}")
    coords, shape = vox.coords, vox.shape
    n, keys = coords.shape[0], vox.keys
    index = SiteIndex(keys, _grid_size(vox.batch_size, shape))
    step = (shape[1] * shape[2], shape[2], 1)
    half = tuple(k // 2 for k in kernel)
    # Position t of output o reads the input o + t - half: inside the grid where o' = o + t - half is, i.e. where
    # _axis_outputs(padding = half) at position 2 * half - t is valid.
    inside = _axis_outputs(coords, kernel, (1, 1, 1), half, shape)
    positions = _positions(kernel)
    gather = torch.full((n, len(positions)), n, dtype=torch.int32, device=coords.device)
    for k, ts in enumerate(positions):
        ok = inside[0][kernel[0] - 1 - ts[0]][1] & inside[1][kernel[1] - 1 - ts[1]][1] & inside[2][kernel[2] - 1 - ts[2]][1]
        shift = sum((t - h) * s for t, h, s in zip(ts, half, step))
        rows = index.rows(torch.where(ok, keys + shift, 0))
        gather[:, k] = torch.where(ok & (rows >= 0), rows, n).to(torch.int32)
    return Rulebook(gather, None, n, coords, shape)


def strided_rulebook(vox: SparseVoxels, kernel: Triple, stride: Triple, padding: Triple) -> Rulebook:
    """Tables of a (strided) sparse conv: output sites are the output positions reached by an active input."""
    coords, shape = vox.coords, vox.shape
    out_shape = tuple((d + 2 * p - k) // s + 1 for d, k, s, p in zip(shape, kernel, stride, padding))
    if min(out_shape) < 1:
        raise ValueError(f"sparse conv: kernel {kernel} does not fit the grid {shape} with padding {padding}")
    n = coords.shape[0]
    axes = _axis_outputs(coords, kernel, stride, padding, out_shape)
    step = (out_shape[1] * out_shape[2], out_shape[2], 1)
    base = coords[:, 0] * (out_shape[0] * step[0])
    cand = []  # per kernel position: (valid [N], output key [N])
    for ts in _positions(kernel):
        valid = axes[0][ts[0]][1] & axes[1][ts[1]][1] & axes[2][ts[2]][1]
        cand.append((valid, base + sum(axes[a][t][0] * step[a] for a, t in enumerate(ts))))
    out_keys = torch.unique(torch.cat([key[valid] for valid, key in cand]))  # sorted
    n_out = out_keys.numel()
    index = SiteIndex(out_keys, _grid_size(vox.batch_size, out_shape))
    gather = torch.full((n_out, len(cand)), n, dtype=torch.int32, device=coords.device)
    scatter = torch.full((n, len(cand)), n_out, dtype=torch.int32, device=coords.device)
    rows = torch.arange(n, dtype=torch.int32, device=coords.device)
    for k, (valid, key) in enumerate(cand):
        out_rows = index.rows(torch.where(valid, key, 0))
        scatter[:, k] = torch.where(valid, out_rows, n_out).to(torch.int32)
        gather[out_rows[valid], k] = rows[valid]
    return Rulebook(gather, scatter, n, unravel_keys(out_keys, out_shape), out_shape)


def unravel_keys(keys: Tensor, shape: Triple) -> Tensor:
    """The inverse of ``linear_keys``: int64 [N] -> [N, 4] (b, d0, d1, d2)."""
    d2 = keys % shape[2]
    r = keys // shape[2]
    d1 = r % shape[1]
    r = r // shape[1]
    return torch.stack([r // shape[0], r % shape[0], d1, d2], 1)


CHUNK_ELEMENTS = 1 << 18
"""Size of the gathered [rows, K * C] block multiplied at once: small enough to stay in cache (on CPU a block
of this size runs about twice as fast as one of 8x it) and to bound the transient memory."""


def _chunk_rows(table: Tensor, width: int) -> int:
    return max(1, CHUNK_ELEMENTS // (table.shape[1] * width))


def _gather_mm(x: Tensor, table: Tensor, w: Tensor) -> Tensor:
    """out[o] = concat_k x[table[o, k]] @ w, a missing neighbour (index len(x)) reading zeros; w [K * C, C_out]."""
    pad = torch.cat([x, x.new_zeros(1, x.shape[1])])
    out = x.new_empty(table.shape[0], w.shape[1])
    rows = _chunk_rows(table, x.shape[1])
    for r in range(0, table.shape[0], rows):
        t = table[r:r + rows]
        out[r:r + rows] = pad.index_select(0, t.reshape(-1)).view(t.shape[0], -1) @ w
    return out


def _gather_outer(x: Tensor, table: Tensor, g: Tensor) -> Tensor:
    """Sum over o of concat_k x[table[o, k]] (outer) g[o]: [K * C, C_out], the weight gradient."""
    pad = torch.cat([x, x.new_zeros(1, x.shape[1])])
    acc = x.new_zeros(table.shape[1] * x.shape[1], g.shape[1])
    rows = _chunk_rows(table, x.shape[1])
    for r in range(0, table.shape[0], rows):
        t = table[r:r + rows]
        acc.addmm_(pad.index_select(0, t.reshape(-1)).view(t.shape[0], -1).T, g[r:r + rows])
    return acc


class GatherConv(torch.autograd.Function):
    """out[o] = sum_k feats[gather[o, k]] @ weight[k]; keeps feats, weight and the tables only for backward (the
    gathered rows are rebuilt chunk by chunk), as spconv keeps its features and indice pairs."""

    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, gather: Tensor, scatter: Tensor | None) -> Tensor:
        k, cin, cout = weight.shape
        out = _gather_mm(feats, gather, weight.reshape(k * cin, cout))
        ctx.save_for_backward(feats, weight, gather, scatter)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        feats, weight, gather, scatter = ctx.saved_tensors
        k, cin, cout = weight.shape
        grad = grad.contiguous()
        gx = gw = None
        if ctx.needs_input_grad[0]:
            # subm: output o reads input i at position t exactly when i reads o at the mirrored position
            scatter = gather.flip(1) if scatter is None else scatter
            gx = _gather_mm(grad, scatter, weight.transpose(1, 2).reshape(k * cout, cin))
        if ctx.needs_input_grad[1]:
            gw = _gather_outer(feats, gather, grad).view(k, cin, cout)
        return gx, gw, None, None


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
        feats = GatherConv.apply(x.feats, w, rb.gather, rb.scatter)
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


__all__ = ["GatherConv", "Rulebook", "RulebookCache", "SparseBatchNorm", "SparseConv3d", "SiteIndex", "SparseVoxels",
           "linear_keys", "strided_rulebook", "submanifold_rulebook", "unravel_keys"]
