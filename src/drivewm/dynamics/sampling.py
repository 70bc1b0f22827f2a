"""Sampling from categorical logits: temperature and top-k, seeded by a generator.

Used by every token world model so that "the same seed gives the same rollout" holds across the
cached and uncached GPT paths and the MaskGIT decoder. `sample_logits` filters the full vocabulary and draws from it (the GPT and OccWorld
samplers, whose seeded token streams it defines); `sample_with_logprob` draws from the same filtered
distribution with one top-k and a softmax over k values per token, and also returns each draw's
log-probability under the model's own distribution softmax(logits) over the whole vocabulary: the
confidence by which MaskGIT (google-research/maskgit, maskgit/libml/parallel_decode.py: `probs =
softmax(logits)`, `selected_probs = probs[sampled_ids]`) and Copilot4D (arXiv 2311.01017, Algorithm 2:
log p_theta(x_0 | x_k+1)) rank tokens. A log-probability renormalised over the top-k candidates would rank
a position uniform over the vocabulary (-log 3 after top-3) as confident as a 3-way tie.
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

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def filter_logits(logits: torch.Tensor, top_k: int = 0) -> torch.Tensor:
    """Set logits outside the top-k set to -inf (last dim is the vocabulary)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return logits


def sample_logits(
    logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw token ids [...] from logits [..., V]."""
    if cfg.temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / cfg.temperature, cfg.top_k)
    probs = logits.softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])  # [N, V]
    ids = torch.multinomial(flat, 1, generator=generator)  # [N, 1]
    return ids.reshape(probs.shape[:-1])


def sample_with_logprob(
    logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw token ids [...] from logits [..., V]; return (ids, log softmax(logits) [...] at the draws).

    The draw follows sample_logits's distribution: softmax(logits / T) restricted to the top-k set (ties at
    the k-th logit aside, which sample_logits keeps and this drops); temperature 0 returns the argmax. The
    log-probability is the model's own, over the whole vocabulary, untouched by temperature and top-k.
    """
    logp_model = logits.float().log_softmax(-1)  # [..., V]
    if cfg.temperature == 0:
        token = logits.argmax(-1, keepdim=True)  # [..., 1]
    else:
        scaled = logits.float() / cfg.temperature
        if cfg.top_k and cfg.top_k < scaled.shape[-1]:
            cand, ids = torch.topk(scaled, cfg.top_k, dim=-1)  # [..., k], sorted descending
        else:
            cand, ids = scaled, None  # the whole vocabulary, in id order
        flat = cand.log_softmax(-1).exp().reshape(-1, cand.shape[-1])
        choice = torch.multinomial(flat, 1, generator=generator).reshape(*cand.shape[:-1], 1)
        token = choice if ids is None else ids.gather(-1, choice)
    return token.squeeze(-1), logp_model.gather(-1, token).squeeze(-1)
