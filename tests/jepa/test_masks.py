"""Mask generators: scales, aspect ratios, no context/target overlap, reproducibility, bad settings."""

import pytest
import torch

import math

from drivewm.jepa.masks import (
    MaskCollator,
    MaskError,
    MultiBlockMasking,
    RandomCellMasking,
    TubeMasking,
    ijepa_block_size,
    step_generator,
    vjepa_short_long,
)


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
            assert len(ctx) > m.min_keep == 10
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
    official = MultiBlockMasking(allow_overlap=True, context_scale=(1.0, 1.0), edges=False)(2, (8, 8), step_generator(0, 0))
    assert official.context.shape[1] == 49  # I-JEPA keeps blocks below the grid size: 7 x 7
    seen = set(MultiBlockMasking(edges=False)(64, (8, 8), step_generator(0, 1)).targets.flatten().tolist())
    assert not seen & {7 * 8 + j for j in range(8)}  # and never masks the last row
    seen = set(MultiBlockMasking()(64, (8, 8), step_generator(0, 1)).targets.flatten().tolist())
    assert seen & {7 * 8 + j for j in range(8)}


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
    # a target too large to keep min_keep context tokens: the collator lets it back into the context
    masks = MultiBlockMasking(num_targets=1, target_scale=(1.0, 1.0), target_aspect=(1.0, 1.0), min_keep=4)(1, (4, 4), step_generator(0, 0))
    assert masks.context.shape[1] == 16 and set(masks.context[0].tolist()) & set(masks.targets[0, 0].tolist())
    with pytest.raises(MaskError, match="ratio"):
        RandomCellMasking(ratio=1.0)


