"""Process-group set-up in one place: torchrun's environment in, a `DistEnv` out; failures are loud.

Launched plainly, drivewm trains in one process. Under `torchrun --nproc_per_node N` the
environment carries RANK / WORLD_SIZE / LOCAL_RANK and we start a process group (gloo on CPU,
nccl on CUDA). We never fall back to one process when the group cannot start: a half-distributed
run silently trains on 1/N of the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from drivewm.config import ConfigError
from drivewm.lifetime import end_with_parent


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is available")
    return torch.device(name)


def setup_distributed(device_name: str = "auto") -> DistEnv:
    """Start the process group when launched by torchrun; otherwise describe a single process."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv(device=device)
    end_with_parent(os.getppid())  # a rank whose torchrun agent was killed must not train on alone
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend)
        except Exception as e:  # noqa: BLE001 - re-raised with the context a user needs
            raise RuntimeError(
                f"could not start the {backend} process group (rank {rank} of {world_size}): {e}"
            ) from e
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown_distributed(finished: bool = True) -> None:
    """Leave the process group. After a run that finished, wait for every rank first: gloo aborts a
    process whose group is destroyed while a peer still talks to it. After a failure, do not wait
    (the other ranks may never arrive)."""
    if dist.is_initialized():
        if finished and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over processes (a no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank `src`'s `obj` on every rank (the object itself in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def gather_objects(obj: object) -> list:
    """Every rank's `obj`, in rank order, on every rank (``[obj]`` in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def leave_rank(code: int) -> NoReturn:
    """End a torchrun rank after its work, skipping the interpreter's teardown.

    With the process group already destroyed, C++ objects that torch.distributed leaves to static
    destruction can still abort a CPU rank at exit ("terminate called without an active exception",
    about one FSDP run over gloo in ten), which torchrun reports as a failed run. Everything the run
    writes is already on disk (atomic renames), so flushing the streams and exiting directly loses nothing.
    """
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
