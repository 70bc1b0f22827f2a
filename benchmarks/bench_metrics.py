"""Metric speed: ours vs the straightforward reference, one JSON line per comparison.

* chamfer_30k: 4D-Occ Chamfer of two 30k-point clouds; ours = exact KD-tree search (CPU) or
  chunked cdist (CUDA); reference = the full [N, M] distance matrix (``torch.cdist``), the way
  many forecasting repos compute it. Both values are checked to agree.
* occ_miou: OccWorld-protocol counts for a batch of 200 x 200 x 16 grids over 6 forecast steps;
  ours = one bincount; reference = the per-step, per-class boolean loop of OccWorld's
  ``multi_step_MeanIou._after_step`` (numpy here). Both results are checked to agree.
* ssim: SSIM of 6 forecast steps x 16 windows of 64 x 128 camera frames in float64 (a camera table's batch);
  ours = ``ssim_per_image`` (the separable Gaussian as two banded matrix products); reference = the
  11 x 11 window as one depthwise ``conv2d`` (``filter2(..., 'valid')`` as the reference ``ssim_index.m``
  writes it). Both values are checked to agree to 1e-12.
ratio = reference time / our time (> 1: ours is faster). ``--quick`` runs fewer repeats and a
smaller problem (10k-point clouds, one grid sample) so it finishes in under a minute on 2 CPU
cores; the full run uses 30k-point clouds (the full reference matrix is 3.6 GB).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from drivewm.metrics import OccupancyForecastMetric, chamfer_distance
from drivewm.metrics.image import ssim_per_image


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Mean seconds per call over ``repeats`` calls (after one untimed warm-up call), and the value."""
    out = fn() if warmup else None
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def chamfer_full_matrix(a: torch.Tensor, b: torch.Tensor) -> float:
    d = torch.cdist(a, b).square()  # [N, M]
    return float((d.min(1).values.mean() + d.min(0).values.mean()) / 2)


def bench_chamfer(n: int, repeats: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(n, 3, generator=g) * torch.tensor([30.0, 30.0, 2.0])).to(device)
    b = (torch.randn(n, 3, generator=g) * torch.tensor([30.0, 30.0, 2.0])).to(device)
    ours_t, ours = timed(lambda: chamfer_distance(a, b), repeats)
    # One call: the full-matrix reference takes tens of seconds at 30k points and has nothing to warm up.
    ref_t, ref = timed(lambda: chamfer_full_matrix(a, b), 1, warmup=False)
    if abs(ours - ref) > 1e-3 * max(1.0, abs(ref)):
        raise AssertionError(f"chamfer mismatch: ours {ours} vs full matrix {ref}")
    return {"bench": "metrics", "case": f"chamfer_{n // 1000}k_vs_{n // 1000}k_{device}", "unit": "s",
            "ours": round(ours_t, 5), "reference": round(ref_t, 5), "ratio": round(ref_t / ours_t, 2), "target": 1.0}


def occworld_loop_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[H, 17, 3] (seen, correct, positive) per step and class, as OccWorld's loop computes them."""
    h = gt.shape[1]
    out = np.zeros((h, 17, 3), np.int64)
    for t in range(h):
        p, g = pred[:, t].ravel(), gt[:, t].ravel()
        for c in range(17):
            out[t, c] = (np.sum(g == c), np.sum((g == c) & (p == c)), np.sum(p == c))
    return out


def bench_occupancy(batch: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    shape = (batch, 6, 200, 200, 16)
    gt = torch.randint(0, 18, shape, generator=g, dtype=torch.uint8)
    pred = torch.where(torch.rand(shape, generator=g) < 0.3, torch.randint(0, 18, shape, generator=g, dtype=torch.uint8), gt)
    gn, pn = gt.numpy(), pred.numpy()

    def ours() -> np.ndarray:
        m = OccupancyForecastMetric()
        m.update(pred, gt)
        conf = m.confusion
        return torch.stack([conf.sum(2), torch.diagonal(conf, dim1=1, dim2=2), conf.sum(1)], -1)[:, :17].numpy()

    ours_t, ours_counts = timed(ours, repeats)
    ref_t, ref_counts = timed(lambda: occworld_loop_counts(pn, gn), repeats)
    if not np.array_equal(ours_counts, ref_counts):
        raise AssertionError("occupancy counts differ from the per-class loop")
    return {"bench": "metrics", "case": f"occ_miou_{batch}x6x200x200x16", "unit": "s",
            "ours": round(ours_t, 5), "reference": round(ref_t, 5), "ratio": round(ref_t / ours_t, 2), "target": 1.0}


def ssim_conv2d(pred: torch.Tensor, target: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM [N] with the 11 x 11 Gaussian window as one depthwise 2-D convolution over the valid positions."""
    n, c = pred.shape[:2]
    ax = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(ax**2) / (2 * 1.5**2))
    g = g / g.sum()
    win = torch.outer(g, g).expand(c, 1, 11, 11)
    stack = torch.cat([pred, target, pred * pred, target * target, pred * target])
    mu_p, mu_t, e_pp, e_tt, e_pt = torch.nn.functional.conv2d(stack, win, groups=c).split(n)
    var_p, var_t, cov = e_pp - mu_p**2, e_tt - mu_t**2, e_pt - mu_p * mu_t
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(1)


def bench_ssim(repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 256, (96, 3, 64, 128), generator=g).double()
    pred = (target + torch.randint(-20, 21, target.shape, generator=g)).clamp(0, 255)
    ours_t, ours = timed(lambda: ssim_per_image(pred, target, 255.0), repeats)
    ref_t, ref = timed(lambda: ssim_conv2d(pred, target, 255.0), repeats)
    if not torch.allclose(ours, ref, rtol=0, atol=1e-12):
        raise AssertionError(f"SSIM differs from the conv2d window by {float((ours - ref).abs().max())}")
    return {"bench": "metrics", "case": "ssim_96x64x128_float64", "unit": "s", "ours": round(ours_t, 4),
            "reference": round(ref_t, 4), "ratio": round(ref_t / ours_t, 2), "target": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller grid batch (< 1 min on 2 cores)")
    parser.add_argument("--device", default="cpu", help="device for the Chamfer case: cpu or cuda")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    print(json.dumps(bench_chamfer(10_000 if args.quick else 30_000, repeats, args.device)), flush=True)
    print(json.dumps(bench_occupancy(1 if args.quick else 4, repeats)), flush=True)
    print(json.dumps(bench_ssim(repeats)), flush=True)


if __name__ == "__main__":
    main()
