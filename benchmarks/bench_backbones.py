"""Attention vs selective SSM backbones at equal width and depth: training cost scaling, rollout step cost, quality.

Prints one JSON line per comparison ({"bench", "case", "unit", "ours", "reference", "ratio", "target"}):
ours = the SSM, reference = attention, ratio > 1 means the SSM is better. Per-length measurements go to
stderr. Peak memory: torch.cuda.max_memory_allocated on GPU; on CPU the bytes of the distinct tensors
autograd saves for backward (torch.autograd.graph.saved_tensors_hooks, parameters excluded), i.e. the
activation memory of one training step.

    python benchmarks/bench_backbones.py [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from drivewm.backbones import BackboneConfig, SequenceBackbone, build_backbone

KINDS = ("ssm", "attention")


def emit(case: str, unit: str, ours, reference, ratio, target: str, **extra) -> None:
    line = {"bench": "backbones", "case": case, "unit": unit, "ours": ours, "reference": reference,
            "ratio": ratio, "target": target, **extra}
    print(json.dumps(line), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_cost(model: SequenceBackbone, length: int, batch: int, device: torch.device, reps: int,
                    min_total_s: float) -> tuple[float, float]:
    """(best seconds of forward+backward, peak bytes) for one [batch, length, dim] sequence.

    Best of at least `reps` runs, repeated until `min_total_s` was spent (at most 20): on a shared
    machine the minimum is the stable statistic."""
    x = torch.randn(batch, length, model.cfg.dim, device=device, requires_grad=True)
    model(x).square().mean().backward()  # warm-up (allocator, kernels)
    best, spent, runs = math.inf, 0.0, 0
    while runs < reps or (spent < min_total_s and runs < 20):
        model.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        model(x).square().mean().backward()
        sync(device)
        elapsed = time.perf_counter() - t0
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best, peak_bytes(model, x)


def peak_bytes(model: nn.Module, x: torch.Tensor) -> float:
    if x.device.type == "cuda":
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(x.device)
        before = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        model(x).square().mean().backward()
        torch.cuda.synchronize(x.device)
        return float(torch.cuda.max_memory_allocated(x.device) - before)
    params = {p.data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    loss.backward()
    return float(sum(storages.values()))


def fit_exponent(lengths: list[int], values: list[float]) -> tuple[float, float]:
    """Slope and intercept of log(value) vs log(length) on the longer half of the lengths."""
    half = len(lengths) // 2
    slope, intercept = np.polyfit(np.log(lengths[half:]), np.log(values[half:]), 1)
    return float(slope), float(intercept)


def crossover(lengths, t_ssm, t_att) -> tuple[float | None, str]:
    """Length where the SSM becomes cheaper than attention: measured (log-log interpolation), else
    extrapolated from least-squares cost models, attention a + b L + c L^2 and the SSM a + b L."""
    faster = [s < a for s, a in zip(t_ssm, t_att)]
    for i, f in enumerate(faster):
        if f and all(faster[i:]):
            if i == 0:
                return float(lengths[0]), "ssm cheaper at every measured length"
            r0, r1 = math.log(t_att[i - 1] / t_ssm[i - 1]), math.log(t_att[i] / t_ssm[i])
            w = r0 / (r0 - r1)
            return float(math.exp(math.log(lengths[i - 1]) + w * (math.log(lengths[i]) - math.log(lengths[i - 1])))), "interpolated"
    length = np.asarray(lengths, dtype=float)
    att = np.polyfit(length, t_att, 2)
    ssm = np.polyfit(length, t_ssm, 1)
    roots = [r.real for r in np.roots(att - np.concatenate([[0.0], ssm])) if abs(r.imag) < 1e-9 and r.real > length[-1]]
    if att[0] > 0 and roots:
        return float(min(roots)), "extrapolated: attention a + bL + cL^2 vs ssm a + bL, least squares"
    return None, "no crossover: no quadratic attention term in the measured range"


def rollout_step_ms(model: SequenceBackbone, past: int, device: torch.device, reps: int) -> float:
    """Best time of one single-token step after `past` tokens."""
    with torch.no_grad():
        state = model.init_state(1, device=device)
        if past:
            _, state = model.step(torch.randn(1, past, model.cfg.dim, device=device), state)
        token = torch.randn(1, 1, model.cfg.dim, device=device)
        model.step(token, state)  # warm-up
        best = math.inf
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            model.step(token, state)  # states are values: every repetition starts from the same past
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def sinusoid_batch(gen: torch.Generator, batch: int, length: int, noise: float) -> torch.Tensor:
    """Noisy sinusoids with random frequency, phase and amplitude: [batch, length + 1, 1]."""
    t = torch.arange(length + 1, dtype=torch.float32)
    freq = torch.rand(batch, 1, generator=gen) * 0.5 + 0.05
    phase = torch.rand(batch, 1, generator=gen) * 2 * math.pi
    amp = torch.rand(batch, 1, generator=gen) + 0.5
    clean = amp * torch.sin(freq * t + phase)
    return (clean + noise * torch.randn(clean.shape, generator=gen))[..., None]


class Forecaster(nn.Module):
    """Scalar series -> next value: Linear in, backbone, Linear out."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(1, cfg.dim)
        self.backbone = build_backbone(cfg)
        self.out = nn.Linear(cfg.dim, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        return self.out(self.backbone(self.inp(series)))


def train_forecaster(cfg: BackboneConfig, steps: int, device: torch.device, length: int = 64, noise: float = 0.1) -> float:
    """Train on next-value prediction; held-out MSE."""
    torch.manual_seed(0)
    model = Forecaster(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        seq = sinusoid_batch(gen, 16, length, noise).to(device)
        loss = (model(seq[:, :-1]) - seq[:, 1:]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seq = sinusoid_batch(torch.Generator().manual_seed(2), 256, length, noise).to(device)
    with torch.no_grad():
        return float((model(seq[:, :-1]) - seq[:, 1:]).square().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer lengths (64-1024), small width, short training")
    ap.add_argument("--device", default="auto", help="'auto' (cuda if present), 'cpu' or 'cuda'")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads (default 1: steady timings on a shared machine; 0 keeps torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.quick:
        lengths, dim, depth, batch, reps, train_steps = [64, 128, 256, 512, 1024], 64, 2, 1, 2, 80
    else:
        lengths, dim, depth, batch, reps, train_steps = [64, 128, 256, 512, 1024, 2048, 4096], 128, 4, 1, 3, 600
    mem_method = "cuda.max_memory_allocated" if device.type == "cuda" else "bytes of tensors saved for backward (saved_tensors_hooks)"
    base = dict(dim=dim, depth=depth, heads=4, max_len=max(lengths) + 1, chunk=64)
    models = {k: build_backbone(BackboneConfig(kind=k, **base)).to(device) for k in KINDS}
    for k, m in models.items():
        log(f"{k}: {sum(p.numel() for p in m.parameters())} parameters, dim {dim}, depth {depth}, device {device}, "
            f"threads {torch.get_num_threads()}")

    times: dict[str, list[float]] = {k: [] for k in KINDS}
    mems: dict[str, list[float]] = {k: [] for k in KINDS}
    log(f"{'L':>6} {'ssm s':>9} {'attn s':>9} {'ssm MiB':>9} {'attn MiB':>9}   (memory: {mem_method})")
    for length in lengths:
        for k in KINDS:
            t, mem = train_step_cost(models[k], length, batch, device, reps, 0.5 if args.quick else 2.0)
            times[k].append(t)
            mems[k].append(mem)
        log(f"{length:>6} {times['ssm'][-1]:9.4f} {times['attention'][-1]:9.4f} "
            f"{mems['ssm'][-1] / 2**20:9.1f} {mems['attention'][-1] / 2**20:9.1f}")

    fits = {k: fit_exponent(lengths, times[k]) for k in KINDS}
    e_ssm, e_att = fits["ssm"][0], fits["attention"][0]
    emit("train_time_exponent", "exponent of L (fwd+bwd time, longer half)", round(e_ssm, 3), round(e_att, 3),
         round(e_att / e_ssm, 3), "ssm <= 1.15", lengths=lengths[len(lengths) // 2:])
    m_ssm, m_att = (fit_exponent(lengths, mems[k])[0] for k in KINDS)
    emit("train_memory_exponent", "exponent of L (peak memory, longer half)", round(m_ssm, 3), round(m_att, 3),
         round(m_att / m_ssm, 3), "report", method=mem_method)
    lmax = lengths[-1]
    emit(f"train_time_L{lmax}", "s per fwd+bwd", round(times["ssm"][-1], 5), round(times["attention"][-1], 5),
         round(times["attention"][-1] / times["ssm"][-1], 3), "report", batch=batch, dim=dim, depth=depth)
    emit(f"train_peak_memory_L{lmax}", "MiB", round(mems["ssm"][-1] / 2**20, 2), round(mems["attention"][-1] / 2**20, 2),
         round(mems["attention"][-1] / mems["ssm"][-1], 3), "report", method=mem_method)
    cross, how = crossover(lengths, times["ssm"], times["attention"])
    emit("train_time_crossover", "tokens (L where ssm becomes faster)", None if cross is None else round(cross, 1),
         None, None, "printed", method=how)

    for m in models.values():
        m.eval()
    steps = {k: [rollout_step_ms(models[k], past, device, reps=40) for past in (16, 1024)] for k in KINDS}
    log(f"rollout ms/step at 16 and 1024: ssm {steps['ssm']}, attention {steps['attention']}")
    growth = {k: steps[k][1] / steps[k][0] for k in KINDS}
    emit("rollout_step_growth_1024_vs_16", "x (step time at 1024 / at 16)", round(growth["ssm"], 3),
         round(growth["attention"], 3), round(growth["attention"] / growth["ssm"], 3), "ssm <= 1.2")
    emit("rollout_step_ms_at_1024", "ms per token step", round(steps["ssm"][1], 4), round(steps["attention"][1], 4),
         round(steps["attention"][1] / steps["ssm"][1], 3), "report")

    qcfg = dict(dim=64, depth=2, heads=4, max_len=128, chunk=8)
    mse = {k: train_forecaster(BackboneConfig(kind=k, **qcfg), train_steps, device) for k in KINDS}
    persistence = float((lambda s: (s[:, 1:] - s[:, :-1]).square().mean())(
        sinusoid_batch(torch.Generator().manual_seed(2), 256, 64, 0.1)))
    emit("forecast_noisy_sinusoid_mse", "held-out next-value MSE", round(mse["ssm"], 5), round(mse["attention"], 5),
         round(mse["attention"] / mse["ssm"], 3), "comparable (ratio 0.5-2)", train_steps=train_steps,
         persistence_baseline=round(persistence, 5), noise_floor=0.01)


if __name__ == "__main__":
    main()
