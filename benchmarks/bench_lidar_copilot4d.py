"""Copilot4D on LiDAR tokens against the no-learning copies, one JSON line per comparison (issue #23's target).

The target: a LiDAR MaskGIT trained as Copilot4D (world/maskgit_lidar_tiny.yaml: objective and sampler
'copilot4d') beats the better of copy-last and the ego-warped copy on Chamfer distance at 1 s and 3 s.
Every row is scored on the same held-out windows, as `drivewm eval forecast` scores them (drivewm's 'region'
protocol: the returns inside the tokenizer's grid; the forecast rendered along the true future rays).

Beside the run's own sampler settings, `--guidance`, `--steps` and `--top-k` add rows of the same weights
sampled with other evaluation-time settings (Copilot4D's guidance weight w, logits = cond + w (cond - uncond);
its number of decoding steps K; the top-k of the token draw, 0 drawing from the full distribution as its
Algorithm 2 writes it), and `--combined` one row with all of them; nothing is retrained.

Each row's Chamfer distance is also split by height (`--ground-z`): the returns on the road surface (z below
it, ego frame) and those above it (road users, buildings, trees), each cloud cut by its own points' heights,
so a forecast that keeps the ground rings but loses the objects shows where its error comes from.

    python benchmarks/bench_lidar_copilot4d.py --run RUN --data DIR [--max-windows 48] [--guidance 2] [--steps 10]
        [--top-k 0] [--combined]
    python benchmarks/bench_lidar_copilot4d.py --quick   # an untrained micro model on a fresh micro store: checks the pipeline

ratio = the better baseline's CD / the model's CD (> 1: the model is better); target 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import torch
from torch.utils.data import DataLoader

from drivewm.baselines import baselines
from drivewm.evaluation.forecast import _windows, lidar_report_steps, load_forecaster, tokenizer_bounds
from drivewm.evaluation.loop import LidarScoring, evaluate_forecasters
from drivewm.metrics import PointCloudForecastMetric

BASELINES = ("copy_last_lidar", "ego_warp_copy_last_lidar")
BANDS = ("ground", "above")


class SampledAs:
    """A trained MaskGIT world model sampled with other evaluation-time settings (guidance weight w, steps K,
    top-k of the token draw)."""

    sees_future = False

    def __init__(self, model, setting: tuple[float, int, int]) -> None:
        w, k, top_k = setting
        self.model, self.modality, self.tokenizer = model, model.modality, model.tokenizer
        self.setting = setting
        self.sampling = replace(model.sampling, top_k=top_k)
        self.name = f"{model.name} w={w:g} K={k} top_k={top_k}"

    @torch.no_grad()
    def forecast(self, context, horizon, *, generator=None):
        from drivewm.dynamics.lidar_forecast import forecast_lidar

        w, k, _ = self.setting
        return forecast_lidar(self.model, context, horizon, generator=generator, guidance_weight=w, steps=k,
                              sampling=self.sampling)


class BandMetrics:
    """The whole-cloud metric and one Chamfer metric per height band."""

    def __init__(self) -> None:
        self.all = PointCloudForecastMetric()
        self.bands = {b: PointCloudForecastMetric() for b in BANDS}


class HeightSplitScoring(LidarScoring):
    """LidarScoring, and the Chamfer distance of the returns below / above `ground_z` (ego frame, metres)."""

    def __init__(self, ground_z: float, **kw) -> None:
        super().__init__(**kw)
        self.ground_z = ground_z

    def metric(self) -> BandMetrics:
        return BandMetrics()

    def update(self, metric: BandMetrics, name: str, out: dict, truth: dict):
        if "render" in out:  # rendered once: the whole-cloud metric and the bands read the same frames
            frames = out["render"](truth["points"], truth["count"], truth["origin"], self.inside)
            out = {"render": lambda *a: frames}
            gt = [[f["points_gt"].cpu() for f in fs] for fs in frames]  # the returns along the rendered rays
        else:
            gt = truth["clouds"]
        pred = super().update(metric.all, name, out, truth)
        for band in BANDS:
            below = band == "ground"
            cut = [[[c[(c[:, 2] < self.ground_z) == below] for c in fs] for fs in clouds] for clouds in (pred, gt)]
            metric.bands[band].update(*cut)
        return pred


def _number(x: float) -> float | None:
    """Rounded for the JSON line; None where a band holds no returns (the distance is undefined)."""
    return round(x, 4) if math.isfinite(x) else None


def untrained_micro_run(root) -> tuple[str, str]:
    """(run, data): a 4-episode micro store and an untrained Copilot4D MaskGIT on an untrained micro LiDAR
    tokenizer, written as runs, so that `--quick` exercises the whole scoring path without a trained model."""
    from pathlib import Path

    from drivewm.config import to_yaml
    from drivewm.registry import build_model
    from drivewm.sim.generate import generate_store
    from drivewm.train.checkpoint import build_model_from_sources, write_checkpoint
    from drivewm.train.config import load_run_config

    root = Path(root)
    generate_store(root / "data", preset="micro", episodes=4, frames=12, seed=0)
    torch.manual_seed(0)
    tok = load_run_config(None, ["model.name=lidar_vqvae", "model.grid=micro", "model.point_channels=8",
                                 "model.z_channels=16", "model.feature_dim=4", "model.samples_per_ray=24",
                                 "model.cnn.channels=8", "model.cnn.channel_mult=[1,2,2]", "model.cnn.attention=false",
                                 "model.quantizer.codebook_size=64"])
    write_checkpoint(root / "tok", config_yaml=to_yaml(tok), model_state=build_model(tok.model).state_dict(),
                     optim_state=None, state={"step": 0})
    world = load_run_config("world/maskgit_lidar_tiny.yaml", [
        f"model.tokenizer_run={root / 'tok'}", "model.vocab_size=64", "model.token_shape=[8,8]", "model.dim=16",
        "model.depth=1", "model.heads=2", "model.dim_mult=[1]"])
    write_checkpoint(root / "wm", config_yaml=to_yaml(world), model_state=build_model_from_sources(world.model).state_dict(),
                     optim_state=None, state={"step": 0})
    return str(root / "wm"), str(root / "data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="", help="a trained LiDAR MaskGIT run (world/maskgit_lidar_tiny.yaml)")
    ap.add_argument("--data", default="", help="the episode store the run was trained on")
    ap.add_argument("--max-windows", type=int, default=48, help="evenly spaced held-out windows (0: all)")
    ap.add_argument("--guidance", type=float, nargs="*", default=[], help="extra rows: guidance weights w")
    ap.add_argument("--steps", type=int, nargs="*", default=[], help="extra rows: decoding steps K")
    ap.add_argument("--top-k", type=int, nargs="*", default=[],
                    help="extra rows: top-k of the token draw (0: the full distribution, as Algorithm 2 draws)")
    ap.add_argument("--combined", action="store_true", help="one more row with every extra setting at once")
    ap.add_argument("--ground-z", type=float, default=0.2, help="returns below this height are road surface")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="4 windows, the run's own settings only (without --run: "
                    "an untrained micro model on a fresh micro store)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.run and not args.quick:
        ap.error("give --run RUN --data DIR (or --quick)")
    if not args.run:
        import tempfile

        args.run, args.data = untrained_micro_run(tempfile.mkdtemp(prefix="bench_lidar_copilot4d_"))
    elif not args.data:
        ap.error("--run needs --data DIR, the store the run was trained on")

    model = load_forecaster(args.run)
    if model.modality != "lidar":
        raise SystemExit(f"{args.run}: forecasts {model.modality!r}, not LiDAR")
    own = (model.cfg.guidance_weight, model.cfg.steps, model.sampling.top_k)
    variants = {(w, own[1], own[2]) for w in args.guidance} | {(own[0], k, own[2]) for k in args.steps} | {
        (own[0], own[1], t) for t in args.top_k}
    if args.combined and variants:
        variants.add((args.guidance[-1] if args.guidance else own[0], args.steps[-1] if args.steps else own[1],
                      args.top_k[-1] if args.top_k else own[2]))
    variants = [] if args.quick else sorted(variants - {own})
    models = [model, *(SampledAs(model, v) for v in variants)]
    full, ds = _windows(args.data, 5, 6, "val", 4 if args.quick else args.max_windows, "lidar")
    steps = lidar_report_steps(6, full.store.hz)
    scoring = HeightSplitScoring(args.ground_z, region=model.tokenizer, steps=steps)
    rows = [*baselines(full.grid, "lidar"), *tokenizer_bounds([model]), *models]
    ev = evaluate_forecasters(rows, DataLoader(ds, batch_size=args.batch_size, shuffle=False), scoring,
                              past=5, horizon=6, seed=args.seed)
    report = {n: {"all": m.all.compute(), **{b: m.bands[b].compute() for b in BANDS}} for n, m in ev.metrics.items()}
    settings = {model.name: own, **{m.name: m.setting for m in models[1:]}}
    for sec, s in steps.items():
        for part in ("all", *BANDS):
            key = "cd_per_step"
            base = {n: report[n][part][key][s - 1] for n in BASELINES}
            best = min(base, key=base.get)
            for m in models:
                ours = report[m.name][part][key][s - 1]
                line = {"bench": "lidar_copilot4d",
                        "case": f"CD {sec} ({part} returns), {m.name} vs {best}, {ev.windows} val windows",
                        "unit": "m^2", "ours": _number(ours), "reference": _number(base[best]),
                        "ratio": _number(base[best] / ours), "target": 1.0,
                        "guidance_weight": settings[m.name][0], "steps": settings[m.name][1],
                        "top_k": settings[m.name][2]}
                if part == "all":
                    line["nfcd"] = _number(report[m.name]["all"]["nfcd_per_step"][s - 1])
                line["others"] = {n: {"cd": _number(report[n][part]["cd_per_step"][s - 1]),
                                      **({"nfcd": _number(report[n][part]["nfcd_per_step"][s - 1])}
                                         if part == "all" else {})}
                                  for n in report if n not in settings}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
