"""Epona-style hybrid world model (`epona_world`) against copy-last on held-out simulator video: PSNR at +1 and
+2 frames, and drift over a long rollout (per-step PSNR).

Targets (issue "Camera world models, part 2"): every camera world model beats copy-last on PSNR at +2 frames
(1 s) on held-out episodes, the best by >= 1 dB at +1; a 40-frame rollout of the best model keeps PSNR above
copy-last's at every step.

Data: episodes of the `tiny_camera` simulator preset (64 x 128 front camera) seeded 100000.. (other maps and
traffic than the training store's), each `past + rollout` frames long, with the training store's expert action
noise (`--expert-noise`). Short horizons: every window of `past + 2` frames at stride 4; drift: one rollout of `rollout` frames per episode from its first `past`
frames. Both rows see the same context (past frames, and the ego's actions and poses of every frame: the
plan, and the camera calibration); the model samples with a seeded generator. PSNR (peak 255) per frame,
averaged; the ego-warp baseline's (`EgoWarpCamera`) rides along as `ego_warp`. The KL autoencoder's own
reconstruction of the +1 frames is the ceiling of any model in its latents (`autoencoder_bound_+1`).

    drivewm data generate -o DATA --preset tiny_camera -n 48 -t 40 --expert-noise 0.3
    drivewm train tokenizer --config tokenizer/camera_kl_tiny.yaml data=DATA run_dir=runs/camera_kl_tiny
    drivewm train world --config world/epona_camera_tiny.yaml data=DATA
    python benchmarks/bench_epona_camera.py --run runs/epona_camera_tiny [--quick] [--episodes 8] [--rollout 40]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from drivewm.baselines.camera import CopyLastCamera, EgoWarpCamera
from drivewm.hub import from_pretrained
from drivewm.sim import sim_preset, simulate_episode

HELD_OUT_SEED = 100_000
KEYS = ("camera", "action", "ego_pose")
STATIC = ("camera_intrinsics", "camera_extrinsics")
"""Per-episode keys (no frame axis): the calibration the ego-warp baseline and an ego-warped Epona base read."""


def episodes(count: int, frames: int, expert_noise: float) -> dict[str, torch.Tensor]:
    """Held-out episodes [N, frames, ...] of the tiny_camera preset (camera, action, ego_pose; the calibration
    [N, 3, 3] / [N, 4, 4])."""
    cfg = sim_preset("tiny_camera", lidar=False, expert_noise=expert_noise)
    eps = [simulate_episode(cfg, HELD_OUT_SEED + i, frames) for i in range(count)]
    return {k: torch.from_numpy(np.stack([e[k] for e in eps])) for k in KEYS + STATIC}


def frame_psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 255) of uint8 frames [..., H, W, 3] -> [...]."""
    mse = (a.float() - b.float()).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def forecast_psnr(forecaster, data: dict[str, torch.Tensor], past: int, horizon: int, batch: int,
                  seed: int = 0) -> torch.Tensor:
    """Per-step PSNR [horizon] of `forecaster` on windows data[:, :past + horizon] (context = past frames + plan)."""
    g = torch.Generator().manual_seed(seed)
    scores = []
    for lo in range(0, data["camera"].shape[0], batch):
        part = {k: v[lo : lo + batch] if k in STATIC else v[lo : lo + batch, : past + horizon] for k, v in data.items()}
        context = {k: (v[:, :past] if k == "camera" else v) for k, v in part.items()}
        pred = forecaster.forecast(context, horizon, generator=g)
        scores.append(frame_psnr(pred, part["camera"][:, past:]))
    return torch.cat(scores).mean(0)


def line(case: str, unit: str, ours: float, reference: float, target, **extra) -> None:
    print(json.dumps({"bench": "epona_camera", "case": case, "unit": unit, "ours": round(ours, 3),
                      "reference": round(reference, 3), "ratio": round(ours / reference, 3), "target": target,
                      **extra}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained epona_world run (drivewm train world ...)")
    ap.add_argument("--which", default="best", choices=["best", "latest"], help="which checkpoint of the run")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--rollout", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--expert-noise", type=float, default=0.3, help="as the training store's `data generate --expert-noise`")
    ap.add_argument("--sampling-steps", type=int, default=None,
                    help="Euler steps per frame in place of the run's model.sampling_steps (1: the one-step "
                         "estimate from pure noise, the flow's conditional mean)")
    ap.add_argument("--quick", action="store_true", help="2 episodes, an 8-frame rollout")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.rollout = 2, 8
    torch.manual_seed(0)
    model = from_pretrained(args.run, which=args.which).eval()
    if args.sampling_steps is not None:
        if args.sampling_steps < 1:
            ap.error(f"--sampling-steps must be >= 1, got {args.sampling_steps}")
        model.cfg.sampling_steps = args.sampling_steps
    copy_last = CopyLastCamera()
    past = model.cfg.context_frames
    data = episodes(args.episodes, past + args.rollout, args.expert_noise)

    # Short horizons: windows at stride 4.
    starts = range(0, past + args.rollout - (past + 2) + 1, 4)
    windows = {k: torch.cat([v if k in STATIC else v[:, s : s + past + 2] for s in starts]) for k, v in data.items()}
    t0 = time.perf_counter()
    ours = forecast_psnr(model, windows, past, 2, args.batch)
    seconds = time.perf_counter() - t0
    ref = forecast_psnr(copy_last, windows, past, 2, args.batch)
    warped = forecast_psnr(EgoWarpCamera(), windows, past, 2, args.batch)
    n = windows["camera"].shape[0]
    for step in (1, 2):
        line(f"psnr_+{step}", "dB", float(ours[step - 1]), float(ref[step - 1]), "> copy-last (+2); +1 dB at +1 for the best",
             windows=n, margin_db=round(float(ours[step - 1] - ref[step - 1]), 3),
             sampling_steps=model.cfg.sampling_steps, ego_warp=round(float(warped[step - 1]), 3))
    truth = windows["camera"][:, past : past + 1]
    bound = torch.cat([frame_psnr(model.tokenizer.reconstruct(truth[lo : lo + args.batch]), truth[lo : lo + args.batch])
                       for lo in range(0, n, args.batch)]).mean()
    line("autoencoder_bound_+1", "dB", float(bound), float(ref[0]), "the ceiling of any model in these latents")
    print(json.dumps({"bench": "epona_camera", "case": "forecast_speed", "unit": "frames/s",
                      "ours": round(2 * n / seconds, 2), "reference": None, "ratio": None, "target": None}), flush=True)

    # Drift: one long rollout per episode.
    ours = forecast_psnr(model, data, past, args.rollout, args.batch)
    ref = forecast_psnr(copy_last, data, past, args.rollout, args.batch)
    above = int((ours > ref).sum())
    line(f"psnr_rollout_{args.rollout}_mean", "dB", float(ours.mean()), float(ref.mean()),
         "above copy-last at every step", steps_above=f"{above}/{args.rollout}",
         per_step=[round(float(v), 2) for v in ours], per_step_reference=[round(float(v), 2) for v in ref])
    line(f"psnr_rollout_{args.rollout}_last", "dB", float(ours[-1]), float(ref[-1]), "above copy-last")


if __name__ == "__main__":
    main()
