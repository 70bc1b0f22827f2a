"""JEPA collapse-control variants vs Occupancy-MAE vs contrastive: same encoder, same data, same batch.

Measures, in one run on simulated micro-grid episodes (``drivewm.sim``):
- wall time and peak activation memory per training step (CUDA: max allocated; CPU: bytes of the
  tensors autograd saves for backward, the part of training memory that differs between objectives);
- steps and wall time to reach MAE's final linear-probe score (BEV semantics mIoU), final probe score,
  RankMe of the frozen patch features;
- SIGReg (no teacher) vs EMA probe gap; collapse control off -> RankMe collapse detected.

Targets from the report (AD-L-JEPA, arXiv 2501.04969): JEPA reaches MAE's probe score with <= 1/1.9
the compute and <= 1/2.8 the peak memory; LeJEPA (arXiv 2511.08544): SIGReg within 2 points of EMA.
Each comparison prints one JSON line; ratio > 1 means ours (the JEPA side) is better.

``--pair published`` measures the claim on the methods as published instead: ``adl_jepa`` against
``occupancy_mae``, both on the same sparse voxel encoder (sparse convolutions on the active voxels only, as
their spconv code; same initial weights), the MAE with its dense 3-D decoder. Besides step time and memory it
fine-tunes a BEV segmentation head from checkpoints along the pretraining (10 % and 100 % of the labels) and
prints the pretraining seconds each method needs to the best fine-tuned score both reach. ``--grid tiny`` runs
the pair on the 64 x 64 x 8 grid of the ``tiny`` data instead of the micro grid.
``--pair drivewm`` runs the ViT variants above; ``--pair all`` (default) both.

``--pair lejepa`` measures LeJEPA's claim as issue 24 states it: ``lejepa`` as published (no teacher, one
lambda) within 1 point of the EMA I-JEPA on the downstream score. Both run their packaged presets
(``jepa/lejepa.yaml``, ``jepa/jepa_bev_ema.yaml``: model settings and the training engine's recipe) on the
micro grid, from the same initial encoder, for the same steps on the same frames. The downstream score is
the mIoU of a BEV segmentation head fine-tuned with the encoder at 10 % and 100 % of the labels (the linear
probe is printed too, but it barely separates any encoder from a random one).

    python benchmarks/bench_pretrain.py --quick
    python benchmarks/bench_pretrain.py --quick --pair published
    python benchmarks/bench_pretrain.py --quick --pair published --grid tiny
    python benchmarks/bench_pretrain.py --quick --pair lejepa
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from drivewm.config import read_yaml
from drivewm.jepa.adl_jepa import AdlJepaConfig
from drivewm.jepa.baselines import ContrastiveBEVConfig, MaeBEVConfig, OccupancyMaeConfig
from drivewm.jepa.bev import JepaBEVConfig
from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, init_weights
from drivewm.jepa.objectives import CollapseConfig
from drivewm.jepa.probe import finetune_segmentation, run_probes
from drivewm.jepa.voxels import VoxelEncoder, VoxelEncoderConfig
from drivewm.metrics import rankme
from drivewm.registry import build_model
from drivewm.sim import sim_preset, simulate_episode
from drivewm.train.config import TrainConfig, load_run_config
from drivewm.train.engine import _param_groups
from drivewm.train.schedule import warmup_cosine

BENCH = "pretrain"


def variants(enc: EncoderConfig) -> dict[str, object]:
    jepa = dict(encoder=enc, predictor_width=32, predictor_depth=2, diag_every=0)
    return {
        "jepa_ema": JepaBEVConfig(**jepa, collapse=CollapseConfig()),
        "jepa_vicreg": JepaBEVConfig(**jepa, collapse=CollapseConfig(target="shared", stop_grad=False, vicreg_sim=25.0)),
        "jepa_adl": JepaBEVConfig(**jepa, masking="bev", pred_loss="cosine", norm_targets=False,
                                  collapse=CollapseConfig(adl_variance=1.0)),
        "jepa_sigreg": JepaBEVConfig(**jepa, collapse=CollapseConfig(target="shared", stop_grad=False, sigreg_lambda=0.05)),
        "jepa_off": JepaBEVConfig(**jepa, collapse=CollapseConfig(target="shared", stop_grad=False)),
        "mae": MaeBEVConfig(encoder=enc, decoder_width=32, decoder_depth=2, diag_every=0),
        "contrastive": ContrastiveBEVConfig(encoder=enc, diag_every=0),
    }


def published(enc: VoxelEncoderConfig) -> dict[str, object]:
    """The two published methods on one voxel encoder."""
    return {
        "adl_jepa": AdlJepaConfig(encoder=enc, diag_every=0),
        "occupancy_mae": OccupancyMaeConfig(encoder=enc, decoder_channels=[32] * (len(enc.channels) - 2), diag_every=0),
    }


def simulate(episodes: int, frames: int, seed: int, preset: str = "micro") -> torch.Tensor:
    """uint8 [E, F, X, Y, Z] occupancy episodes of a sim preset (the micro grid by default)."""
    occ = [simulate_episode(sim_preset(preset), seed + i, frames)["occ"] for i in range(episodes)]
    return torch.from_numpy(np.stack(occ))


class SavedBytes:
    """Bytes of the distinct storages autograd saves for backward during a forward pass (CPU peak-memory proxy):
    a tensor saved by several ops (a ReLU's output read by the next conv, a rulebook shared by several sparse
    convs) is held once, so it counts once."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[int] = set()

    def __enter__(self):
        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in self._seen:
                self._seen.add(storage.data_ptr())
                self.total += storage.nbytes()
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        self._seen.clear()


