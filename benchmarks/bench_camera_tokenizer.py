"""Camera VQ-GAN `tiny` preset: reconstruction PSNR on held-out simulator frames after the preset's training steps.

Target (issue "Camera world models, part 1"): the preset trains within 15 minutes on 2 idle cores to
PSNR >= 30 dB on held-out simulator frames at 4x downsampling, with >= 80 % of the codes in use.

Budget by step count: the preset's `train.steps` is sized from the measured CPU-seconds per step (one thread)
so that steps x CPU-s/step <= 2 cores x 900 s. The bench trains exactly those steps and reports the CPU
time it took and its equivalent on 2 idle cores (CPU-s / 2), so a figure taken on a loaded machine still
says what it would cost on an idle one. `--minutes` caps the wall clock (then fewer steps are done); `--stop-at N` trains only the first N steps of
the preset's schedule (warm-up, cosine and GAN start still placed over `train.steps`), so a short run is
comparable step for step with the full one.

Data: the `tiny_camera` simulator preset (64 x 128 front camera), training episodes seeded 0.., held-out
episodes seeded 100000.. (other maps, other traffic). Training: the preset's model and optimizer settings
(AdamW, its betas and lr with warm-up + cosine over the preset's steps, its GAN schedule), random frames.
Evaluation: tokens -> uint8 reconstructions of every held-out frame; PSNR (0..255) averaged over frames;
codes in use: distinct codes over all held-out tokens / codebook size; perplexity of the held-out code
histogram. `--curve N` also prints the held-out PSNR every N steps (evaluation time is not counted), and with
`model.weight_ema` that of the weight average too (`averaged`), which the last training step hands to the model.
Reference for the PSNR line: the same frames through 4x area downsampling and bilinear upsampling (a
continuous 4x bottleneck with 3 channels, no learning).

    python benchmarks/bench_camera_tokenizer.py [--quick] [--config PATH] [--curve N] [--stop-at N] [key=value ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from drivewm.train.config import load_run_config
from drivewm.registry import build_model
from drivewm.sim import CameraSpec, sim_preset, simulate_episode
from drivewm.tokenizers.camera import to_uint8
from drivewm.tokenizers.quantizer import code_usage_logs
from drivewm.train.schedule import warmup_cosine

HELD_OUT_SEED = 100_000


def frames(seeds: range, length: int, hw: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, H, W, 3]: every frame of simulated episodes (camera only)."""
    cfg = sim_preset("tiny_camera", camera_spec=CameraSpec(height=hw[0], width=hw[1]), lidar=False, visibility=False)
    return torch.from_numpy(np.concatenate([simulate_episode(cfg, s, length)["camera"] for s in seeds]))


def frame_psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB, peak 255) of uint8 [N, H, W, 3]."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def line(case: str, unit: str, ours: float, reference: float | None, target: float | None, ratio: float | None = None, **extra) -> None:
    if ratio is None and reference is not None:
        ratio = round(ours / reference, 3)
    print(json.dumps({"bench": "camera_tokenizer", "case": case, "unit": unit, "ours": round(ours, 3),
                      "reference": None if reference is None else round(reference, 3), "ratio": ratio, "target": target, **extra}))


