"""MaskGIT masking schedule with Copilot4D's token noise, for training and iterative decoding; DrivingWorld's
random input masking.

MaskGIT (Chang et al. 2022, arXiv 2202.04200) masks ceil(gamma(u) * N) of a frame's N tokens with
gamma(u) = cos(u * pi / 2), u ~ U(0, 1), and decodes in S steps, keeping after step s the
floor(gamma((s + 1) / S) * N) least confident tokens masked. Copilot4D (Zhang et al. 2023,
arXiv 2311.01017) adds uniform noise: a fraction nu ~ U(0, eta) (eta = 20 %) of the tokens left
unmasked is replaced by random codes, so the model also learns to correct wrong tokens.
DrivingWorld (Hu et al. 2024, arXiv 2412.19505) masks random input tokens in training so that a model
learns to forecast from the imperfect frames of its own rollouts.
"""

from __future__ import annotations

import math

import torch


def mask_ratio(u: torch.Tensor | float) -> torch.Tensor:
    """gamma(u) = cos(u * pi / 2): 1 at u = 0 (all masked), 0 at u = 1."""
    return torch.cos(torch.as_tensor(u, dtype=torch.float64) * (math.pi / 2))


def num_masked_train(u: torch.Tensor, n: int) -> torch.Tensor:
    """Tokens to mask per sample for training draws u [B]: ceil(gamma(u) * n), at least 1."""
    return torch.ceil(mask_ratio(u) * n).long().clamp(1, n)


def num_masked_after_step(step: int, steps: int, n: int) -> int:
    """Tokens still masked after decoding step `step` (0-based) of `steps`: floor(gamma((s+1)/S) * n)."""
    if not 0 <= step < steps:
        raise ValueError(f"step {step} outside 0..{steps - 1}")
    return int(math.floor(float(mask_ratio((step + 1) / steps)) * n))


def corrupt_tokens(
    tokens: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    eta: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask and noise a batch of frames for one training step.

    tokens [B, N] ids -> (corrupted [B, N], masked [B, N] bool, noised [B, N] bool). Each row gets
    ceil(cos(u pi/2) N) masked positions (u ~ U(0, 1)) and floor(nu * unmasked) of the rest replaced by
    a uniformly drawn *different* code (nu ~ U(0, eta)).
    """
    b, n = tokens.shape
    dev = tokens.device
    u = torch.rand(b, generator=generator, device=dev)
    n_mask = num_masked_train(u, n).to(dev)  # [B]
    # A random permutation per row: the first n_mask positions are masked, the next n_noise noised.
    rank = torch.rand(b, n, generator=generator, device=dev).argsort(-1).argsort(-1)  # [B, N] rank of each slot
    masked = rank < n_mask[:, None]
    nu = torch.rand(b, generator=generator, device=dev) * eta
    n_noise = torch.floor(nu * (n - n_mask)).long()  # [B]
    noised = (rank >= n_mask[:, None]) & (rank < (n_mask + n_noise)[:, None])
    # A random different code: add an offset in 1..V-1 modulo V.
    offset = torch.randint(1, vocab_size, (b, n), generator=generator, device=dev)
    out = torch.where(noised, (tokens + offset) % vocab_size, tokens)
    out = out.masked_fill(masked, mask_id)
    return out, masked, noised


def mask_input_tokens(
    tokens: torch.Tensor,
    max_ratio: float,
    mask_id: int,
    where: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DrivingWorld's input masking: tokens [B, T, ...] ids with, per clip, a fraction r ~ U(0, max_ratio) of
    the tokens replaced by mask_id; where [B, T] bool limits it to those frames (default: all)."""
    b, t = tokens.shape[:2]
    extra = (1,) * (tokens.dim() - 2)
    ratio = torch.rand(b, generator=generator, device=tokens.device) * max_ratio
    drop = torch.rand(tokens.shape, generator=generator, device=tokens.device) < ratio.view(b, 1, *extra)
    if where is not None:
        drop &= where.view(b, t, *extra)
    return tokens.masked_fill(drop, mask_id)
