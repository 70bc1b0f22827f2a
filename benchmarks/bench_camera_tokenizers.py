"""DrivingWorld's tokenizer claim: at equal bits per frame, the temporal-aware VQ reconstructs video closer in
Frechet distance than the per-frame VQ-GAN, and a GPT world model trained on each keeps that order on forecasts.

Claim (DrivingWorld, arXiv 2412.19505; issue "Camera world models, part 1"): a better (temporal) tokenizer makes a
better world model (the survey quotes FVD 4017 -> 638). Both tokenizers have the same token grid (8x: 8 x 16 at
64 x 128) and codebook, so the same bits per frame (h * w * log2(codebook)); both train for the same steps on
the same clips (the VQ-GAN sees each frame of a clip alone), then a GPT world model (the camera preset's,
world/gpt_camera_tiny.yaml) trains on each tokenizer's tokens for the same steps (camera_world_setup.py).

Measured on held-out simulator windows of past + horizon frames, as videos [N, T, 3, H, W] in [0, 1]:
reconstruction Frechet distance (each window through the tokenizer as one clip, against the truth) and
forecast Frechet distance (the true context followed by the GPT's forecast, against the true window), with a
seeded bootstrap interval each, and PSNR beside them. Features: `--extractor FILE --fd-protocol NAME`, drivewm's
offline extractor (`drivewm export extractor RUN FILE` prints its protocol name, e.g.
fd_vjepacam_8f_64x128_bilinear_r-1to1), fed as that protocol prepares clips (its frames, size and value range;
the windows are cut to the protocol's clip length); without them a seeded random 3D-conv network
(`RandomConvFeatures(video=True)`) on [0, 1] clips, which the case name says.

    python benchmarks/bench_camera_tokenizers.py [--quick] [--extractor FILE --fd-protocol NAME] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from camera_world_setup import (HELD_OUT_SEED, camera_windows, forecast, frame_psnr, preset_fields, train_tokenizer,
                                train_world)
from drivewm.errors import DrivewmError
from drivewm.evaluation.camera import is_clip_protocol, parse_protocol
from drivewm.metrics.image import RandomConvFeatures
from drivewm.metrics.video import frechet_bootstrap, frechet_of_features, load_protocol_extractor

TOKENIZERS = {"temporal_vq": "camera_temporal_vq", "vqgan": "camera_vqgan"}


@torch.no_grad()
def features(extractor, camera: torch.Tensor, prepare, chunk: int = 32) -> torch.Tensor:
    """Features [N, D] of uint8 videos [N, T, H, W, 3], each chunk as [N, T, 3, H, W] through `prepare`."""
    return torch.cat([extractor(prepare(c.movedim(-1, -3))).double() for c in camera.split(chunk)])


def frechet(extractor, prepare, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, dict]:
    real_f, fake_f = features(extractor, real, prepare), features(extractor, fake, prepare)
    return frechet_of_features(real_f, fake_f), frechet_bootstrap(real_f, fake_f, resamples=50)


def line(case: str, ours: float, reference: float, ours_ci: dict, reference_ci: dict, **extra) -> None:
    """Lower is better: ratio = reference / ours (> 1: the temporal VQ side is better)."""
    print(json.dumps({"bench": "camera_tokenizers", "case": case, "unit": "frechet", "ours": round(ours, 4),
                      "reference": round(reference, 4), "ratio": round(reference / ours, 3) if ours > 0 else None,
                      "target": "ratio > 1", "ours_ci95": [round(ours_ci["low"], 4), round(ours_ci["high"], 4)],
                      "reference_ci95": [round(reference_ci["low"], 4), round(reference_ci["high"], 4)], **extra}),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 x 64 frames, few episodes and steps (about a minute)")
    ap.add_argument("--extractor", default="", help="the user's video feature network file (TorchScript or .pt2)")
    ap.add_argument("--fd-protocol", default="", help="the extractor's protocol name, e.g. fd_vjepacam_8f_64x128_bilinear_r-1to1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=16, help="training episodes")
    ap.add_argument("--held-out", type=int, default=6, help="held-out episodes")
    ap.add_argument("--frames", type=int, default=40, help="frames per episode")
    ap.add_argument("--tokenizer-steps", type=int, default=800)
    ap.add_argument("--world-steps", type=int, default=400)
    ap.add_argument("--clip", type=int, default=4, help="frames per tokenizer training clip")
    ap.add_argument("--horizon", type=int, default=2, help="forecast frames")
    ap.add_argument("--image", type=int, nargs=2, default=[64, 128], metavar=("H", "W"), help="camera size")
    ap.add_argument("--codebook", type=int, default=1024)
    args = ap.parse_args()
    hw, codebook, channels = tuple(args.image), args.codebook, 32
    if args.quick:
        hw, codebook, channels = (32, 64), 256, 16
        args.episodes, args.held_out, args.frames, args.tokenizer_steps, args.world_steps = 3, 2, 16, 30, 30
    torch.set_num_threads(args.threads)
    past = 4
    if args.extractor:
        if not args.fd_protocol:
            raise SystemExit("--extractor needs --fd-protocol (the name `drivewm export extractor` printed)")
        try:
            protocol, _ = parse_protocol(args.fd_protocol)
        except DrivewmError as err:
            raise SystemExit(str(err)) from None
        if not is_clip_protocol(protocol):
            raise SystemExit(f"--fd-protocol {args.fd_protocol}: the tokenizers are compared on clips, not images")
        extractor = load_protocol_extractor(args.extractor, protocol)
        # The forecast clip is the context and the forecast: the horizon fills the protocol's clip.
        args.horizon = max(args.horizon, protocol.frames - past)
        tag = protocol.name.rsplit("_n", 1)[0]
        prepare = protocol.preprocess
    else:
        extractor = RandomConvFeatures(video=True)
        tag = f"{extractor.name}_NO_EXTRACTOR_FILE_random_conv_features"
        prepare = lambda clips: clips.float() / 255.0  # noqa: E731
    world = preset_fields("world/gpt_camera_tiny.yaml")
    window = past + args.horizon
    train = camera_windows(range(args.episodes), args.frames, hw, window)
    held_out = camera_windows(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.frames, hw, window)
    truth = held_out["camera"]

    recon, fc, psnr = {}, {}, {}
    grid = None
    start = time.perf_counter()

    def phase(text: str) -> None:  # a default run takes about an hour on one thread: say where it is
        print(f"[{time.perf_counter() - start:7.0f} s] {text}", file=sys.stderr, flush=True)

    for side, name in TOKENIZERS.items():
        phase(f"{side}: training the tokenizer ({args.tokenizer_steps} steps)")
        cfg, tok = train_tokenizer(name, train, hw, codebook, steps=args.tokenizer_steps, clip=args.clip, batch=4,
                                   channels=channels)
        grid = tok.token_shape
        rec = torch.cat([tok.reconstruct(c) for c in truth.split(32)])  # each window one clip
        recon[side] = frechet(extractor, prepare, truth, rec)
        phase(f"{side}: training the GPT on its tokens ({args.world_steps} steps)")
        model = train_world("gpt_world", cfg, tok, train, train_steps=args.world_steps, **world)
        pred = forecast(model, held_out, past, args.horizon)
        fc[side] = frechet(extractor, prepare, truth, torch.cat([truth[:, :past], pred], 1))
        psnr[side] = (frame_psnr(rec, truth), frame_psnr(pred[:, 0], truth[:, past]))
    phase("done")
    common = {"extractor": extractor.name, "bits_per_frame": grid[0] * grid[1] * math.log2(codebook),
              "token_grid": list(grid), "codebook": codebook, "image": list(hw), "tokenizer_steps": args.tokenizer_steps,
              "world_steps": args.world_steps, "windows": int(truth.shape[0]), "clip_frames": window,
              "threads": args.threads}
    line(f"recon_frechet_{tag}_temporal_vq_vs_vqgan_equal_bits", recon["temporal_vq"][0], recon["vqgan"][0],
         recon["temporal_vq"][1], recon["vqgan"][1], psnr_dB={k: round(v[0], 2) for k, v in psnr.items()}, **common)
    line(f"forecast_frechet_{tag}_gpt_on_temporal_vq_vs_gpt_on_vqgan_{past}+{args.horizon}f", fc["temporal_vq"][0],
         fc["vqgan"][0], fc["temporal_vq"][1], fc["vqgan"][1],
         psnr_plus1_dB={k: round(v[1], 2) for k, v in psnr.items()}, **common)


if __name__ == "__main__":
    main()
