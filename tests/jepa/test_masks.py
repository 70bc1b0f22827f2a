"""Mask generators: scales, aspect ratios, no context/target overlap, reproducibility, bad settings."""

import pytest
import torch

from drivewm.jepa.masks import MaskError, MultiBlockMasking, RandomCellMasking, TubeMasking, step_generator, vjepa_short_long


def test_multiblock_scales_and_no_overlap():
    grid = (16, 16)
    m = MultiBlockMasking()
    for step in range(20):
        masks = m(4, grid, step_generator(0, step))
        B, K, Nt = masks.targets.shape
        assert (B, K) == (4, 4)
        # 0.15-0.2 of 256 cells, up to rounding of h and w.
        assert 0.10 * 256 <= Nt <= 0.26 * 256
        for b in range(B):
            ctx = set(masks.context[b].tolist())
            tgt = set(masks.targets[b].flatten().tolist())
            assert ctx.isdisjoint(tgt)
            assert len(ctx) >= m.min_keep
            assert len(ctx) <= 256


def test_multiblock_blocks_are_rectangles_with_aspect():
    masks = MultiBlockMasking()(2, (20, 20), step_generator(3, 0))
    for b in range(2):
        for k in range(4):
            idx = masks.targets[b, k]
            rows, cols = idx // 20, idx % 20
            h = int(rows.max() - rows.min() + 1)
            w = int(cols.max() - cols.min() + 1)
            assert h * w == len(idx)  # a full rectangle
            assert 0.5 <= h / w <= 2.0


def test_masks_reproducible_from_seed_and_step():
    a = MultiBlockMasking()(3, (12, 12), step_generator(5, 7))
    b = MultiBlockMasking()(3, (12, 12), step_generator(5, 7))
    c = MultiBlockMasking()(3, (12, 12), step_generator(5, 8))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.targets, c.targets)


def test_overlap_allowed_keeps_context_block():
    m = MultiBlockMasking(allow_overlap=True, context_scale=(1.0, 1.0))
    masks = m(2, (8, 8), step_generator(0, 0))
    assert masks.context.shape[1] == 64


def test_tubes_repeat_over_frames_and_partition():
    groups = vjepa_short_long(2, (10, 10), 3, step_generator(1, 0))
    for masks in groups:
        for b in range(2):
            ctx = masks.context[b]
            tgt = masks.targets[b, 0]
            assert set(ctx.tolist()).isdisjoint(tgt.tolist())
            # tube: the same spatial cells in every frame
            per_frame = [set((tgt[(tgt // 100) == t] % 100).tolist()) for t in range(3)]
            assert per_frame[0] == per_frame[1] == per_frame[2]
    short, long = groups
    assert long.targets.shape[-1] > short.targets.shape[-1] * 0.9  # 2 x 0.7 covers more than 8 x 0.15 typically


def test_random_cell_ratio():
    masks = RandomCellMasking(ratio=0.5)(3, (8, 8), step_generator(0, 0))
    assert masks.targets.shape == (3, 1, 32) and masks.context.shape == (3, 32)
    for b in range(3):
        assert sorted(masks.context[b].tolist() + masks.targets[b, 0].tolist()) == list(range(64))


def test_no_context_is_an_error():
    with pytest.raises(MaskError, match="context"):
        TubeMasking(num_blocks=2, scale=(1.0, 1.0))(1, (4, 4), 2, step_generator(0, 0))
    with pytest.raises(MaskError, match="min_keep"):
        MultiBlockMasking(num_targets=1, target_scale=(1.0, 1.0), target_aspect=(1.0, 1.0))(1, (4, 4), step_generator(0, 0))
    with pytest.raises(MaskError, match="ratio"):
        RandomCellMasking(ratio=1.0)
