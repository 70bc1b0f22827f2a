"""Sparse 3-D convolution: equal to a dense conv3d of the zero-filled grid at the active sites, gradients included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drivewm.backbones import sparse_conv
from drivewm.backbones.sparse_conv import (GatherConv, SparseConv3d, SparseVoxels, strided_rulebook,
                                          submanifold_rulebook)


@pytest.fixture(params=["table", "search"], autouse=True)
def site_index(request, monkeypatch):
    """Every test runs with both ways of finding a site's row (and, with the search, rows gathered in small chunks)."""
    if request.param == "search":
        monkeypatch.setattr(sparse_conv, "DENSE_INDEX_LIMIT", 0)
        monkeypatch.setattr(sparse_conv, "CHUNK_ELEMENTS", 7 * 27 * 3)


def random_voxels(shape=(5, 6, 7), batch=2, cin=3, density=0.3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(batch, *shape, generator=g) < density
    x = torch.randn(batch, cin, *shape, generator=g, dtype=dtype) * active[:, None]
    return x, active


def dense_pair(conv: SparseConv3d, x: torch.Tensor, active: torch.Tensor):
    """The dense reference: conv3d of the zero-filled grid with the same weight, and the sparse result."""
    xs = x.clone().requires_grad_(True)
    sp = conv(SparseVoxels.from_dense(xs, active))
    xd = x.clone().requires_grad_(True)
    dense = F.conv3d(xd * active[:, None], conv.weight, stride=conv.stride, padding=conv.padding if not conv.subm else
                     tuple(k // 2 for k in conv.kernel))
    return xs, sp, xd, dense


@pytest.mark.parametrize("kernel", [3, (3, 1, 1), (1, 3, 5)])
def test_submanifold_conv_equals_the_dense_conv_at_the_active_sites(kernel):
    torch.manual_seed(0)
    conv = SparseConv3d(3, 4, kernel, subm=True)
    x, active = random_voxels()
    xs, sp, xd, dense = dense_pair(conv, x, active)
    assert torch.equal(sp.coords, active.nonzero())  # the active set does not grow
    # the rulebook's pairs: every active input inside the window of every active output
    window = F.conv3d(active[:, None].float(), torch.ones(1, 1, *conv.kernel), padding=tuple(k // 2 for k in conv.kernel))
    assert conv.rulebook(SparseVoxels.from_dense(x, active), None).pairs == int(window[:, 0][active].sum())
    ref = dense.permute(0, 2, 3, 4, 1)[active]
    assert torch.allclose(sp.feats, ref, atol=1e-5)
    # gradients through the same loss on the active sites: input features and the shared weight
    w = torch.randn_like(ref)
    gs_x, gs_w = torch.autograd.grad((sp.feats * w).sum(), (xs, conv.weight))
    gd_x, gd_w = torch.autograd.grad((ref * w).sum(), (xd, conv.weight))
    assert torch.allclose(gs_x, gd_x * active[:, None], atol=1e-5)
    assert torch.allclose(gs_w, gd_w, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (3, 2, (0, 1, 1)), ((3, 1, 1), (2, 1, 1), 0), (2, 2, 0)])
def test_strided_conv_equals_the_dense_conv_at_the_reached_sites(kernel, stride, padding):
    torch.manual_seed(1)
    conv = SparseConv3d(3, 5, kernel, stride=stride, padding=padding)
    x, active = random_voxels(density=0.15, seed=3)
    xs, sp, xd, dense = dense_pair(conv, x, active)
    # output sites: every output whose receptive field holds an active input (a max-pool of the activity)
    reached = F.max_pool3d(F.pad(active[:, None].float(), [p for p in reversed(conv.padding) for _ in (0, 1)]),
                           conv.kernel, conv.stride)[:, 0] > 0
    assert torch.equal(sp.active(), reached) and sp.shape == tuple(dense.shape[2:])
    assert torch.equal(sp.coords, reached.nonzero())  # rows stay sorted
    window = F.conv3d(active[:, None].float(), torch.ones(1, 1, *conv.kernel), stride=conv.stride, padding=conv.padding)
    assert conv.rulebook(SparseVoxels.from_dense(x, active), None).pairs == int(window[:, 0][reached].sum())
    ref = dense.permute(0, 2, 3, 4, 1)[reached]
    assert torch.allclose(sp.feats, ref, atol=1e-5)
    assert torch.allclose(sp.dense(), dense * reached[:, None], atol=1e-5)
    w = torch.randn_like(ref)
    gs_x, gs_w = torch.autograd.grad((sp.feats * w).sum(), (xs, conv.weight))
    gd_x, gd_w = torch.autograd.grad((ref * w).sum(), (xd, conv.weight))
    assert torch.allclose(gs_x, gd_x * active[:, None], atol=1e-5)
    assert torch.allclose(gs_w, gd_w, atol=1e-5)


@pytest.mark.parametrize("subm", [True, False])
def test_gather_conv_backward_passes_gradcheck(subm):
    x, active = random_voxels(shape=(3, 4, 4), batch=1, cin=2, density=0.5, dtype=torch.float64)
    vox = SparseVoxels.from_dense(x, active)
    rb = submanifold_rulebook(vox, (3, 3, 3)) if subm else strided_rulebook(vox, (3, 3, 3), (2, 2, 2), (1, 1, 1))
    feats = vox.feats.clone().requires_grad_(True)
    w = torch.randn(27, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, k: GatherConv.apply(f, k, rb.gather, rb.scatter), (feats, w))


def test_rows_of_other_samples_never_mix_and_empty_input_works():
    torch.manual_seed(0)
    conv = SparseConv3d(1, 1, 3, stride=2, padding=1)
    a = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    a[0, 0, 0, 0] = True  # sample 0 only; sample 1 empty
    x = torch.ones(2, 1, 4, 4, 4)
    out = conv(SparseVoxels.from_dense(x, a))
    assert (out.coords[:, 0] == 0).all() and out.coords.shape[0] == 1
    empty = conv(SparseVoxels.from_dense(x, torch.zeros_like(a)))
    assert empty.feats.shape == (0, 1) and empty.dense().shape == (2, 1, 2, 2, 2)
    sub = SparseConv3d(1, 1, 3, subm=True)(SparseVoxels.from_dense(x, torch.zeros_like(a)))
    assert sub.feats.shape == (0, 1)


def test_subm_convs_share_a_rulebook_by_indice_key():
    x, active = random_voxels()
    vox = SparseVoxels.from_dense(x, active)
    cache = {}
    a, b = SparseConv3d(3, 3, 3, subm=True, indice_key="k"), SparseConv3d(3, 3, 3, subm=True, indice_key="k")
    a(vox, cache)
    rb = cache["k"]
    b(vox, cache)
    assert cache["k"] is rb and len(cache) == 1
