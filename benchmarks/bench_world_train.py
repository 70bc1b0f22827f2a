"""Training-step speed of the token world models on this machine's device, each comparison in one run.

1. MaskGIT (Copilot4D) training pass: model.train_pass=auto's choice on this device against the other.
   Each clip denoises one target frame k; the network is causal in time, so one pass over the whole
   clips ('whole') and one pass per k over the clips cut after frame k ('cut') give the same logits.
   The cut clips skip the FLOPs of the unseen frames (auto's choice on a CPU); the whole pass launches
   up to ten times fewer kernels (auto's choice on a GPU). ratio > 1: auto chose the faster one here.
2. On a CUDA device only: bf16 autocast (train.precision=auto there) against fp32, OccWorld tiny.

Models come from the presets world/{maskgit,occworld}_tiny.yaml, untrained, on random tokens (no tokenizer,
so no ego-warped hint): the training step alone is timed, forward, backward and AdamW.

    python benchmarks/bench_world_train.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from drivewm.train.config import load_run_config
from drivewm.registry import build_model


def untrained(config: str, device: torch.device):
    # Tokens of tokenizer/occ_tiny.yaml (512 codes, 16 x 16 per frame), stated since no tokenizer gives them.
    cfg = load_run_config(f"world/{config}", ["model.tokenizer_run=''", "model.warp_prior=false",
                                              "model.vocab_size=512", "model.token_shape=[16,16]"])
    torch.manual_seed(0)
    return build_model(cfg.model).to(device).train()


def step_seconds(model, step, steps: int, device: torch.device) -> float:
    """Mean seconds of `step()` (one optimizer step) over `steps`, after two warm-up steps."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def trainer(model, batch: int, device: torch.device, loss_fn, autocast: bool = False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    h, w = model.token_shape
    t = model.cfg.max_frames
    g = torch.Generator(device).manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (batch, t, h, w), generator=g, device=device)
    cond = torch.randn(batch, t, model.action_dim, generator=g, device=device)

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(tokens, cond)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def maskgit_loss(model, train_pass: str):
    """MaskGIT's own training loss (k drawn, the target corrupted) with model.train_pass set."""

    def loss(tokens, cond):
        model.cfg.train_pass = train_pass
        return model.loss_tokens(tokens, cond)["loss"]

    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fewer timed steps (under a minute on 2 CPU cores).")
    ap.add_argument("--batch", type=int, default=8, help="Clips per training step (the tiny configs' batch).")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on a CPU (0: torch's default).")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = (3 if args.quick else 10) if device.type == "cpu" else (20 if args.quick else 100)
    common = {"bench": "world_train", "device": str(device), "batch": args.batch, "steps": steps}

    mg = untrained("maskgit_tiny.yaml", device)
    default, other = ("cut", "whole") if device.type == "cpu" else ("whole", "cut")  # what train_pass=auto picks
    t_default = step_seconds(mg, trainer(mg, args.batch, device, maskgit_loss(mg, default)), steps, device)
    t_other = step_seconds(mg, trainer(mg, args.batch, device, maskgit_loss(mg, other)), steps, device)
    print(json.dumps({**common, "case": "maskgit_train_step_auto_pass_vs_other", "unit": "steps/s",
                      "auto_pass": default, "other_pass": other,
                      "ours": round(1 / t_default, 2), "reference": round(1 / t_other, 2),
                      "ratio": round(t_other / t_default, 2), "target": None}))

    if device.type == "cuda":
        occ = untrained("occworld_tiny.yaml", device)

        def occ_loss(tokens, cond):
            return occ.loss_tokens(tokens, cond)["loss"]

        t_bf16 = step_seconds(occ, trainer(occ, args.batch, device, occ_loss, autocast=True), steps, device)
        t_fp32 = step_seconds(occ, trainer(occ, args.batch, device, occ_loss), steps, device)
        print(json.dumps({**common, "case": "occworld_train_step_bf16_vs_fp32", "unit": "steps/s",
                          "ours": round(1 / t_bf16, 2), "reference": round(1 / t_fp32, 2),
                          "ratio": round(t_fp32 / t_bf16, 2), "target": None}))


if __name__ == "__main__":
    main()
