"""MaskGIT's parallel decoding against the KV-cached GPT on camera tokens: frames/s at equal quality.

Claim (MaskGIT, arXiv 2202.04200; issue "Camera world models, part 2"): decoding a frame's tokens in a few
parallel steps is much faster than drawing them one by one, at equal quality. Both world models are the camera
presets' (world/maskgit_camera_tiny.yaml: MaskGIT's parallel_decode, cosine schedule, choice temperature 4.5,
8 steps a frame; world/gpt_camera_tiny.yaml: GAIA-1 / DrivingGPT's GPT, token by token with its KV cache,
greedy), on the same token grid of the same frozen VQ-GAN (8x: 8 x 16 tokens at 64 x 128), trained for the same
number of steps on the same simulator windows (camera_world_setup.py).

Speed: frames/s of the token rollout (`rollout`, context tokens given, horizon frames generated; the tokenizer's
encode and decode cost both models the same and are left out), at batch 1 and a larger batch, best of a few
repeats after a warm-up. Quality: PSNR at +1 of each model's decoded forecast against the true frame on held-out
windows, beside copy-last and the tokenizer's own reconstruction (the bound of both), so "equal quality" is
judged on the printed numbers, not assumed.

With --runs GPT_RUN MASKGIT_RUN --data STORE the bench times and scores two trained runs instead (the presets
trained by `drivewm train world` on one tokenizer run), on the store's held-out ('val') windows.

    python benchmarks/bench_camera_decoding.py [--quick] [--threads 2]
    python benchmarks/bench_camera_decoding.py --runs GPT_RUN MASKGIT_RUN --data STORE [--which latest]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from camera_world_setup import (HELD_OUT_SEED, KEYS, camera_windows, copy_last_psnr, forecast, frame_psnr,
                                preset_fields, train_tokenizer, train_world)
from drivewm.conditions import ego_conditions
from drivewm.forecaster import STATIC_KEYS
from drivewm.train.config import load_run_config

PRESETS = {"maskgit_world": "world/maskgit_camera_tiny.yaml", "gpt_world": "world/gpt_camera_tiny.yaml"}


@torch.no_grad()
def frames_per_second(model, windows: dict[str, torch.Tensor], past: int, horizon: int, batch: int,
                      repeats: int) -> float:
    """Generated frames per second of `model.rollout` on `batch` windows' context tokens (best of `repeats`)."""
    pick = {k: v[:batch] for k, v in windows.items()}
    if pick["camera"].shape[0] < batch:
        reps = -(-batch // pick["camera"].shape[0])
        pick = {k: v.repeat(reps, *[1] * (v.dim() - 1))[:batch] for k, v in pick.items()}
    context = model.encode(pick["camera"][:, :past])
    cond = ego_conditions(pick, model.cfg.condition)
    calibration = model.prior_calibration(pick, "the bench's windows")  # a camera warp prior warps by it
    g = torch.Generator().manual_seed(0)
    model.rollout(context, cond, 1, generator=g, calibration=calibration)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.rollout(context, cond, horizon, generator=g, calibration=calibration)
        best = min(best, time.perf_counter() - t0)
    return batch * horizon / best


def line(case: str, unit: str, ours: float, reference: float, target, **extra) -> None:
    print(json.dumps({"bench": "camera_decoding", "case": case, "unit": unit, "ours": round(ours, 3),
                      "reference": round(reference, 3), "ratio": round(ours / reference, 3), "target": target,
                      **extra}), flush=True)


def store_windows(data: str, past: int, stride: int, keys: tuple[str, ...] = KEYS) -> dict[str, torch.Tensor]:
    """The held-out ('val') windows of past + 1 frames of a camera store, every `stride`-th start."""
    from drivewm.data.config import DataConfig
    from drivewm.data.windows import build_dataset

    ds = build_dataset(DataConfig(path=data, past=past, future=1, stride=stride, keys=list(keys)), "val")
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in keys}


