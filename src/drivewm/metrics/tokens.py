"""Tokenizer code statistics: codebook usage, perplexity, bits per frame.

* usage: fraction of the ``vocab_size`` codes used at least once over the evaluated data
  (the "codebook utilisation" of VQ-VAE papers, e.g. van den Oord et al. arXiv 1711.00937 and
  the dead-code analyses of Mentzer et al. arXiv 2309.15505 / FSQ);
* perplexity: exp of the entropy (nats) of the empirical code distribution pooled over all
  tokens (the "codebook perplexity" logged by VQ tokenizers; V when codes are used uniformly);
* bits per frame: ``tokens_per_frame * log2(vocab_size)`` (a fixed-length code, what a world
  model predicts) and ``entropy_bits_per_frame = tokens_per_frame * H_2(p)`` (what an ideal
  coder of the unigram code distribution would spend).
The state is a histogram of code counts, additive over batches and processes.
"""

from __future__ import annotations

import math

import torch

from drivewm.metrics.distributed import StreamingMetric


class CodebookMetric(StreamingMetric):
    """``update(codes)`` with integer codes [..., *frame_dims]; the last ``frame_ndim`` dims are one frame's tokens."""

    def __init__(self, *, vocab_size: int, frame_ndim: int = 2) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if frame_ndim < 1:
            raise ValueError(f"frame_ndim must be >= 1, got {frame_ndim}")
        self.vocab_size = vocab_size
        self.frame_ndim = frame_ndim
        self._add_state("counts", torch.zeros(vocab_size, dtype=torch.int64))
        self._add_state("frames", torch.zeros((), dtype=torch.int64))

    def update(self, codes: torch.Tensor) -> None:
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integer code ids, got dtype {codes.dtype}")
        if codes.ndim < self.frame_ndim:
            raise ValueError(f"codes must have at least {self.frame_ndim} dims (one frame's tokens), got shape {tuple(codes.shape)}")
        if codes.numel() == 0:
            return
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"codes has ids in [{lo}, {hi}], outside the codebook 0..{self.vocab_size - 1}")
        self.counts += torch.bincount(codes.reshape(-1).long(), minlength=self.vocab_size).cpu()
        frame_tokens = math.prod(codes.shape[codes.ndim - self.frame_ndim :])
        self.frames += codes.numel() // frame_tokens

    def compute(self) -> dict:
        s = self._reduced()
        counts, frames = s["counts"], int(s["frames"])
        total = int(counts.sum())
        if total == 0:
            raise ValueError("compute() called before any update() with codes")
        p = counts.double() / total
        nz = p[p > 0]
        entropy = float(-(nz * nz.log()).sum())  # nats
        tokens_per_frame = total / frames
        return {
            "usage": float((counts > 0).double().mean()),
            "codes_used": int((counts > 0).sum()),
            "vocab_size": self.vocab_size,
            "perplexity": math.exp(entropy),
            "tokens_per_frame": tokens_per_frame,
            "bits_per_frame": tokens_per_frame * math.log2(self.vocab_size),
            "entropy_bits_per_frame": tokens_per_frame * entropy / math.log(2),
            "frames": frames,
            "counts": counts.tolist(),
        }