def evaluate(model: torch.nn.Module, held_out: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(mean held-out PSNR in dB, every held-out token) through encode -> decode."""
    was_training = model.training
    model.eval()
    recs, codes = [], []
    with torch.no_grad():
        for chunk in held_out.split(64):
            idx = model.encode(chunk)
            codes.append(idx)
            recs.append(to_uint8(model.decode(idx)))
    model.train(was_training)
    return float(frame_psnr(torch.cat(recs), held_out).mean()), torch.cat(codes)


def averaged(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model holding its weight average (what the last training step hands over)."""
    copied = copy.deepcopy(model)
    copied.weight_average.copy_to(copied.averaged_parameters())
    return copied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 minute of training on fewer episodes")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock cap on training (default: none, the preset's steps)")
    ap.add_argument("--config", default="tokenizer/camera_vqgan_tiny.yaml")
    ap.add_argument("--episodes", type=int, default=32, help="training episodes")
    ap.add_argument("--held-out", type=int, default=4, help="held-out episodes")
    ap.add_argument("--frames", type=int, default=40, help="frames per episode")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop-at", type=int, default=0, help="train only the first N steps of the preset's schedule (0: all)")
    ap.add_argument("--curve", type=int, default=0, help="print the held-out PSNR every N steps (0: only at the end)")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.episodes, args.held_out, args.frames = 1.0, 6, 2, 20
    torch.set_num_threads(args.threads)

    run = load_run_config(args.config, args.overrides)
    torch.manual_seed(run.train.seed)
    model = build_model(run.model)
    model.load_external_files()
    hw = model.image_hw
    t0 = time.perf_counter()
    train = frames(range(args.episodes), args.frames, hw)
    held_out = frames(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.frames, hw)
    sim_s = time.perf_counter() - t0

    tc = run.train
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    g = torch.Generator().manual_seed(tc.seed)
    model.train()
    budget = math.inf if args.minutes is None else args.minutes * 60.0
    start, train_cpu, eval_s = time.perf_counter(), 0.0, 0.0
    step, logs = 0, {}
    last = min(tc.steps, args.stop_at) if args.stop_at > 0 else tc.steps
    while step < last and time.perf_counter() - start - eval_s < budget:
        cpu0 = time.process_time()
        for group in opt.param_groups:
            group["lr"] = tc.lr * warmup_cosine(step, warmup=tc.warmup_steps, total=tc.steps, min_ratio=tc.min_lr_ratio)
        pick = torch.randint(0, len(train), (tc.batch_size,), generator=g)
        out = model.loss({"camera": train[pick][:, None]})
        out["loss"].backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.on_step_end(step, tc.steps)
        step += 1
        logs = {k: float(v.detach()) for k, v in out.items()}
        train_cpu += time.process_time() - cpu0
        if args.curve and step % args.curve == 0 and step < last:
            e0 = time.perf_counter()
            value, idx = evaluate(model, held_out)
            extra = {} if model.weight_average is None else {"averaged": round(evaluate(averaged(model), held_out)[0], 3)}
            eval_s += time.perf_counter() - e0
            line("vqgan_tiny_heldout_psnr_at_step", "dB", value, None, 30.0, steps=step, train_psnr=round(logs["psnr"], 2),
                 codes_in_use=round(100.0 * float(torch.unique(idx).numel()) / model.vocab_size, 1),
                 train_cpu_s=round(train_cpu, 1), **extra)
    train_s = time.perf_counter() - start - eval_s

    ours, idx = evaluate(model, held_out)
    x = held_out.movedim(-1, 1).float()
    small = F.interpolate(x, scale_factor=0.25, mode="area")
    ref_img = F.interpolate(small, size=hw, mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8).movedim(1, -1)
    reference = float(frame_psnr(ref_img, held_out).mean())
    usage = code_usage_logs(idx, model.vocab_size)
    in_use = 100.0 * float(torch.unique(idx).numel()) / model.vocab_size

    cpu_per_step = train_cpu / max(step, 1)
    common = {"steps": step, "preset_steps": tc.steps, "cpu_s_per_step": round(cpu_per_step, 3),
              "train_cpu_min": round(train_cpu / 60, 2), "idle_2core_min": round(train_cpu / 2 / 60, 2),
              "train_min": round(train_s / 60, 2), "threads": args.threads, "train_frames": len(train),
              "held_out_frames": len(held_out)}
    line("vqgan_tiny_heldout_psnr_vs_bilinear_4x", "dB", ours, reference, 30.0, **common)
    line("vqgan_tiny_codes_in_use", "%", in_use, None, 80.0, perplexity=round(float(usage["perplexity"]), 1),
         codebook=model.vocab_size)
    line("vqgan_tiny_train_psnr_last_batch", "dB", logs.get("psnr", math.nan), None, None, sim_s=round(sim_s, 1))


if __name__ == "__main__":
    main()
