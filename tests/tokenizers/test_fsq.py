"""FSQ: the grid round-trips, rounding is straight-through, codes stay on the grid."""

import math

import torch

from drivewm.tokenizers.fsq import FSQ
from drivewm.tokenizers.quantizer import QuantizerConfig


def test_indices_round_trip_the_whole_grid():
    f = FSQ(QuantizerConfig(kind="fsq", fsq_levels=[8, 5, 5, 5]), dim=4)
    assert f.codebook_size == 1000
    idx = torch.arange(1000)
    grid = f.indices_to_grid(idx)
    assert torch.equal(f.codes_to_indices(grid), idx)
    assert torch.unique(grid, dim=0).shape[0] == 1000
    # each channel takes exactly L values in [-1, 1]
    for ch, lv in enumerate([8, 5, 5, 5]):
        assert torch.unique(grid[:, ch]).numel() == lv
        assert grid[:, ch].abs().max() <= 1.0


def test_quantize_reaches_every_level_and_lands_on_grid():
    f = FSQ(QuantizerConfig(kind="fsq", fsq_levels=[8, 5, 5, 5]), dim=4)
    z = torch.linspace(-6, 6, 2001)[:, None].repeat(1, 4)
    codes = f.quantize(z)
    for ch, lv in enumerate([8, 5, 5, 5]):
        assert torch.unique(codes[:, ch]).numel() == lv
    assert torch.allclose(f.indices_to_grid(f.codes_to_indices(codes)), codes)


def test_forward_decodes_from_indices_and_passes_gradients():
    torch.manual_seed(0)
    f = FSQ(QuantizerConfig(kind="fsq", fsq_levels=[7, 5, 5]), dim=16)
    assert f.codebook_size == math.prod([7, 5, 5])
    x = torch.randn(3, 6, 16, requires_grad=True)
    out = f(x)
    assert out.indices.shape == (3, 6) and float(out.loss) == 0.0
    assert torch.allclose(f.indices_to_codes(out.indices), out.quantized, atol=1e-6)
    out.quantized.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_levels_of_two_round_trip_and_stay_finite():
    """L = 2 (offset 0.5 above half_l = 0.4995) once gave NaN from atanh, then a crash in the code-usage count."""
    f = FSQ(QuantizerConfig(kind="fsq", fsq_levels=[2, 5]), dim=2)
    idx = torch.arange(10)
    assert torch.equal(f.codes_to_indices(f.indices_to_grid(idx)), idx)
    z = torch.linspace(-6, 6, 4001)[:, None].repeat(1, 2)
    codes = f.quantize(z)
    assert bool(torch.isfinite(codes).all())
    assert torch.unique(codes[:, 0]).tolist() == [-1.0, 0.0] and torch.unique(codes[:, 1]).numel() == 5
    out = f(torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 3)
    assert bool(torch.isfinite(out.quantized).all()) and int(out.indices.max()) < 10
    assert torch.equal(f.codes_to_indices(f.indices_to_grid(out.indices)), out.indices)


def test_quantizes_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    f = FSQ(QuantizerConfig(kind="fsq", fsq_levels=[8, 8, 8, 5, 5, 5]), dim=32)
    x = torch.randn(4096, 32)
    plain = f(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = f(x)
    assert torch.equal(mixed.indices, plain.indices)
    assert mixed.quantized.dtype == torch.float32 and torch.equal(mixed.quantized, plain.quantized)