# --- I-JEPA's collator ------------------------------------------------------------------------------
class IJepaMaskCollator:
    """facebookresearch/ijepa src/masks/multiblock.py ``MaskCollator`` (commit 52c1ae9), line by line,
    on a token grid: the iteration counter and image collation are left out, and the block positions
    draw from the same generator as the sizes (theirs: from the global one)."""

    def __init__(self, height, width, enc_mask_scale=(0.85, 1.0), pred_mask_scale=(0.15, 0.2),
                 aspect_ratio=(0.75, 1.5), nenc=1, npred=4, min_keep=10, allow_overlap=False):
        self.height, self.width = height, width
        self.enc_mask_scale = enc_mask_scale
        self.pred_mask_scale = pred_mask_scale
        self.aspect_ratio = aspect_ratio
        self.nenc = nenc
        self.npred = npred
        self.min_keep = min_keep
        self.allow_overlap = allow_overlap

    def _sample_block_size(self, generator, scale, aspect_ratio_scale):
        _rand = torch.rand(1, generator=generator).item()
        # -- Sample block scale
        min_s, max_s = scale
        mask_scale = min_s + _rand * (max_s - min_s)
        max_keep = int(self.height * self.width * mask_scale)
        # -- Sample block aspect-ratio
        min_ar, max_ar = aspect_ratio_scale
        aspect_ratio = min_ar + _rand * (max_ar - min_ar)
        # -- Compute block height and width (given scale and aspect-ratio)
        h = int(round(math.sqrt(max_keep * aspect_ratio)))
        w = int(round(math.sqrt(max_keep / aspect_ratio)))
        while h >= self.height:
            h -= 1
        while w >= self.width:
            w -= 1

        return (h, w)

    def _sample_block_mask(self, b_size, generator, acceptable_regions=None):
        h, w = b_size

        def constrain_mask(mask, tries=0):
            """ Helper to restrict given mask to a set of acceptable regions """
            N = max(int(len(acceptable_regions)-tries), 0)
            for k in range(N):
                mask *= acceptable_regions[k]
        # --
        # -- Loop to sample masks until we find a valid one
        tries = 0
        timeout = og_timeout = 20
        valid_mask = False
        while not valid_mask:
            # -- Sample block top-left corner
            top = torch.randint(0, self.height - h, (1,), generator=generator)
            left = torch.randint(0, self.width - w, (1,), generator=generator)
            mask = torch.zeros((self.height, self.width), dtype=torch.int32)
            mask[top:top+h, left:left+w] = 1
            # -- Constrain mask to a set of acceptable regions
            if acceptable_regions is not None:
                constrain_mask(mask, tries)
            mask = torch.nonzero(mask.flatten())
            # -- If mask too small try again
            valid_mask = len(mask) > self.min_keep
            if not valid_mask:
                timeout -= 1
                if timeout == 0:
                    tries += 1
                    timeout = og_timeout
        mask = mask.squeeze()
        # --
        mask_complement = torch.ones((self.height, self.width), dtype=torch.int32)
        mask_complement[top:top+h, left:left+w] = 0
        # --
        return mask, mask_complement

    def __call__(self, B, g):
        p_size = self._sample_block_size(
            generator=g,
            scale=self.pred_mask_scale,
            aspect_ratio_scale=self.aspect_ratio)
        e_size = self._sample_block_size(
            generator=g,
            scale=self.enc_mask_scale,
            aspect_ratio_scale=(1., 1.))

        collated_masks_pred, collated_masks_enc = [], []
        min_keep_pred = self.height * self.width
        min_keep_enc = self.height * self.width
        for _ in range(B):

            masks_p, masks_C = [], []
            for _ in range(self.npred):
                mask, mask_C = self._sample_block_mask(p_size, g)
                masks_p.append(mask)
                masks_C.append(mask_C)
                min_keep_pred = min(min_keep_pred, len(mask))
            collated_masks_pred.append(masks_p)

            acceptable_regions = masks_C
            if self.allow_overlap:
                acceptable_regions = None

            masks_e = []
            for _ in range(self.nenc):
                mask, _ = self._sample_block_mask(e_size, g, acceptable_regions=acceptable_regions)
                masks_e.append(mask)
                min_keep_enc = min(min_keep_enc, len(mask))
            collated_masks_enc.append(masks_e)

        collated_masks_pred = [[cm[:min_keep_pred] for cm in cm_list] for cm_list in collated_masks_pred]
        collated_masks_pred = torch.utils.data.default_collate(collated_masks_pred)
        # --
        collated_masks_enc = [[cm[:min_keep_enc] for cm in cm_list] for cm_list in collated_masks_enc]
        collated_masks_enc = torch.utils.data.default_collate(collated_masks_enc)

        return collated_masks_enc, collated_masks_pred


def test_block_size_is_one_draw_for_scale_and_aspect():
    ref = IJepaMaskCollator(14, 14)
    for seed in range(50):
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert ijepa_block_size(a, (14, 14), (0.15, 0.2), (0.75, 1.5), below_grid=True) == ref._sample_block_size(b, (0.15, 0.2), (0.75, 1.5))
        assert torch.equal(a.get_state(), b.get_state())  # one draw each
    # known answer: r = 0 gives the smallest, flattest block; r -> 1 the largest, tallest
    assert ijepa_block_size(torch.Generator().manual_seed(0), (14, 14), (0.15, 0.15), (0.75, 0.75)) == (5, 6)  # 29 tokens
    # scale and aspect move together: a larger block is always a taller one
    sizes = [ijepa_block_size(torch.Generator().manual_seed(s), (14, 14), (0.15, 0.2), (0.75, 1.5)) for s in range(40)]
    by_area = sorted(sizes, key=lambda hw: hw[0] * hw[1])
    assert by_area[0][0] / by_area[0][1] < by_area[-1][0] / by_area[-1][1]


@pytest.mark.parametrize("grid, scale, seed", [((14, 14), (0.15, 0.2), 0), ((14, 14), (0.15, 0.2), 3), ((12, 10), (0.3, 0.45), 1)])
def test_multiblock_equals_the_ijepa_collator(grid, scale, seed):
    ours = MultiBlockMasking(target_scale=scale, edges=False)(6, grid, torch.Generator().manual_seed(seed))
    enc, pred = IJepaMaskCollator(*grid, pred_mask_scale=scale)(6, torch.Generator().manual_seed(seed))
    assert torch.equal(ours.context, enc[0]) and torch.equal(ours.targets, torch.stack(pred, 1))  # lists over blocks of [B, n]


