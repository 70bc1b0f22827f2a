"""Streaming-metric plumbing: sum-reduce counts across processes only when a process group exists.

Every drivewm metric keeps its state as additive tensors (counts, sums, sums of outer products),
so a data-parallel evaluation gives the dataset-wide number by one all-reduce of sums: the same
numbers as one process seeing all the data, in any batch split. Single-process use needs no
process group; a group that exists but is not initialised is never started here (set-up lives in
`drivewm.train.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is available, initialised and has more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of `tensors` summed over all processes (no-op copies in a single process).

    The copies keep the caller's state untouched, so `compute()` can be called more than once
    without counting other ranks twice.
    """
    out = [t.detach().clone() for t in tensors]
    if is_distributed():
        # gloo and nccl both reduce float64/int64; reduce on the group's device when it needs one.
        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        for i, t in enumerate(out):
            moved = t.to(device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            out[i] = moved.to(t.device)
    return out


def _agree_on_shapes(states: list[torch.Tensor], max_dims: int = 4) -> list[torch.Tensor]:
    """States sized on first update (e.g. [H, C, C]) may still be empty on a rank that saw no data;
    give those zeros of the shape the other ranks have, so the all-reduce matches everywhere."""
    shapes = torch.zeros(len(states), max_dims, dtype=torch.int64)
    for i, t in enumerate(states):
        if t.ndim > max_dims:
            raise ValueError(f"metric state with {t.ndim} dims; at most {max_dims} are supported")
        shapes[i, : t.ndim] = torch.tensor(t.shape, dtype=torch.int64)
    agreed = all_reduce_max(shapes)
    out = []
    for t, row in zip(states, agreed):
        target = tuple(int(v) for v in row[: t.ndim])
        if t.numel() == 0 and math.prod(target) > 0:
            t = torch.zeros(target, dtype=t.dtype, device=t.device)
        elif tuple(t.shape) != target:
            raise ValueError(f"metric state shape {tuple(t.shape)} differs across processes (largest {target})")
        out.append(t)
    return out


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of a CPU int64 tensor over processes (device chosen as in all_reduce_sum)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    moved = t.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.MAX)
    return moved.cpu()


class StreamingMetric:
    """Base class: `update(...)` adds to additive state tensors, `compute()` reduces and reports.

    Subclasses register their state with `_add_state(name, tensor)`; `reset()` zeroes it and
    `_reduced()` returns the process-summed state as a dict.
    """

    def __init__(self) -> None:
        self._state_names: list[str] = []

    def _add_state(self, name: str, value: torch.Tensor) -> None:
        setattr(self, name, value)
        if name not in self._state_names:
            self._state_names.append(name)

    def reset(self) -> None:
        for name in self._state_names:
            getattr(self, name).zero_()

    def _reduced(self) -> dict[str, torch.Tensor]:
        states = [getattr(self, n) for n in self._state_names]
        if is_distributed():
            states = _agree_on_shapes(states)
        values = all_reduce_sum(states)
        return dict(zip(self._state_names, values))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The additive state of this process (for tests and for merging by hand)."""
        return {n: getattr(self, n).clone() for n in self._state_names}


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise a ValueError naming the argument when `x` holds NaN or inf."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values")

