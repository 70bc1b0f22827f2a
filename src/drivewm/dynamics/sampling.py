"""Sampling from categorical logits: temperature, top-k and nucleus (top-p), seeded by a generator.

Used by every token world model so that "the same seed gives the same rollout" holds across the
cached and uncached GPT paths and the MaskGIT decoder (Holtzman et al. 2019, arXiv 1904.09751, for
nucleus sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(kw_only=True)
class SamplingConfig:
    temperature: float = 1.0
    """Softmax temperature; 0 picks the most likely token (greedy)."""
    top_k: int = 0
    """Keep only the k most likely tokens before sampling (0: all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability mass reaches p (1.0: all)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k / top-p set to -inf (last dim is the vocabulary)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass strictly before it already reaches p (the first token always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_logits(
    logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw token ids [...] from logits [..., V]."""
    if cfg.temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p)
    probs = logits.softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])  # [N, V]
    ids = torch.multinomial(flat, 1, generator=generator)  # [N, 1]
    return ids.reshape(probs.shape[:-1])