def test_crowded_context_relaxes_as_the_collator():
    # 4 targets of 0.35-0.5 of a 10 x 10 grid often leave too little context: targets come back, no error
    grid, scale = (10, 10), (0.35, 0.5)
    overlaps = 0
    for seed in range(4):
        ours = MultiBlockMasking(target_scale=scale, edges=False)(6, grid, torch.Generator().manual_seed(seed))
        enc, pred = IJepaMaskCollator(*grid, pred_mask_scale=scale)(6, torch.Generator().manual_seed(seed))
        assert torch.equal(ours.context, enc[0]) and torch.equal(ours.targets, torch.stack(pred, 1))
        assert ours.context.shape[1] > 10
        overlaps += sum(bool(set(ours.context[b].tolist()) & set(ours.targets[b].flatten().tolist())) for b in range(6))
    assert overlaps > 0


def test_collator_adds_mask_indices_to_the_batch():
    samples = [{"occ": torch.full((2, 3), float(i)), "ego_pose": torch.zeros(2, 3)} for i in range(3)]
    masker = MultiBlockMasking()
    collator = MaskCollator(masker, (14, 14), seed=5)
    first, second = collator(samples), collator(samples)
    assert first["occ"].shape == (3, 2, 3) and torch.equal(first["occ"][:, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    expected = masker(3, (14, 14), step_generator(5, 0))
    assert torch.equal(first["mask_context"], expected.context) and torch.equal(first["mask_targets"], expected.targets)
    assert not torch.equal(first["mask_targets"], second["mask_targets"])
    resumed = MaskCollator(masker, (14, 14), seed=5, start_step=1)(samples)
    assert torch.equal(resumed["mask_targets"], second["mask_targets"])
    with pytest.raises(MaskError, match="mask_context"):
        collator([{**s, "mask_context": torch.zeros(1)} for s in samples])


def vjepa2_block_size(generator, height, width, duration, temporal_scale, spatial_scale, aspect_ratio_scale):
    """``_MaskGenerator._sample_block_size`` of facebookresearch/vjepa2 (src/masks/multiseq_multiblock3d.py, c2963a4)."""
    _rand = torch.rand(1, generator=generator).item()
    min_t, max_t = temporal_scale
    temporal_mask_scale = min_t + _rand * (max_t - min_t)
    t = max(1, int(duration * temporal_mask_scale))
    _rand = torch.rand(1, generator=generator).item()
    min_s, max_s = spatial_scale
    spatial_mask_scale = min_s + _rand * (max_s - min_s)
    spatial_num_keep = int(height * width * spatial_mask_scale)
    _rand = torch.rand(1, generator=generator).item()
    min_ar, max_ar = aspect_ratio_scale
    aspect_ratio = min_ar + _rand * (max_ar - min_ar)
    h = int(round(math.sqrt(spatial_num_keep * aspect_ratio)))
    w = int(round(math.sqrt(spatial_num_keep / aspect_ratio)))
    return (t, min(h, height), min(w, width))


def test_tube_block_size_draws_as_vjepa2():
    from drivewm.jepa.masks import sample_block_size

    for seed in range(50):
        for scale, aspect in [((0.15, 0.15), (0.75, 1.5)), ((0.7, 0.7), (0.75, 1.5)), ((0.1, 0.4), (0.3, 3.0))]:
            a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            t, h, w = vjepa2_block_size(b, 16, 16, 8, (1.0, 1.0), scale, aspect)
            assert t == 8 and sample_block_size(a, (16, 16), scale, aspect) == (h, w)
            assert torch.equal(a.get_state(), b.get_state())  # the same three draws
