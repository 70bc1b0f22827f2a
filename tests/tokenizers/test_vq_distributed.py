"""Two gloo processes, each quantizing half of a batch, end with the codebook one process gets from the whole batch."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from drivewm.tokenizers.quantizer import QuantizerConfig
from drivewm.tokenizers.vq import VectorQuantizer

CFG = dict(codebook_size=8, kmeans_init=False, dead_threshold=0.0, decay=0.9, recent_size=16)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, generator=g), torch.randn(3, 64, 4, generator=g)  # initial codebook, 3 steps x 64 vectors


def _run(x_steps: torch.Tensor, init: torch.Tensor) -> VectorQuantizer:
    q = VectorQuantizer(QuantizerConfig(**CFG), dim=4).train()
    q.embed.copy_(init)
    q.embed_sum.copy_(init)
    for x in x_steps:
        q(x)
    return q


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        init, steps = _data()
        q = _run(steps[:, rank * 32 : (rank + 1) * 32], init)
        torch.save({"embed": q.embed, "cluster_size": q.cluster_size}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ema_statistics_all_reduced(tmp_path):
    out = str(tmp_path / "vq")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    init, steps = _data()
    single = _run(steps, init)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert torch.allclose(got["embed"], single.embed, atol=1e-5)
        assert torch.allclose(got["cluster_size"], single.cluster_size, atol=1e-5)
