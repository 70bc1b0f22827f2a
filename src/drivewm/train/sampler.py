"""A deterministic, resumable, distributed batch sampler.

The data order is one infinite stream of dataset indices: epoch e is a permutation drawn from
``seed + e``. Optimizer step s consumes the global batch ``stream[s*B : (s+1)*B]``; each rank takes
its contiguous share of it, split into gradient-accumulation micro-batches. So the data position is
just the step number, a resumed run sees exactly the batches it would have seen, and N processes
see together exactly the global batch a single process sees.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class DistributedStepSampler(Sampler[list[int]]):
    def __init__(
        self,
        dataset_len: int,
        *,
        batch_size: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
        total_steps: int,
        shuffle: bool = True,
    ) -> None:
        if dataset_len <= 0:
            raise ValueError("the training dataset is empty: no windows to sample")
        per_step = world_size * grad_accum
        if batch_size % per_step:
            raise ValueError(
                f"train.batch_size={batch_size} must be divisible by processes x grad_accum = "
                f"{world_size} x {grad_accum}"
            )
        self.n = dataset_len
        self.batch_size = batch_size
        self.micro = batch_size // per_step
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.shuffle = shuffle

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if getattr(self, "_cached_epoch", None) == epoch:
            return self._cached_order
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(self.n)
        self._cached_epoch, self._cached_order = epoch, order
        return order

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of optimizer step `step`'s global batch (all ranks, all micro-batches)."""
        start = step * self.batch_size
        out: list[int] = []
        pos = start
        while len(out) < self.batch_size:
            epoch, offset = divmod(pos, self.n)
            order = self._epoch_order(epoch)
            take = min(self.n - offset, self.batch_size - len(out))
            out.extend(order[offset : offset + take].tolist())
            pos += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            batch = self.global_batch(step)
            mine = batch[self.rank * self.micro * self.grad_accum : (self.rank + 1) * self.micro * self.grad_accum]
            for m in range(self.grad_accum):
                yield mine[m * self.micro : (m + 1) * self.micro]

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.grad_accum
