"""Sampling speed of the token world models, each comparison in one run, one JSON line each.

1. GPT (GAIA-1 / DrivingGPT) with the KV cache vs without (the whole prefix recomputed per token), one
   frame after a 4-frame context; target >= 10x. Both draw the same tokens with the same seed.
2. MaskGIT (Copilot4D, 8 parallel decoding steps) vs GPT with the cache, frames/s; target >= 5x.

Models come from the presets world/{gpt,maskgit}_tiny.yaml (16 x 16 tokens, 512 codes), untrained, unless
--gpt-run / --maskgit-run name trained runs; with --data, the forecast occupancy IoU (OccWorld protocol,
1 step ahead) of each sampler is printed beside its speed, so speed is never bought silently with quality.

    python benchmarks/bench_sampling.py [--quick] [--device cuda] [--gpt-run DIR --maskgit-run DIR --data DIR]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from drivewm.train.config import load_run_config
from drivewm.registry import build_model


def untrained(config: str, overrides: list[str]):
    # No tokenizer, so no ego-warped hint (it decodes and re-encodes frames): the samplers alone are timed, on
    # the tokens of tokenizer/occ_tiny.yaml (512 codes, 16 x 16 per frame), stated since no tokenizer gives them.
    cfg = load_run_config(f"world/{config}", ["model.tokenizer_run=''", "model.warp_prior=false",
                                              "model.vocab_size=512", "model.token_shape=[16,16]", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model).eval()


def trained(run_dir: str):
    from drivewm.hub import from_pretrained

    return from_pretrained(run_dir)


def timed_pair(fn_a, fn_b, repeats: int, device: torch.device) -> tuple[float, object, float, object]:
    """Best-of-`repeats` seconds and last output of fn_a and of fn_b, their runs alternating after one warm-up
    each, so both sides of a ratio see the same load of a shared machine (timing one side after the other
    let a load change between them move the ratio). On a GPU each run ends with a synchronize, so the
    time is the kernels' and not only their launch."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn_a(), fn_b()  # warm-up
    best, out = [float("inf"), float("inf")], [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((fn_a, fn_b)):
            sync()
            t0 = time.perf_counter()
            out[i] = fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best[0], out[0], best[1], out[1]


def window_batch(data: str, past: int, windows: int, device: torch.device) -> dict:
    from drivewm.data.config import DataConfig
    from drivewm.data.windows import build_dataset

    ds = build_dataset(DataConfig(path=data, past=past, future=1, keys=["occ", "action", "ego_pose"]), "val")
    idx = torch.linspace(0, len(ds) - 1, min(windows, len(ds))).round().long().tolist()
    items = [ds[i] for i in idx]
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


def forecast_iou(model, batch: dict, past: int, **kw) -> float:
    from drivewm.dynamics.forecast import forecast_occupancy
    from drivewm.metrics import OccupancyForecastMetric

    gen = torch.Generator(device=batch["occ"].device).manual_seed(0)
    pred = forecast_occupancy(model, batch, past, 1, generator=gen, **kw)
    grid_free = model.tokenizer.grid.free_id
    metric = OccupancyForecastMetric(num_classes=model.tokenizer.grid.num_classes, free_id=grid_free, report_steps=(1,))
    metric.update(pred.long(), batch["occ"][:, past : past + 1].long())
    return round(metric.compute()["iou_per_step"][0], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="One timed repeat per pair instead of three (under a minute).")
    ap.add_argument("--gpt-run", default=None, help="Trained gpt_world run directory (default: untrained tiny config).")
    ap.add_argument("--maskgit-run", default=None, help="Trained maskgit_world run directory.")
    ap.add_argument("--data", default=None, help="Episode store for the forecast IoU of each sampler (needs the runs).")
    ap.add_argument("--context", type=int, default=4, help="Context frames before the sampled frame.")
    ap.add_argument("--batch", type=int, default=1, help="Windows sampled at once.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides of each comparison (0: torch's default).")
    ap.add_argument("--device", default="cpu", help="Where the models sample: cpu, cuda or cuda:N.")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    # The untrained GPT samples at temperature 1 (its preset forecasts greedily), so that "same_tokens" checks
    # that the cache draws the same tokens from the same seeded generator, not only the same argmax.
    gpt = trained(args.gpt_run) if args.gpt_run else untrained("gpt_tiny.yaml", ["model.sampling.temperature=1.0"])
    maskgit = trained(args.maskgit_run) if args.maskgit_run else untrained("maskgit_tiny.yaml", [])
    gpt, maskgit = gpt.to(device), maskgit.to(device)
    h, w = gpt.token_shape
    ctx_len = args.context
    if args.data and args.gpt_run:
        batch = window_batch(args.data, ctx_len, args.batch, device)
        context = gpt.encode(batch["occ"][:, :ctx_len])
        from drivewm.conditions import ego_conditions

        actions = ego_conditions(batch, gpt.cfg.condition)
    else:
        batch = None
        g = torch.Generator().manual_seed(0)
        context = torch.randint(0, gpt.vocab_size, (args.batch, ctx_len, h, w), generator=g).to(device)
        actions = torch.randn(args.batch, ctx_len + 1, gpt.action_dim, generator=g).to(device)
    repeats = 1 if args.quick else 3  # best of `repeats` after one warm-up run

    def gpt_frame(cache: bool):
        return lambda: gpt.rollout(context, actions, 1, generator=torch.Generator(device).manual_seed(1),
                                   use_cache=cache)

    t_cached, tok_cached, t_uncached, tok_uncached = timed_pair(gpt_frame(True), gpt_frame(False), repeats, device)
    m_context = context if maskgit.token_shape == gpt.token_shape else torch.randint(
        0, maskgit.vocab_size, (args.batch, ctx_len, *maskgit.token_shape), device=device)

    def maskgit_frame():
        return maskgit.rollout(m_context, actions[..., : maskgit.action_dim], 1, steps=8,
                               generator=torch.Generator(device).manual_seed(1))

    # The frames/s pair gets its own interleaved GPT timing (more repeats: each run is short).
    t_mask, _, t_cached_pair, _ = timed_pair(maskgit_frame, gpt_frame(True), 3 * repeats, device)
    iou = {"gpt_cached": None, "gpt_uncached": None, "maskgit": None}
    if batch is not None:
        iou["gpt_cached"] = forecast_iou(gpt, batch, ctx_len, use_cache=True)
        iou["gpt_uncached"] = forecast_iou(gpt, batch, ctx_len, use_cache=False)
        if args.maskgit_run:
            iou["maskgit"] = forecast_iou(maskgit, batch, ctx_len, steps=8)
    frames = args.batch
    common = {"bench": "sampling", "device": str(device), "tokens_per_frame": h * w, "context_frames": ctx_len, "batch": args.batch,
              "quick": args.quick, "trained": bool(args.gpt_run)}
    print(json.dumps({**common, "case": "gpt_kv_cache_vs_uncached_one_frame", "unit": "s/frame",
                      "ours": round(t_cached / frames, 4), "reference": round(t_uncached / frames, 4),
                      "ratio": round(t_uncached / t_cached, 2), "target": 10,
                      "same_tokens": bool(torch.equal(tok_cached, tok_uncached)),
                      "iou_cached": iou["gpt_cached"], "iou_uncached": iou["gpt_uncached"]}))
    print(json.dumps({**common, "case": "maskgit_8_steps_vs_gpt_cached", "unit": "frames/s",
                      "ours": round(frames / t_mask, 3), "reference": round(frames / t_cached_pair, 3),
                      "ratio": round(t_cached_pair / t_mask, 2), "target": 5,
                      "iou_maskgit": iou["maskgit"], "iou_gpt_cached": iou["gpt_cached"]}))


if __name__ == "__main__":
    main()
