"""MaskGIT masking schedule with Copilot4D's token noise, for training and iterative decoding; DrivingWorld's
random input masking.

MaskGIT (Chang et al. 2022, arXiv 2202.04200) masks ceil(gamma(u) * N) of a frame's N tokens with
gamma(u) = cos(u * pi / 2), u ~ U(0, 1), and decodes in S steps, keeping after step s the
floor(gamma((s + 1) / S) * N) least confident tokens masked (`maskgit_mask_len`); Copilot4D's sampler keeps
ceil(gamma(k / K) * N) decoded after its iteration k (`copilot4d_num_fixed`). Copilot4D (Zhang et al. 2023,
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


def maskgit_mask_len(step: int, steps: int, n: int, unknown: int) -> int:
    """Tokens MaskGIT masks again after decoding step `step` (0-based) of `steps`, of `unknown` masked before it.

    google-research/maskgit, maskgit/libml/parallel_decode.py (commit 1db23594e1bd328ee78eadcd148a19281cd0f5b8),
    `decode.loop_body_fn`: mask_len = floor(n * clip(cos((step + 1) / steps * pi / 2), 1e-6, 1)), then
    max(1, min(unknown - 1, mask_len)): each step decodes at least one token and leaves at least one masked.
    The last step's draw is the output (its `final_seqs` row is written before the masking): 0 there."""
    if step == steps - 1:
        return 0
    ratio = max(float(mask_ratio((step + 1) / steps)), 1e-6)
    return max(1, min(unknown - 1, int(math.floor(n * ratio))))


def copilot4d_num_fixed(k: int, steps: int, n: int) -> int:
    """Tokens decoded after Copilot4D's iteration k (K-1, ..., 0) of K = `steps`: M = ceil(gamma(k / K) N)
    (arXiv 2311.01017, Algorithm 2, "x_k <- x~_0 on top-M indices of l_k"); N at k = 0. The product is rounded
    to 1e-9 first so that an exact value (cos(pi/3) N) is not pushed up by the float cosine."""
    if not 0 <= k < steps:
        raise ValueError(f"iteration {k} outside 0..{steps - 1}")
    return int(math.ceil(round(math.cos(k / steps * math.pi / 2) * n, 9)))


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
