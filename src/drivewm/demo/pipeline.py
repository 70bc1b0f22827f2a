"""`drivewm demo`: the whole pipeline at one preset, each stage cached, ending in an HTML report.

simulate data -> train the occupancy tokenizer -> train the preset's token world models and the direct
voxel forecaster, and the JEPA encoder + V-JEPA 2-AC predictor -> forecast against the baselines (a
headline saying which model beats which baseline by how much at 3 s, per-class IoU, the best model's GIF)
-> plan open and closed loop with JEPA-CEM beside the expert and simple planners -> write the report
(with the stage times). Every stage writes into its own directory under the output; `stages.json`
caches them by config hash.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

from drivewm.config import ConfigError, preset_path
from drivewm.demo.presets import DemoPreset, demo_preset
from drivewm.demo.stages import StageRunner


def _train_stage(config: Path, overrides: list[str]) -> Callable[[Path, bool], dict]:
    def run(stage_dir: Path, resume: bool) -> dict:
        from drivewm.train.config import load_run_config
        from drivewm.train.run import run_training

        cfg = load_run_config(config, [*overrides, f"run_dir={stage_dir}"])
        # A stage that already logged continues its checkpoint (or restarts at step 0 after a kill before
        # the first one); a new stage starts afresh.
        started = (stage_dir / "metrics.jsonl").exists() or (stage_dir / "checkpoints").exists()
        result = run_training(cfg, resume=started)
        return {"steps": result.steps, "last_loss": result.last_loss, "best_val": result.best_val}

    return run


def _data_stage(p: DemoPreset, seed: int) -> Callable[[Path, bool], dict]:
    def run(stage_dir: Path, resume: bool) -> dict:
        from drivewm.sim.generate import generate_store
        from drivewm.data.inspect import frame_png, summarize
        from drivewm.data.store import EpisodeStore
        from drivewm.report.results import write_result

        store_dir = stage_dir / "store"
        generate_store(store_dir, preset=p.sim, episodes=p.episodes, frames=p.frames, seed=seed, workers=2)
        store = EpisodeStore(store_dir)
        s = summarize(store)
        frame_png(store, stage_dir / "results" / "frame.png", episode=0, frame=min(4, p.frames - 1))
        rows = [["episodes", s["episodes"]], ["frames", s["frames"]], ["grid", "x".join(map(str, s["grid"]))],
                ["voxel size (m)", s["voxel_size"]], ["disk (MB)", s["disk_bytes"] / 1e6]]
        if "lidar_points_per_frame" in s:
            rows.append(["LiDAR points / frame (mean)", s["lidar_points_per_frame"][1]])
        rows += [[f"share of {c}", v] for c, v in s.get("class_frequency", {}).items() if v > 0]
        write_result(stage_dir, "data", title="Simulated data", columns=["quantity", "value"], rows=rows,
                     images=["frame.png"], notes="BEV occupancy, LiDAR and front camera of one frame.", extra={"order": 1})
        return {"episodes": s["episodes"], "frames": s["frames"]}

    return run


def _tokenizer_eval_stage(tok_dir: Path, store: Path) -> Callable[[Path, bool], dict]:
    def run(stage_dir: Path, resume: bool) -> dict:
        from drivewm.report.results import write_result
        from drivewm.tokenizers.evaluate_run import evaluate_tokenizer
        from drivewm.train.checkpoint import load_run

        cfg, model = load_run(tok_dir, which="best")
        ev = evaluate_tokenizer(model, cfg, str(store), stage_dir, split="val", batch_size=8, max_frames=64)
        write_result(stage_dir, **ev.result_table(f"Tokenizer {cfg.model.name} reconstruction ({store}, val)"))
        return {k: float(ev.result[k]) for k in ("iou", "miou", "usage", "perplexity")}

    return run


def forecast_headline(baseline_3s: dict[str, float], model_3s: dict[str, float], baseline_dyn_3s: dict[str, float],
                      model_dyn_3s: dict[str, float]) -> str:
    """One sentence: which world model beats the best no-learning forecaster on mIoU at 3 s and by how much
    (relative), or that none does and how far the best one is; and the winner's (or best one's) road users
    (dynamic-class mIoU at 3 s) against the best baseline there."""
    best_base = max(baseline_3s, key=baseline_3s.get)
    ref = baseline_3s[best_base]
    ranked = sorted(model_3s, key=model_3s.get, reverse=True)
    if not ranked:
        return f"no world model was trained; the best of the baselines on mIoU at 3 s is {best_base} ({ref:.1f})"

    def gain(name: str) -> str:
        return f"{model_3s[name]:.1f}, {100 * (model_3s[name] / ref - 1):+.1f} %"

    beat = [n for n in ranked if model_3s[n] > ref]
    if beat:
        text = (f"{beat[0]} beats all {len(baseline_3s)} baselines on mIoU at 3 s: {gain(beat[0])} against the best of "
                f"them, {best_base} ({ref:.1f})")
        if len(beat) > 1:
            text += "; so do " + ", ".join(f"{n} ({gain(n)})" for n in beat[1:])
        if len(beat) < len(ranked):
            text += "; " + ", ".join(f"{n} ({gain(n)})" for n in ranked if n not in beat) + " did not within this budget"
    else:
        text = (f"no world model beats the baselines on mIoU at 3 s within this budget: the best of them, {best_base}, "
                f"scores {ref:.1f}; the best model, {ranked[0]}, {gain(ranked[0])} (train longer: --minutes)")
    lead = ranked[0]
    dyn_base = {n: v for n, v in baseline_dyn_3s.items() if not math.isnan(v)}  # NaN: no road user in the truth
    if dyn_base and not math.isnan(model_dyn_3s.get(lead, math.nan)):
        best_dyn = max(dyn_base, key=dyn_base.get)
        text += (f". Road users (dynamic-class mIoU at 3 s): {lead} {model_dyn_3s[lead]:.1f} against the best "
                 f"baseline there, {best_dyn} ({dyn_base[best_dyn]:.1f})")
    return text


def _forecast_stage(world_dirs: list[Path], store: Path, windows: int, seed: int) -> Callable[[Path, bool], dict]:
    def run(stage_dir: Path, resume: bool) -> dict:
        from drivewm.baselines import baselines
        from drivewm.evaluation import evaluate_forecast
        from drivewm.evaluation.tables import save_forecast_pictures
        from drivewm.report.forecast import write_forecast_table
        from drivewm.report.results import write_result

        table = evaluate_forecast([str(d) for d in world_dirs], store, past=5, horizon=6, max_windows=windows, seed=seed)
        write_forecast_table(table, stage_dir)
        res = table.results
        rows = baselines(table.grid, "occ", agents=True, ceiling=True)
        names = {b.name for b in rows if not b.sees_future}
        ceilings = {b.name for b in rows if b.sees_future}  # upper bounds read the truth: not a row to beat
        base = {n: r["miou"]["3s"] for n, r in res.items() if n in names}
        models = {n: r["miou"]["3s"] for n, r in res.items()
                  if n not in base and n not in ceilings and not n.startswith("tokenizer_recon")}
        dyn = {n: r["dynamic_miou"]["3s"] for n, r in res.items() if "dynamic_miou" in r}
        headline = forecast_headline(base, models, {n: dyn[n] for n in base if n in dyn},
                                     {n: dyn[n] for n in models if n in dyn})
        best_base = max(base, key=base.get)
        images = []
        if models:  # the best model beside the truth and the best baseline, one GIF frame per step
            best = max(models, key=models.get)
            shown = {k: table.example[k] for k in ("context", "truth", best_base, best)}
            images = [f"best/{name}" for name in save_forecast_pictures(shown, table.grid, stage_dir / "results" / "best")]
        write_result(stage_dir, "headline", title="Do the world models beat the baselines?",
                     columns=["forecaster", "mIoU at 3 s (%)", f"vs {best_base} (%)", "dyn mIoU at 3 s (%)",
                              "beats every baseline"],
                     rows=[[n, v, round(100 * (v / base[best_base] - 1), 2), dyn.get(n, float("nan")),
                            (v > base[best_base]) if n in models else "-"] for n, v in {**base, **models}.items()],
                     images=images, protocol="OccWorld mIoU (classes 0..16, no visibility mask)",
                     notes="The GIF: truth, the best baseline and the best world model, left to right.",
                     extra={"headline": headline, "order": 2})
        shown_rows = [n for n in res if not n.startswith("tokenizer_recon")]
        classes = [c for c, v in res[shown_rows[0]]["per_class_iou"]["3s"].items()
                   if any(res[n]["per_class_iou"]["3s"][c] != 100.0 for n in shown_rows)]  # 100: absent, matched
        write_result(stage_dir, "forecast_classes", title="IoU per class at 3 s (%)", columns=["forecaster", *classes],
                     rows=[[n, *(res[n]["per_class_iou"]["3s"][c] for c in classes)] for n in shown_rows],
                     protocol="OccWorld protocol; classes absent from both truth and forecast (IoU 100) left out",
                     extra={"order": 3})
        return {"headline": headline, "miou_3s": {**base, **models}, "dynamic_miou_3s": dyn}

    return run


def _planning_stage(ac_dir: Path, p: DemoPreset, plan_config: Path,
                    echo: Callable[[str], None]) -> Callable[[Path, bool], dict]:
    def run(stage_dir: Path, resume: bool) -> dict:
        from drivewm.planning.factory import load_plan_config
        from drivewm.planning.tasks import drive_closed_loop_run, evaluate_open_loop_runs
        from drivewm.report.results import write_result
        from drivewm.sim import sim_preset

        cfg = load_plan_config(str(plan_config))
        sim = sim_preset(p.sim, lidar=False, camera=False, visibility=False)
        open_loop, _ = evaluate_open_loop_runs([str(ac_dir)], cfg, sim, planners=["cem"], seeds=[9001], frames=16,
                                               stride=4, plan_with_sim=False, progress=echo)
        write_result(stage_dir, **open_loop)
        drive, gif = drive_closed_loop_run(cfg, sim, planner="cem", model=str(ac_dir), seeds=list(p.plan_seeds),
                                           seconds=p.drive_seconds, gif=stage_dir / "results" / "drive.gif",
                                           compare=True, progress=echo)
        write_result(stage_dir, **drive, images=[gif.name] if gif is not None else [])
        return {row[0]: {"route_completion": row[1], "collision_rate": row[4]} for row in drive["rows"]}

    return run


def run_demo(out: str | Path, *, minutes: float = 10.0, preset: str = "tiny", fresh: bool = False, seed: int = 0,
             configs: str | Path | None = None, echo: Callable[[str], None] = print) -> Path:
    """Run (or resume) the demo into `out`; returns the report's path."""
    from drivewm.report.html import build_report
    from drivewm.report.results import environment_info, write_result

    if minutes <= 0:
        raise ConfigError(f"--minutes must be > 0, got {minutes}")
    p = demo_preset(preset)
    if configs is not None and not Path(configs).is_dir():
        raise ConfigError(f"--configs {configs}: no such directory")
    out = Path(out)
    runner = StageRunner(out, fresh=fresh, echo=echo)
    steps = {k: max(2, round(v * minutes / 10.0)) for k, v in p.steps.items()}
    store = out / "data" / "store"
    t0 = time.perf_counter()

    def cfg_key(path: Path, overrides: list[str]) -> dict:
        return {"yaml": path.read_text(), "overrides": overrides}

    def config_path(name: str) -> Path:
        """A preset of the --configs directory when given, else the packaged one."""
        if configs is None:
            return preset_path(name)
        path = Path(configs) / name
        if not path.is_file():
            raise ConfigError(f"demo config {path} is missing")
        return path

    def train(name: str, config: str, group: str, extra: list[str]) -> Path:
        path = config_path(config)
        overrides = [f"data.path={store}", f"train.steps={steps[name]}", f"train.seed={seed}", "train.progress=true",
                     f"train.ckpt_every={max(10, steps[name] // 4)}", f"train.log_every={max(1, steps[name] // 20)}",
                     *p.overrides.get(group, []), *p.overrides.get(name, []), *extra]
        runner.run(name, cfg_key(path, overrides), _train_stage(path, overrides))
        return out / name

    plan = [
        "data", "tokenizer", "tokenizer_eval", *p.worlds, *p.direct, "jepa", "jepa_ac", "forecast", "planning", "report",
    ]
    total = len(plan)

    def banner(i: int, name: str) -> None:
        echo(f"[demo] stage {i}/{total}: {name}  (elapsed {time.perf_counter() - t0:.0f} s)")

    (out / "environment.json").write_text(json.dumps(environment_info(seed=seed, preset=preset, minutes=minutes,
                                                                      steps=steps), indent=1))
    banner(1, "simulate data")
    runner.run("data", {"preset": p.sim, "episodes": p.episodes, "frames": p.frames, "seed": seed}, _data_stage(p, seed))
    banner(2, "train the occupancy tokenizer")
    tok = train("tokenizer", p.tokenizer, "tokenizer", [])
    banner(3, "evaluate the tokenizer")
    runner.run("tokenizer_eval", {"tok": steps["tokenizer"]}, _tokenizer_eval_stage(tok, store))
    worlds = []
    for i, (name, config) in enumerate(p.worlds.items()):
        banner(4 + i, f"train {name}")
        worlds.append(train(name, config, "world", [f"model.tokenizer_run={tok}"]))
    for name, config in p.direct.items():
        banner(4 + len(worlds), f"train {name} (no tokens)")
        worlds.append(train(name, config, "direct", []))
    banner(4 + len(worlds), "train the JEPA encoder")
    jepa = train("jepa", p.jepa, "jepa", [])
    banner(5 + len(worlds), "train the V-JEPA 2-AC predictor")
    ac = train("jepa_ac", p.jepa_ac, "jepa_ac", [f"model.encoder_run={jepa}"])
    banner(6 + len(worlds), "forecast against the baselines")
    fc = runner.run("forecast", {"worlds": {w.name: steps[w.name] for w in worlds}, "windows": p.eval_windows},
                    _forecast_stage(worlds, store, p.eval_windows, seed))
    banner(7 + len(worlds), "plan: open and closed loop")
    plan_cfg = config_path("planning/jepa_tiny.yaml")  # per-step expert goals + the observed-safety term
    runner.run("planning", {"ac": steps["jepa_ac"], "plan": plan_cfg.read_text(), "seeds": p.plan_seeds,
                            "seconds": p.drive_seconds}, _planning_stage(ac, p, plan_cfg, echo))
    banner(total, "write the report")
    times = [[name, round(rec.seconds, 1), "run" if name in runner.ran else "cached"] for name, rec in runner.records.items()]
    write_result(out, "stage_times", title="Stage times", columns=["stage", "seconds", "this call"],
                 rows=[*times, ["total", round(sum(t[1] for t in times), 1), f"{time.perf_counter() - t0:.0f} s wall"]],
                 notes="Seconds each stage took when it ran (a cached stage keeps its first time).", extra={"order": 90})
    report = build_report([out], out / "report.html", title=f"drivewm demo ({preset}, {minutes:g} min budget)")
    echo(f"[demo] {fc.get('headline', '')}")
    echo(f"[demo] finished in {time.perf_counter() - t0:.0f} s; report: {report}")
    return report
