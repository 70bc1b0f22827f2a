"""Seeded mask generators of the JEPA family; they return token indices, the models only gather them.

- I-JEPA multi-block (Assran et al., 2023, arXiv 2301.08243), as the official collator
  (facebookresearch/ijepa ``src/masks/multiblock.py`` ``MaskCollator``, commit 52c1ae9): 4 target
  blocks of scale 0.15-0.2 and aspect 0.75-1.5, one context block of scale 0.85-1.0 with every target
  removed, more than ``min_keep`` (10) context tokens. One draw per batch and kind of block sets both
  its scale and its aspect (linear in the aspect); positions per sample; when the context cannot keep
  enough tokens the collator stops removing targets one by one instead of failing; contexts are cut
  to the batch's shortest (their first tokens), so indices stack into one tensor. Unlike theirs
  (``edges=False``), blocks can reach the grid's last row and column.
- V-JEPA tubes (Bardes et al., 2024, arXiv 2404.08471): spatial blocks repeated over every frame;
  "short range" 8 blocks at scale 0.15 and "long range" 2 blocks at scale 0.7, the union is the
  target, the rest the context.
- AD-L-JEPA random BEV masking (Zhu et al., 2025, arXiv 2501.04969): a fixed fraction (0.5) of the
  BEV cells is masked, independently per sample.

A token index on an H x W grid is ``h * W + w``; over T frames it is ``t * H * W + h * W + w``.
Every generator takes a ``torch.Generator`` so a (seed, step) pair reproduces the masks exactly.
``MaskCollator`` builds the masks in the data loader, as vjepa2 does; the model receives indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.data import default_collate, get_worker_info


class MaskError(ValueError):
    """A mask setting that leaves no context or no target."""


@dataclass(frozen=True)
class Masks:
    """Context and target token indices of one batch.

    context: LongTensor [B, Nc]; targets: LongTensor [B, K, Nt] (K target blocks, each Nt tokens).
    """

    context: torch.Tensor
    targets: torch.Tensor

    @property
    def target_union(self) -> torch.Tensor:
        """[B, K * Nt] all target indices (blocks may repeat a token)."""
        return self.targets.flatten(1)


def _check_range(name: str, lo_hi: tuple[float, float], lo_bound: float, hi_bound: float) -> None:
    lo, hi = lo_hi
    if not (lo_bound < lo <= hi <= hi_bound):
        raise MaskError(f"{name} must satisfy {lo_bound} < low <= high <= {hi_bound}, got {lo_hi}")


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


def sample_block_size(
    g: torch.Generator, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[int, int]:
    """(h, w) of a V-JEPA tube block as vjepa2's ``_MaskGenerator._sample_block_size``
    (src/masks/multiseq_multiblock3d.py at c2963a4): three uniform draws in turn, the temporal scale (tubes
    span every frame here, so it sets nothing but keeps the draws aligned), the spatial scale (the block keeps
    int(H * W * scale) tokens) and the aspect h/w, linearly in [aspect[0], aspect[1]]."""
    H, W = grid
    _uniform(g, 1.0, 1.0)  # temporal scale (1.0, 1.0): the tube covers the whole clip
    keep = int(H * W * _uniform(g, *scale))
    ar = _uniform(g, *aspect)
    h = int(round(math.sqrt(keep * ar)))
    w = int(round(math.sqrt(keep / ar)))
    # a block of at least one token keeps tiny grids usable (theirs could return 0)
    return max(1, min(h, H)), max(1, min(w, W))


def _block_mask(g: torch.Generator, grid: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Bool [H, W] with one h x w block at a random position."""
    H, W = grid
    h, w = hw
    top = int(torch.randint(0, H - h + 1, (1,), generator=g))
    left = int(torch.randint(0, W - w + 1, (1,), generator=g))
    m = torch.zeros(H, W, dtype=torch.bool)
    m[top : top + h, left : left + w] = True
    return m