def trained_runs(gpt_run: str, maskgit_run: str, which: str) -> dict:
    """{kind: model} of two trained runs, checked to be a gpt_world and a maskgit_world on one token grid."""
    from drivewm.hub import from_pretrained

    models = {"gpt_world": from_pretrained(gpt_run, "cpu", which).eval(),
              "maskgit_world": from_pretrained(maskgit_run, "cpu", which).eval()}
    for (kind, model), run in zip(models.items(), (gpt_run, maskgit_run)):
        if model.cfg.name != kind:
            raise SystemExit(f"--runs: {run} holds a {model.cfg.name}, expected a {kind} (order: GPT_RUN MASKGIT_RUN)")
    if models["gpt_world"].token_shape != models["maskgit_world"].token_shape:
        raise SystemExit("--runs: the two runs tokenize frames to different grids")
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 x 64 frames, few episodes and steps (< 1 minute)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=16, help="training episodes")
    ap.add_argument("--held-out", type=int, default=4, help="held-out episodes")
    ap.add_argument("--frames", type=int, default=40, help="frames per episode")
    ap.add_argument("--tokenizer-steps", type=int, default=600)
    ap.add_argument("--world-steps", type=int, default=400)
    ap.add_argument("--large-batch", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=2, help="frames generated per timed rollout")
    ap.add_argument("--runs", nargs=2, metavar=("GPT_RUN", "MASKGIT_RUN"), help="trained runs instead of the "
                    "bench's own brief training (needs --data)")
    ap.add_argument("--data", default="", help="camera store of --runs' held-out windows (its 'val' split)")
    ap.add_argument("--stride", type=int, default=3, help="--data: frames between held-out windows")
    ap.add_argument("--which", default="latest", help="--runs: checkpoint 'best' or 'latest'")
    args = ap.parse_args()
    if bool(args.runs) != bool(args.data):
        ap.error("--runs and --data go together")
    hw, repeats, codebook, channels = (64, 128), 3, 1024, 32
    if args.quick:
        hw, repeats, codebook, channels = (32, 64), 2, 256, 16
        args.episodes, args.held_out, args.frames, args.tokenizer_steps, args.world_steps = 3, 1, 16, 30, 30
    torch.set_num_threads(args.threads)
    past = load_run_config(PRESETS["gpt_world"]).data.past
    window = past + 1
    if args.runs:
        models = trained_runs(*args.runs, args.which)
        # Runs with the camera warp prior warp each frame by the episode's calibration.
        keys = KEYS + (STATIC_KEYS if any(m.cfg.warp_prior for m in models.values()) else ())
        held_out = store_windows(args.data, past, args.stride, keys)
        tok, train_steps = models["gpt_world"].tokenizer, None
        hw = tuple(held_out["camera"].shape[2:4])
    else:
        train = camera_windows(range(args.episodes), args.frames, hw, window)
        held_out = camera_windows(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.frames, hw, window,
                                  stride=3)
        tok_cfg, tok = train_tokenizer("camera_vqgan", train, hw, codebook, steps=args.tokenizer_steps, clip=1,
                                       batch=8, channels=channels)
        models = {kind: train_world(kind, tok_cfg, tok, train, train_steps=args.world_steps, **preset_fields(preset))
                  for kind, preset in PRESETS.items()}
        train_steps = args.world_steps
    quality = {}
    for kind, model in models.items():
        pred = forecast(model, held_out, past, 1)
        quality[kind] = frame_psnr(pred[:, 0], held_out["camera"][:, past])
    maskgit, gpt = models["maskgit_world"], models["gpt_world"]
    bound = frame_psnr(tok.reconstruct(held_out["camera"][:, past]), held_out["camera"][:, past])
    common = {"token_grid": list(gpt.token_shape), "image": list(hw), "maskgit_steps": maskgit.cfg.steps,
              "maskgit_sampler": maskgit.cfg.sampler, "context_frames": past, "horizon": args.horizon,
              "train_steps": train_steps, "threads": args.threads,
              **({"runs": list(args.runs)} if args.runs else {})}
    for batch in (1, args.large_batch):
        ours = frames_per_second(maskgit, held_out, past, args.horizon, batch, repeats)
        reference = frames_per_second(gpt, held_out, past, args.horizon, batch, repeats)
        line(f"frames_per_s_batch{batch}_maskgit{maskgit.cfg.steps}steps_vs_gpt_kv_cache", "frames/s", ours, reference,
             None, batch=batch, **common)
    line("psnr_+1_heldout_maskgit_vs_gpt", "dB", quality["maskgit_world"], quality["gpt_world"], None,
         copy_last=round(copy_last_psnr(held_out, past), 3), tokenizer_bound=round(bound, 3),
         windows=int(held_out["camera"].shape[0]), **common)


if __name__ == "__main__":
    main()
