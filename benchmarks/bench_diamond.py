"""DIAMOND's sampling speed, and with a trained run its forecast PSNR against copy-last; one JSON line each.

1. frames/s of EDM sampling at 3 Euler steps (the official world_model_env setting), batch 16, on 64 x 128 frames
   from the world/diamond_camera_tiny.yaml model (untrained, or --run's): ours, `forecast` (the sampling path:
   conditioning computed once per frame, channels-last U-Net). Reference: the same frames, noise and sampler
   through the plain path (`EDMNextFrame.denoise` at every step, the network as training runs it). Both timed
   alternately, best of the repeats, in wall-clock and in process CPU time (frames per CPU-second: a usable
   figure on a loaded machine; on `threads` idle cores wall-clock frames/s is at most threads x that).
   Target: 25 frames/s (issue #27).
2. With --run and --data: PSNR (dB, each frame's, averaged over the held-out windows of the 'val' split, as
   `drivewm eval forecast` averages it: `ImageQualityMetric`) at +1 and +2 frames of the run's autoregressive
   forecast (4 context frames, the recorded actions, seeded noise) against copy-last on the same windows;
   target at +1: copy-last + 1 dB, at +2: copy-last. A run with the ego-warped prior (model.warp_prior, drivewm's
   variant) reads the store's calibration and poses, and is also compared with the homography-warped copy.

    python benchmarks/bench_diamond.py [--quick] [--threads N] [--device cuda] [--run DIR --data DIR [--stride 4]
                                       [--euler-steps N]]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from drivewm.baselines.camera import CopyLastCamera, EgoWarpCamera
from drivewm.dynamics.edm import edm_sample
from drivewm.forecaster import STATIC_KEYS, split_window
from drivewm.metrics.image import ImageQualityMetric
from drivewm.registry import build_model
from drivewm.train.config import load_run_config

PAST = 4


def emit(case: str, unit: str, ours: float, reference: float, target: float, ratio: float | None = None,
         **extra) -> None:
    print(json.dumps({"bench": "diamond", "case": case, "unit": unit, "ours": round(ours, 3),
                      "reference": round(reference, 3), "ratio": round(ratio if ratio is not None else ours / reference, 3),
                      "target": target, **extra}), flush=True)


def load(run: str | None, device: torch.device):
    if run:
        from drivewm.hub import from_pretrained

        return from_pretrained(run, str(device)).eval()
    torch.manual_seed(0)
    return build_model(load_run_config("world/diamond_camera_tiny.yaml", []).model).to(device).eval()


def warp_keys(data: str, batch: int) -> dict[str, torch.Tensor]:
    """What a warp_prior model reads besides frames and actions: the first episode's calibration of `data` and
    a drive straight ahead at 2 m per frame."""
    from drivewm.data.store import EpisodeStore

    if not data:
        raise SystemExit("a run with model.warp_prior needs --data (the store's camera calibration)")
    store = EpisodeStore(data)
    calibration = {k: torch.from_numpy(store.read(0, k)) for k in STATIC_KEYS}
    pose = torch.zeros(batch, PAST + 1, 3)
    pose[..., 0] = 2.0 * torch.arange(PAST + 1)
    return {**{k: v.expand(batch, *v.shape) for k, v in calibration.items()}, "rel_pose": pose}


def sampling_speed(model, batch: int, repeats: int, device: torch.device, data: str = "") -> None:
    h, w = model.image_hw
    g = torch.Generator().manual_seed(0)
    context = {"camera": torch.randint(0, 256, (batch, PAST, h, w, 3), generator=g, dtype=torch.uint8),
               "action": torch.randn(batch, PAST + 1, model.cfg.action_dim, generator=g),
               **(warp_keys(data, batch) if model.cfg.warp_prior else {})}
    context = {k: v.to(device) for k, v in context.items()}
    edm, steps = model.edm, model.cfg.sampler.num_steps

    def plain() -> None:
        obs, act = model.encode(context["camera"])[:, -edm.cfg.conditioning_frames:], context["action"][:, :PAST]
        obs = edm.conditioning(obs, model.frame_warp(context, PAST + 1, "context"), PAST - 1)
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(obs[:, 0].shape, generator=gen, device=device)
        model.decode(edm_sample(lambda x_, s: edm.denoise(x_, s, obs, act), x, edm.cfg.sampler, gen)[:, None])

    def fast() -> None:
        model.forecast(context, 1, generator=torch.Generator(device=device).manual_seed(0))

    def timed(f) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, time.process_time() - c0

    fast(), plain()  # warm-up
    best = {f: [float("inf"), float("inf")] for f in (fast, plain)}
    for _ in range(repeats):  # alternating, so both sides see the same load of a shared machine
        for f in (fast, plain):
            best[f] = [min(a, b) for a, b in zip(best[f], timed(f))]
    emit(f"sample_{steps}_euler_steps_b{batch}_{h}x{w}_vs_plain_path", "frames/s", batch / best[fast][0],
         batch / best[plain][0], 25.0, threads=torch.get_num_threads(),
         ours_per_cpu_s=round(batch / best[fast][1], 3), reference_per_cpu_s=round(batch / best[plain][1], 3))


def forecast_psnr(model, data: str, stride: int, windows: int, device: torch.device) -> None:
    from drivewm.data.config import DataConfig
    from drivewm.data.windows import build_dataset

    keys = ["camera", "action", *(STATIC_KEYS if model.cfg.warp_prior else ())]
    ds = build_dataset(DataConfig(path=data, past=PAST, future=2, stride=stride, keys=keys), "val")
    idx = list(range(len(ds)))[:windows] if windows else list(range(len(ds)))
    rows = {"ours": model, "copy": CopyLastCamera(), **({"warp": EgoWarpCamera()} if model.cfg.warp_prior else {})}
    metric = {name: ImageQualityMetric(data_range=255.0, steps=2) for name in rows}
    count = 0
    gen = torch.Generator(device=device).manual_seed(0)
    for start in range(0, len(idx), 16):
        items = [ds[i] for i in idx[start:start + 16]]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        context, future = split_window(batch, PAST)
        truth = future["camera"].movedim(-1, -3).double()
        for name, forecaster in rows.items():
            pred = forecaster.forecast(context, 2, generator=gen).movedim(-1, -3).double()
            metric[name].update(pred.cpu(), truth.cpu())
        count += truth.shape[0]
    psnr = {k: m.compute()["psnr_per_step"] for k, m in metric.items()}
    for step in (1, 2):
        ours, ref = psnr["ours"][step - 1], psnr["copy"][step - 1]
        # Ratio of the geometric-mean squared errors (copy-last's over ours): > 1 when ours is closer.
        emit(f"psnr_+{step}_{model.cfg.sampler.num_steps}_euler_steps_vs_copy_last_{count}_val_windows", "dB", ours, ref, round(ref + (1.0 if step == 1 else 0.0), 3),
             ratio=10 ** ((ours - ref) / 10))
        if "warp" in psnr:
            warp = psnr["warp"][step - 1]
            emit(f"psnr_+{step}_{model.cfg.sampler.num_steps}_euler_steps_vs_ego_warp_{count}_val_windows", "dB",
                 ours, warp, None, ratio=10 ** ((ours - warp) / 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed repeat, 16 held-out windows (< 1 minute)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--run", default="", help="a trained diamond run (default: the untrained tiny preset)")
    ap.add_argument("--data", default="", help="camera store for the PSNR comparison (needs --run)")
    ap.add_argument("--stride", type=int, default=4, help="frames between held-out windows")
    ap.add_argument("--windows", type=int, default=0, help="at most this many held-out windows (0: all)")
    ap.add_argument("--euler-steps", type=int, default=0,
                    help="PSNR with this many Euler steps instead of the run's (a drivewm variant; 0: the run's)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load(args.run or None, device)
    with torch.no_grad():
        sampling_speed(model, 16, 1 if args.quick else 3, device, args.data)
        if args.run and args.data:
            if args.euler_steps:
                model.cfg.sampler.num_steps = args.euler_steps
            forecast_psnr(model, args.data, args.stride, 16 if args.quick else args.windows, device)


if __name__ == "__main__":
    main()