def ijepa_block_size(
    g: torch.Generator, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
    below_grid: bool = False,
) -> tuple[int, int]:
    """(h, w) as I-JEPA's ``MaskCollator._sample_block_size``: one uniform draw sets both the scale and
    the aspect h/w (linearly), the block keeps about int(H * W * scale) tokens. ``below_grid``: h < H and
    w < W as theirs; else h <= H, w <= W."""
    H, W = grid
    r = float(torch.rand(1, generator=g))
    max_keep = int(H * W * (scale[0] + r * (scale[1] - scale[0])))
    ar = aspect[0] + r * (aspect[1] - aspect[0])
    h = int(round(math.sqrt(max_keep * ar)))
    w = int(round(math.sqrt(max_keep / ar)))
    cut = 1 if below_grid else 0
    # a block of at least one token keeps tiny grids usable (theirs could return 0)
    return max(1, min(h, H - cut)), max(1, min(w, W - cut))


def _ijepa_block(g: torch.Generator, grid: tuple[int, int], hw: tuple[int, int], edges: bool) -> torch.Tensor:
    """Bool [H, W] with one h x w block; the top-left corner in [0, H - h] x [0, W - w], or, without
    ``edges``, in [0, H - h) x [0, W - w) as I-JEPA's (so no block covers the last row or column)."""
    H, W = grid
    h, w = hw
    reach = 1 if edges else 0
    top = int(torch.randint(0, max(1, H - h + reach), (1,), generator=g))
    left = int(torch.randint(0, max(1, W - w + reach), (1,), generator=g))
    m = torch.zeros(H, W, dtype=torch.bool)
    m[top : top + h, left : left + w] = True
    return m


@dataclass(kw_only=True)
class MultiBlockMasking:
    """I-JEPA multi-block masking (arXiv 2301.08243, Sec. 3), as facebookresearch/ijepa's ``MaskCollator``."""

    num_targets: int = 4
    """Target blocks per sample."""
    target_scale: tuple[float, float] = (0.15, 0.2)
    """Fraction of the grid each target block covers."""
    target_aspect: tuple[float, float] = (0.75, 1.5)
    """Height / width ratio range of target blocks."""
    context_scale: tuple[float, float] = (0.85, 1.0)
    """Fraction of the grid of the context block before the targets are removed."""
    min_keep: int = 10
    """The context keeps more than this many tokens (I-JEPA: 10), or the collator relaxes."""
    allow_overlap: bool = False
    """Keep target tokens in the context (False: the context never sees a target token)."""
    max_tries: int = 20
    """Re-draws of the context block before one more target is let back into it (I-JEPA's timeout)."""
    edges: bool = True
    """drivewm: blocks can cover the grid's last row and column. I-JEPA's collator (False) draws the corner
    below H - h and keeps blocks smaller than the grid, so on a 14 x 14 grid 27 tokens are never masked,
    and on drivewm's 8 x 8 token grids 15 of 64, which costs its short-training probes."""

    def __post_init__(self) -> None:
        _check_range("target_scale", self.target_scale, 0.0, 1.0)
        _check_range("context_scale", self.context_scale, 0.0, 1.0)
        _check_range("target_aspect", self.target_aspect, 0.0, float("inf"))
        if self.num_targets < 1:
            raise MaskError(f"num_targets must be >= 1, got {self.num_targets}")
        if self.min_keep < 0 or self.max_tries < 1:
            raise MaskError(f"min_keep must be >= 0 and max_tries >= 1, got {self.min_keep}, {self.max_tries}")

    def _context(self, g: torch.Generator, grid: tuple[int, int], hw: tuple[int, int], blocks: list[torch.Tensor]) -> torch.Tensor:
        """I-JEPA's ``_sample_block_mask`` with acceptable regions: after every ``max_tries`` failed draws,
        the last target still removed is let back in; with none left the block is taken as drawn."""
        regions = [] if self.allow_overlap else [~b for b in blocks]
        relaxed = 0
        while True:
            for _try in range(self.max_tries):
                ctx = _ijepa_block(g, grid, hw, self.edges)
                for region in regions[: max(len(regions) - relaxed, 0)]:
                    ctx &= region
                if int(ctx.sum()) > self.min_keep:
                    return ctx
            if relaxed >= len(regions):
                return ctx  # nothing left to relax: the bare block (theirs would draw forever)
            relaxed += 1

    def __call__(self, batch_size: int, grid: tuple[int, int], g: torch.Generator) -> Masks:
        """Masks of one batch. Target blocks are taken as drawn: theirs also re-draws a target block of at
        most ``min_keep`` tokens, which never ends, since its size does not depend on where it lands."""
        t_hw = ijepa_block_size(g, grid, self.target_scale, self.target_aspect, below_grid=not self.edges)
        c_hw = ijepa_block_size(g, grid, self.context_scale, (1.0, 1.0), below_grid=not self.edges)
        targets, contexts = [], []
        for _ in range(batch_size):
            blocks = [_ijepa_block(g, grid, t_hw, self.edges) for _ in range(self.num_targets)]
            ctx = self._context(g, grid, c_hw, blocks)
            targets.append(torch.stack([b.flatten().nonzero().squeeze(1) for b in blocks]))  # [K, Nt]
            contexts.append(ctx.flatten().nonzero().squeeze(1))
        n_ctx = min(len(c) for c in contexts)
        if n_ctx == 0:
            raise MaskError(f"multi-block masking left an empty context on a {grid[0]}x{grid[1]} grid; use a larger grid")
        # Every context cut to the batch's shortest, its first tokens, as I-JEPA's collator cuts them.
        return Masks(context=torch.stack([c[:n_ctx] for c in contexts]), targets=torch.stack(targets))