def sample_batch(train: torch.Tensor, batch: int, gen: torch.Generator, device, frames: int = 2) -> dict[str, torch.Tensor]:
    """Windows of ``frames`` consecutive frames [B, frames, X, Y, Z] (2: the contrastive views; the others read
    them as frames)."""
    e = torch.randint(0, train.shape[0], (batch,), generator=gen)
    f = torch.randint(0, train.shape[1] - frames + 1, (batch,), generator=gen)
    occ = torch.stack([train[i, j : j + frames] for i, j in zip(e.tolist(), f.tolist())])
    return {"occ": occ.to(device)}


def probe_score(model, train: torch.Tensor, val: torch.Tensor, device) -> tuple[float, float]:
    """(BEV-semantics probe mIoU, RankMe of val patch features) of the frozen encoder."""
    model.eval()
    enc = model.encoder.cfg

    def windows(occ):
        return [{"occ": occ[i : i + 1, :3]} for i in range(occ.shape[0])]

    res = run_probes(model.encode, windows(train), windows(val), current=0, offset=2, patch=enc.patch, device=device)
    with torch.no_grad():
        z = model.encode(val[:, 0].to(device)).reshape(-1, enc.dim)
    model.train()
    return res["seg_miou"], rankme(z.float().cpu())


def same_encoder_init(model, enc: EncoderConfig | VoxelEncoderConfig, seed: int) -> None:
    """Give every objective the same initial encoder (and EMA teacher), so they start from one random-encoder probe."""
    torch.manual_seed(seed)
    if isinstance(enc, VoxelEncoderConfig):
        ref = VoxelEncoder(enc)
    else:
        ref = PatchEncoder(enc)
        init_weights(ref)
    for name in ("encoder", "target_encoder"):
        if getattr(model, name, None) is not None:
            getattr(model, name).load_state_dict(ref.state_dict())


