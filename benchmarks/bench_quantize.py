"""Quantizer forward + backward: our VQ and FSQ against a straightforward VQ (torch.cdist + argmin).

Input: 16 x 1024 vectors of dim 64 (requires grad), codebooks of 512, 4096 and 16384 codes. Every
method computes its quantized output with straight-through gradients and its loss, then backward.
Ours: ``VectorQuantizer`` with the codebook learned by the loss (the same losses as the reference;
no k-means, no restarts) and ``FSQ`` with levels of about the same codebook size
(Mentzer et al.'s recommendations: [8, 8, 8] = 512, [7, 5, 5, 5, 5] = 4375, [8, 8, 8, 6, 5] = 15360).
Time: process CPU seconds with one thread on CPU (other load on the machine does not count), CUDA
events on a GPU. Peak memory: on CPU the resident set size sampled every 0.2 ms during one step,
minus the size before it (glibc's mmap threshold is pinned at 128 KiB, so every tensor buffer is
mmap'd and freed memory leaves the RSS); on a GPU
torch.cuda.max_memory_allocated minus the memory held before the step.
Prints one JSON line per comparison; ratio = reference / ours (> 1: ours faster or smaller).

When lucidrains' vector-quantize-pytorch is importable (never a drivewm dependency: install it into a
folder of its own, e.g. ``pip install --target /tmp/vqp --no-deps vector-quantize-pytorch einx
frozendict loguru torch_einops_utils`` and run with ``PYTHONPATH=/tmp/vqp``), it adds lines against
its ``VectorQuantize`` (EMA codebook, ours with EMA too) and its ``FSQ`` at the same sizes.

    python benchmarks/bench_quantize.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pin_mmap_threshold() -> None:
    """mallopt(M_MMAP_THRESHOLD, 128 KiB): buffers above it are mmap'd and unmapped on free (no dynamic raise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
    except OSError:
        pass


_pin_mmap_threshold()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from drivewm.tokenizers.fsq import FSQ  # noqa: E402
from drivewm.tokenizers.quantizer import QuantizerConfig  # noqa: E402
from drivewm.tokenizers.vq import VectorQuantizer  # noqa: E402

N, DIM = 16 * 1024, 64
SIZES = (512, 4096, 16384)
FSQ_LEVELS = {512: [8, 8, 8], 4096: [7, 5, 5, 5, 5], 16384: [8, 8, 8, 6, 5]}


class ReferenceVQ(torch.nn.Module):
    """The textbook VQ-VAE layer: cdist to every code, argmin, codebook + commitment loss, straight-through."""

    def __init__(self, k: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.randn(k, dim) / dim**0.5)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.cdist(x, self.embed).argmin(1)
        q = self.embed[idx]
        loss = F.mse_loss(q, x.detach()) + self.beta * F.mse_loss(x, q.detach())
        return x + (q - x).detach(), loss


class _LucidrainsVQ(torch.nn.Module):
    """vector-quantize-pytorch's layers behind the (quantized, loss) interface."""

    def __init__(self, kind: str, k: int):
        super().__init__()
        import vector_quantize_pytorch as vqp

        self.kind = kind
        self.inner = (vqp.VectorQuantize(dim=DIM, codebook_size=k, decay=0.99, commitment_weight=0.25) if kind == "vq"
                      else vqp.FSQ(levels=FSQ_LEVELS[k], dim=DIM))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "vq":
            q, _, loss = self.inner(x[None])
            return q[0], loss.sum()
        q, _ = self.inner(x[None])
        return q[0], q.new_zeros(())


def lucidrains_available() -> bool:
    try:
        import vector_quantize_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def make(method: str, k: int) -> torch.nn.Module:
    if method == "reference":
        return ReferenceVQ(k, DIM)
    if method == "vq":
        return VectorQuantizer(QuantizerConfig(codebook_size=k, ema=False, kmeans_init=False, dead_threshold=0.0), DIM)
    if method == "vq_ema":
        return VectorQuantizer(QuantizerConfig(codebook_size=k, ema=True, kmeans_init=False, dead_threshold=0.0), DIM)
    if method in ("lucidrains_vq", "lucidrains_fsq"):
        return _LucidrainsVQ(method.split("_")[1], k)
    return FSQ(QuantizerConfig(kind="fsq", fsq_levels=FSQ_LEVELS[k]), DIM)


def report(case: str, ours: dict, ref: dict, device: str) -> None:
    for metric, unit in (("ms", "ms"), ("mib", "MiB")):
        o, r = ours[metric], ref[metric]
        print(json.dumps({
            "bench": "quantize", "case": f"{case}_{'time' if metric == 'ms' else 'peak_mem'}_{device}",
            "unit": unit, "ours": round(o, 3), "reference": round(r, 3),
            "ratio": round(r / o, 3) if o > 0 else None, "target": 1.0,
        }), flush=True)


def step(module: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> None:
    out = module(x)
    q, loss = (out.quantized, out.loss) if hasattr(out, "quantized") else out
    ((q * w).mean() + loss).backward()


def run_case(method: str, k: int, repeats: int, device: str) -> dict:
    """Time per forward+backward (ms) and peak extra memory (MiB) of one method at one codebook size."""
    torch.manual_seed(0)
    module = make(method, k).to(device).train()
    x = torch.randn(N, DIM, device=device, requires_grad=True)
    w = torch.randn(N, DIM, device=device)
    if device == "cuda":
        step(module, x, w)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            step(module, x, w)
        end.record()
        torch.cuda.synchronize()
        return {"ms": start.elapsed_time(end) / repeats, "mib": (torch.cuda.max_memory_allocated() - base) / 2**20}
    step(module, x, w)  # warm-up: gradients and caches exist before the measured step
    peak = peak_rss_mib(lambda: step(module, x, w))
    t0 = time.process_time()
    for _ in range(repeats):
        step(module, x, w)
    return {"ms": (time.process_time() - t0) / repeats * 1e3, "mib": peak}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_mib(fn) -> float:
    """Peak resident memory added while ``fn`` runs (MiB), sampled by a background thread."""
    base = _rss_bytes()
    peak, done = [base], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    t = threading.Thread(target=sample)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(0, peak[0] - base) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="One timed repeat per case (under a minute on CPU).")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    repeats = 1 if args.quick else 5
    lucidrains = lucidrains_available()
    for k in SIZES:
        ref = run_case("reference", k, repeats, args.device)
        for method in ("vq", "fsq"):
            report(f"{method}_K{k}_vs_cdist", run_case(method, k, repeats, args.device), ref, args.device)
        if lucidrains:
            report(f"vq_ema_K{k}_vs_lucidrains", run_case("vq_ema", k, repeats, args.device),
                   run_case("lucidrains_vq", k, repeats, args.device), args.device)
            report(f"fsq_K{k}_vs_lucidrains", run_case("fsq", k, repeats, args.device),
                   run_case("lucidrains_fsq", k, repeats, args.device), args.device)


if __name__ == "__main__":
    main()