@dataclass(kw_only=True)
class TubeMasking:
    """V-JEPA multi-block tube masking (arXiv 2404.08471, Sec. 3.2): spatial blocks repeated over all frames."""

    num_blocks: int = 8
    """Spatial blocks whose union is the target (8 short-range, 2 long-range in V-JEPA)."""
    scale: tuple[float, float] = (0.15, 0.15)
    """Spatial fraction of each block (0.15 short-range, 0.7 long-range)."""
    aspect: tuple[float, float] = (0.75, 1.5)
    """Height / width ratio range of the blocks."""
    min_keep: int = 1
    """Fewest context tokens per frame."""
    max_tries: int = 20
    """Re-draws before giving up with a MaskError."""

    def __post_init__(self) -> None:
        _check_range("scale", self.scale, 0.0, 1.0)
        _check_range("aspect", self.aspect, 0.0, float("inf"))
        if self.num_blocks < 1:
            raise MaskError(f"num_blocks must be >= 1, got {self.num_blocks}")

    def __call__(self, batch_size: int, grid: tuple[int, int], frames: int, g: torch.Generator) -> Masks:
        """Context [B, T * Nc] and one target group [B, 1, T * Nt] over T frames."""
        H, W = grid
        hw = sample_block_size(g, grid, self.scale, self.aspect)
        spatial_tgt = []
        for _ in range(batch_size):
            for _try in range(self.max_tries):
                m = torch.zeros(H, W, dtype=torch.bool)
                for _ in range(self.num_blocks):
                    m |= _block_mask(g, grid, hw)
                if int((~m).sum()) >= self.min_keep:
                    break
            else:
                raise MaskError(
                    f"tube masking with {self.num_blocks} blocks of {hw} covers the whole {H}x{W} grid "
                    f"(no context left after {self.max_tries} tries); lower scale or num_blocks"
                )
            spatial_tgt.append(m.flatten())
        # Equal sizes per batch: cut context and target to the shortest, a random subset of each.
        n_tgt = min(int(m.sum()) for m in spatial_tgt)
        n_ctx = min(int((~m).sum()) for m in spatial_tgt)
        offsets = torch.arange(frames).unsqueeze(1) * (H * W)  # [T, 1]
        ctx, tgt = [], []
        for m in spatial_tgt:
            t_idx = m.nonzero().squeeze(1)
            c_idx = (~m).nonzero().squeeze(1)
            t_idx = t_idx[torch.randperm(len(t_idx), generator=g)[:n_tgt]].sort().values
            c_idx = c_idx[torch.randperm(len(c_idx), generator=g)[:n_ctx]].sort().values
            tgt.append((offsets + t_idx).flatten())  # tube: same cells in every frame
            ctx.append((offsets + c_idx).flatten())
        return Masks(context=torch.stack(ctx), targets=torch.stack(tgt).unsqueeze(1))