def train_variant(name, cfg, data, args, device, recipe: TrainConfig | None = None, snapshot_every: int = 0) -> dict:
    """Pre-train ``cfg``'s model with AdamW at ``args.lr``, batches of ``args.batch`` 2-frame windows; with a
    ``recipe``, as the training engine runs it instead: its lr, betas, weight decay on matrices only, warm-up
    and cosine schedule, gradient clipping, and ``recipe.batch_size`` single frames per step. With
    ``snapshot_every``, the result's ``snapshots`` hold (steps, training seconds, state dict) from step 0 on."""
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    same_encoder_init(model, cfg.encoder, args.seed)
    model = model.to(device)
    if recipe is None:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.05)
        batch_size, frames = args.batch, 2
    else:
        opt = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(recipe.beta1, recipe.beta2))
        batch_size, frames = recipe.batch_size, 1
    gen = torch.Generator().manual_seed(args.seed)
    train, probe_train, probe_val = data
    score0, rm0 = probe_score(model, probe_train, probe_val, device)  # the random-encoder probe
    curve, step_times, mems, elapsed = [(0, 0.0, score0, rm0)], [], [], 0.0
    snapshots = [(0, 0.0, copy.deepcopy(model.state_dict()))] if snapshot_every else []
    for step in range(args.steps):
        batch = sample_batch(train, batch_size, gen, device, frames)
        if recipe is not None:
            for group in opt.param_groups:
                group["lr"] = recipe.lr * warmup_cosine(step, warmup=recipe.warmup_steps, total=args.steps,
                                                        min_ratio=recipe.min_lr_ratio)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with SavedBytes() as saved:
            out = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if recipe is not None and recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        model.on_step_end(step, args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
            mems.append(torch.cuda.max_memory_allocated())
        else:
            mems.append(saved.total)
        dt = time.perf_counter() - t0
        elapsed += dt
        step_times.append(dt)
        if (step + 1) % args.probe_every == 0 or step + 1 == args.steps:
            score, rm = probe_score(model, probe_train, probe_val, device)
            curve.append((step + 1, elapsed, score, rm))
        if snapshot_every and ((step + 1) % snapshot_every == 0 or step + 1 == args.steps):
            snapshots.append((step + 1, elapsed, copy.deepcopy(model.state_dict())))
    warm = step_times[min(2, len(step_times) - 1):]  # first steps include one-off allocation
    return {"name": name, "step_s": float(np.median(warm)), "mem_bytes": float(np.max(mems)), "curve": curve,
            "final_probe": curve[-1][2], "rankme": curve[-1][3], "random_probe": score0, "random_rankme": rm0,
            "model": model.cpu(), "snapshots": snapshots}


def reach(curve, score: float) -> tuple[float, float]:
    """(steps, wall seconds) at the first probe evaluation reaching score; inf if never."""
    for steps, secs, s, _ in curve[1:]:
        if s >= score - 1e-9:
            return float(steps), float(secs)
    return float("inf"), float("inf")


def line(case, unit, ours, reference, target, lower_is_better=False, **extra) -> None:
    """One JSON line; ratio > 1 means ours is better (reference / ours for costs)."""
    num, den = (reference, ours) if lower_is_better else (ours, reference)
    ratio = num / den if 0 < den < float("inf") and num < float("inf") else 0.0
    print(json.dumps({"bench": BENCH, "case": case, "unit": unit, "ours": ours, "reference": reference,
                      "ratio": round(ratio, 4), "target": target, **extra}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small run (< 1 min on an idle CPU).")
    ap.add_argument("--steps", type=int, default=None, help="Training steps per variant.")
    ap.add_argument("--batch", type=int, default=16, help="Frames per batch (each window holds 2).")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of data, init and batches.")
    ap.add_argument("--seeds", type=int, default=1,
                    help="--pair lejepa: seeds from --seed, each its own data and run; > 1 adds mean lines with the gap's spread.")
    ap.add_argument("--finetune-points", type=int, default=3,
                    help="--pair published: pretraining checkpoints (besides step 0) fine-tuned for the compute to a "
                         "fine-tuned score both methods reach.")
    ap.add_argument("--grid", choices=tuple(PUBLISHED_GRIDS), default="micro",
                    help="--pair published: the sim grid (micro 32 x 32 x 4, or tiny 64 x 64 x 8, the project's data).")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest for these tiny models on a shared machine).")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda.")
    ap.add_argument("--pair", choices=("all", "drivewm", "published", "lejepa"), default="all",
                    help="drivewm's ViT variants against mae_bev, the published adl_jepa against occupancy_mae, both "
                         "('all'), or the published lejepa against the EMA I-JEPA ('lejepa', not in 'all').")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.pair == "lejepa":
        compare_lejepa(args, device)
        return
    args.steps = args.steps or (10 if args.quick else 60)
    args.probe_every = max(1, args.steps // (2 if args.quick else 6))
    if args.quick:
        args.batch = min(args.batch, 8)
    if args.grid != "micro" and args.pair != "published":
        ap.error("--grid applies to --pair published only")
    eps, frames = (3, 8) if args.quick else (6, 16)
    occ = simulate(eps, frames, seed=1000 + args.seed, preset=args.grid)
    probe = simulate(2 if args.quick else 4, 6, seed=5000 + args.seed, preset=args.grid)
    data = (occ, probe[: len(probe) // 2].flatten(0, 1)[:, None].expand(-1, 3, -1, -1, -1),
            probe[len(probe) // 2 :].flatten(0, 1)[:, None].expand(-1, 3, -1, -1, -1))
    if args.pair in ("all", "published"):
        compare_published(data, args, device)
    if args.pair in ("all", "drivewm"):
        compare_drivewm(data, args, device)


def summary(name: str, r: dict, device) -> None:
    print(json.dumps({"bench": BENCH, "case": f"{name}_summary", "step_s": round(r["step_s"], 5),
                      "mem_bytes": r["mem_bytes"], "final_probe": round(r["final_probe"], 4),
                      "random_probe": round(r["random_probe"], 4), "rankme": round(r["rankme"], 2),
                      "random_rankme": round(r["random_rankme"], 2), "device": device.type,
                      "curve": [(s, round(t, 2), round(p, 4), round(k, 1)) for s, t, p, k in r["curve"]]}), flush=True)


PUBLISHED_GRIDS = {"micro": dict(grid_shape=[32, 32, 4], voxel_size=[1.6, 1.6, 1.6]),
                   "tiny": dict(grid_shape=[64, 64, 8], voxel_size=[0.8, 0.8, 0.8])}


def compare_published(data, args, device) -> None:
    """AD-L-JEPA against Occupancy-MAE, both as published, on one voxel encoder (stride 4: on the micro grid the
    probe's 8 x 8 cells)."""
    # BatchNorm momentum 0.1: OpenPCDet's 0.01 leaves the running statistics near their initial values in runs this short.
    enc = VoxelEncoderConfig(**PUBLISHED_GRIDS[args.grid], channels=[16, 32, 64], out_channels=128, bn_momentum=0.1)
    res, cfgs = {}, published(enc)
    for name, cfg in cfgs.items():
        res[name] = train_variant(name, cfg, data, args, device, snapshot_every=max(1, args.steps // args.finetune_points))
        summary(name, res[name], device)
    jepa, mae = res["adl_jepa"], res["occupancy_mae"]
    m_steps, m_secs = reach(mae["curve"], mae["final_probe"])
    steps, secs = reach(jepa["curve"], mae["final_probe"])
    line("adl_jepa_vs_occupancy_mae_time_to_probe", "s", secs, m_secs, 1.9, lower_is_better=True, reached=steps != float("inf"))
    line("adl_jepa_vs_occupancy_mae_step_time", "s/step", jepa["step_s"], mae["step_s"], 1.9, lower_is_better=True)
    line("adl_jepa_vs_occupancy_mae_peak_memory", "bytes", jepa["mem_bytes"], mae["mem_bytes"], 2.8, lower_is_better=True)
    line("adl_jepa_vs_occupancy_mae_final_probe", "miou", jepa["final_probe"], mae["final_probe"], 1.0)
    # The paper's evaluation: a segmentation head fine-tuned with the encoder, pretrained against from scratch
    # (step 0: the shared random encoder), along the pretraining, so that the compute to a score both reach shows.
    _, probe_train, probe_val = data
    frames = probe_train[:, 0], probe_val[:, 0]
    steps = 20 if args.quick else 100
    for fraction in (0.1, 1.0):
        kw = dict(label_fraction=fraction, steps=steps, lr=args.lr, seed=args.seed)
        pct = int(round(100 * fraction))
        # step 0 is one encoder for both (same_encoder_init, and each encode() reads it): fine-tuned once
        scratch = finetune_curve(cfgs["adl_jepa"], res["adl_jepa"]["snapshots"][:1], frames, kw)
        curves = {name: scratch + finetune_curve(cfgs[name], res[name]["snapshots"][1:], frames, kw) for name in res}
        base = scratch[0][2]
        for name, c in curves.items():
            print(json.dumps({"bench": BENCH, "case": f"{name}_finetune_{pct}pct_curve", "finetune_steps": steps,
                              "curve": [(n, round(t, 2), round(m, 4)) for n, t, m, _ in c]}), flush=True)
            line(f"{name}_vs_scratch_finetune_{pct}pct", "miou", c[-1][2], base, 1.0, steps=steps)
        jc, mc = curves["adl_jepa"], curves["occupancy_mae"]
        line(f"adl_jepa_vs_occupancy_mae_finetune_{pct}pct", "miou", jc[-1][2], mc[-1][2], 1.0, steps=steps)
        both = min(max(m for _, _, m, _ in c[1:]) for c in (jc, mc))  # the best score both reach
        j_steps, j_secs = reach(jc, both)
        m_steps, m_secs = reach(mc, both)
        line(f"adl_jepa_vs_occupancy_mae_time_to_finetune_{pct}pct", "s", j_secs, m_secs, 1.9, lower_is_better=True,
             score=round(both, 4), steps_ours=j_steps, steps_reference=m_steps)


def finetune_curve(cfg, snapshots, frames, kw) -> list[tuple]:
    """(pretraining steps, pretraining seconds, fine-tuned mIoU, None) at each snapshot, in ``reach``'s layout."""
    out = []
    for n, secs, state in snapshots:
        model = build_model(cfg)
        model.load_state_dict(state)
        out.append((n, secs, finetune_segmentation(model, *frames, **kw)["seg_miou"], None))
    return out


def preset_run(preset: str, steps: int, seed: int) -> tuple[object, TrainConfig]:
    """A packaged preset's model config and training recipe on the micro grid (patch 4: the 8 x 8 tokens of the
    tiny grid's patch 8), for ``steps`` steps with the preset's share of warm-up."""
    train = read_yaml(preset)["train"]
    warmup = max(1, round(train["warmup_steps"] * steps / train["steps"]))
    run = load_run_config(preset, ["model.encoder.grid_shape=[32,32,4]", "model.encoder.patch=4", "model.diag_every=0",
                                   f"model.seed={seed}", f"train.steps={steps}", f"train.warmup_steps={warmup}"])
    return run.model, run.train


def within_one_point(case: str, unit: str, ours: float, ema: float, **extra) -> None:
    """Issue 24's LeJEPA target as one line: ratio >= target exactly when ours is at most 1 point below the EMA."""
    line(case, unit, ours, ema, round((ema - 0.01) / max(ema, 1e-9), 4), gap_points=round(100 * (ours - ema), 2), **extra)


def compare_lejepa(args, device) -> None:
    """LeJEPA as published against the EMA I-JEPA, each as its preset, on the downstream score (issue 24), for
    ``args.seeds`` seeds from ``args.seed`` (data, initial encoder, batches, views / masks, label subsets)."""
    args.steps = args.steps or (10 if args.quick else read_yaml(LEJEPA_PAIR["lejepa"])["train"]["steps"])
    args.probe_every = args.steps
    scores = [lejepa_seed(argparse.Namespace(**{**vars(args), "seed": args.seed + k}), device) for k in range(args.seeds)]
    if len(scores) < 2:
        return
    for case in scores[0]:
        gaps = np.array([100 * (s[case]["lejepa"] - s[case]["jepa_ema"]) for s in scores])
        mean = {name: float(np.mean([s[case][name] for s in scores])) for name in scores[0][case]}
        if "scratch" in mean:
            for name in LEJEPA_PAIR:
                line(f"{name}_vs_scratch_{case}_mean", "miou", mean[name], mean["scratch"], 1.0, seeds=len(scores))
        # the gap means something only where it exceeds its spread over seeds
        within_one_point(f"lejepa_vs_jepa_ema_{case}_mean", "miou", mean["lejepa"], mean["jepa_ema"], seeds=len(scores),
                         gap_sd_points=round(float(np.std(gaps, ddof=1)), 2), gap_per_seed=[round(float(g), 2) for g in gaps])


LEJEPA_PAIR = {"lejepa": "jepa/lejepa.yaml", "jepa_ema": "jepa/jepa_bev_ema.yaml"}


def lejepa_seed(args, device) -> dict[str, dict[str, float]]:
    """One seed of ``compare_lejepa``: its lines, and {case: {model: mIoU}} for the cross-seed summary."""
    pretrain = simulate(*((3, 8) if args.quick else (24, 16)), seed=1000 + args.seed)
    down = simulate(*((2, 6) if args.quick else (16, 10)), seed=5000 + args.seed)
    half = len(down) // 2  # whole episodes on each side: no validation frame is a neighbour of a labelled one
    train_frames, val_frames = down[:half].flatten(0, 1), down[half:].flatten(0, 1)
    windows = (pretrain, train_frames[:, None].expand(-1, 3, -1, -1, -1), val_frames[:, None].expand(-1, 3, -1, -1, -1))
    res, cfgs = {}, {}
    for name, preset in LEJEPA_PAIR.items():
        cfgs[name], recipe = preset_run(preset, args.steps, args.seed)
        res[name] = train_variant(name, cfgs[name], windows, args, device, recipe=recipe)
        summary(name, res[name], device)
    ours, ref = res["lejepa"], res["jepa_ema"]
    seed = dict(seed=args.seed, pretrain_steps=args.steps)
    line("lejepa_vs_jepa_ema_step_time", "s/step", ours["step_s"], ref["step_s"], None, lower_is_better=True, **seed)
    within_one_point("lejepa_vs_jepa_ema_probe", "miou", ours["final_probe"], ref["final_probe"], **seed)
    scores = {"probe": {name: r["final_probe"] for name, r in res.items()}}
    steps = 20 if args.quick else 100
    torch.manual_seed(args.seed)
    scratch = build_model(cfgs["lejepa"])
    same_encoder_init(scratch, cfgs["lejepa"].encoder, args.seed)
    for fraction in (0.1, 1.0):
        kw = dict(label_fraction=fraction, steps=steps, lr=args.lr, seed=args.seed)
        tuned = {name: finetune_segmentation(res[name]["model"], train_frames, val_frames, **kw)["seg_miou"] for name in res}
        tuned["scratch"] = finetune_segmentation(scratch, train_frames, val_frames, **kw)["seg_miou"]
        case = f"finetune_{int(round(100 * fraction))}pct"
        for name in res:
            line(f"{name}_vs_scratch_{case}", "miou", tuned[name], tuned["scratch"], 1.0, steps=steps, **seed)
        within_one_point(f"lejepa_vs_jepa_ema_{case}", "miou", tuned["lejepa"], tuned["jepa_ema"], steps=steps, **seed)
        scores[case] = tuned
    return scores


def compare_drivewm(data, args, device) -> None:
    enc = EncoderConfig(grid_shape=[32, 32, 4], patch=4, dim=64, depth=2, heads=4)
    res = {}
    for name, cfg in variants(enc).items():
        r = res[name] = train_variant(name, cfg, data, args, device)
        summary(name, r, device)
    mae = res["mae"]
    m_steps, m_secs = reach(mae["curve"], mae["final_probe"])
    print(json.dumps({"bench": BENCH, "case": "mae_reaches_own_final", "steps": m_steps, "secs": m_secs}), flush=True)
    for name in ("jepa_ema", "jepa_vicreg", "jepa_adl", "jepa_sigreg", "contrastive"):
        r = res[name]
        steps, secs = reach(r["curve"], mae["final_probe"])
        # compute to reach MAE's score: MAE seconds / ours (> 1 = ours cheaper); inf when never reached
        line(f"{name}_vs_mae_time_to_probe", "s", secs, m_secs, 1.9, lower_is_better=True, reached=steps != float("inf"))
        line(f"{name}_vs_mae_step_time", "s/step", r["step_s"], mae["step_s"], 1.9, lower_is_better=True)
        line(f"{name}_vs_mae_peak_memory", "bytes", r["mem_bytes"], mae["mem_bytes"], 2.8, lower_is_better=True)
        line(f"{name}_vs_mae_final_probe", "miou", r["final_probe"], mae["final_probe"], 1.0)
        line(f"{name}_vs_random_encoder_probe", "miou", r["final_probe"], r["random_probe"], 1.0)
    ema, sig, off = res["jepa_ema"], res["jepa_sigreg"], res["jepa_off"]
    line("sigreg_vs_ema_probe", "miou", sig["final_probe"], ema["final_probe"],
         round((ema["final_probe"] - 0.02) / max(ema["final_probe"], 1e-9), 4), gap_points=round(100 * (sig["final_probe"] - ema["final_probe"]), 2))
    detected = off["rankme"] < 0.5 * ema["rankme"]
    line("collapse_off_rankme_vs_ema", "rankme", ema["rankme"], off["rankme"], 2.0, collapse_detected=bool(detected))


if __name__ == "__main__":
    main()