def vjepa_short_long(batch_size: int, grid: tuple[int, int], frames: int, g: torch.Generator) -> list[Masks]:
    """The two V-JEPA mask groups of one batch: 8 blocks at 0.15 and 2 blocks at 0.7."""
    short = TubeMasking(num_blocks=8, scale=(0.15, 0.15))
    long = TubeMasking(num_blocks=2, scale=(0.7, 0.7))
    return [short(batch_size, grid, frames, g), long(batch_size, grid, frames, g)]


@dataclass(kw_only=True)
class RandomCellMasking:
    """AD-L-JEPA BEV masking (arXiv 2501.04969): a fixed ratio of BEV cells masked per sample."""

    ratio: float = 0.5
    """Fraction of cells masked (the targets)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise MaskError(f"ratio must be in (0, 1) so both context and target are non-empty, got {self.ratio}")

    def __call__(self, batch_size: int, grid: tuple[int, int], g: torch.Generator) -> Masks:
        n = grid[0] * grid[1]
        n_tgt = int(round(n * self.ratio))
        if n_tgt < 1 or n_tgt >= n:
            raise MaskError(f"ratio {self.ratio} on {n} cells leaves an empty context or target")
        perm = torch.stack([torch.randperm(n, generator=g) for _ in range(batch_size)])  # [B, N]
        tgt = perm[:, :n_tgt].sort(dim=1).values
        ctx = perm[:, n_tgt:].sort(dim=1).values
        return Masks(context=ctx, targets=tgt.unsqueeze(1))


class MaskCollator:
    """Collate samples into a batch and draw its masks in the data loader, as vjepa2's collators do.

    ``MaskCollator(masker, grid, seed)(samples)`` returns ``default_collate(samples)`` with the masks'
    indices added under ``context_key`` [B, Nc] and ``targets_key`` [B, K, Nt]; the model only gathers
    them. ``rows(batch)`` says how many mask rows the batch needs (default: one per sample; a model that
    reads each frame of a window as its own sample asks for B * T). Batch n (counted from ``start_step``)
    uses ``step_generator(seed, n)``, so a resumed run that sets ``start_step`` to the batches done draws
    the same masks as an uninterrupted one. In a data-loader worker the count follows the loader's
    round-robin order (worker w of W collates batches w, w + W, ...), so any worker count draws the same.
    """

    def __init__(self, masker: Callable[[int, tuple[int, int], torch.Generator], Masks], grid: tuple[int, int],
                 seed: int, *, start_step: int = 0, rows: Callable[[dict], int] | None = None,
                 context_key: str = "mask_context", targets_key: str = "mask_targets"):
        self.masker, self.grid, self.seed, self.start = masker, tuple(grid), int(seed), int(start_step)
        self.rows = rows
        self.calls = 0
        self.context_key, self.targets_key = context_key, targets_key

    @property
    def step(self) -> int:
        """The index of the batch the next call collates."""
        info = get_worker_info()
        if info is None:
            return self.start + self.calls
        return self.start + info.id + self.calls * info.num_workers

    def __call__(self, samples: list[Any]) -> dict:
        batch = default_collate(samples)
        if not isinstance(batch, dict):
            raise MaskError(f"MaskCollator needs samples that are dicts of arrays, got {type(samples[0]).__name__}")
        for key in (self.context_key, self.targets_key):
            if key in batch:
                raise MaskError(f"samples already hold a {key!r} entry; the collator writes the masks there")
        rows = len(samples) if self.rows is None else self.rows(batch)
        masks = self.masker(rows, self.grid, step_generator(self.seed, self.step))
        self.calls += 1
        return {**batch, self.context_key: masks.context, self.targets_key: masks.targets}


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for (seed, step): the same masks on every rank and after a resume."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(step))
    return g
