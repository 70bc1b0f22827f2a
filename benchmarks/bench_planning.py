"""Planning in embedding space vs planning by generation: time per CEM replanning step, in one run.

The same CEM (samples x iterations x horizon) plans through (a) the V-JEPA 2-AC predictor in
embedding space (`jepa_ac`: one KV-cached block per frame, no decoding; energy = L1 to a goal
embedding) and (b) a token world model that samples every future token and decodes occupancy
through its tokenizer (`gpt_world`, cost on the decoded occupancy). V-JEPA 2-AC (arXiv 2506.09985)
reports 16 s vs ~4 min per action against Cosmos (~15x); target here >= 15x. Planning quality of
each (open-loop L2 / collision to the expert on held-out simulated episodes) is printed with the
timing so speed is never bought silently with quality. Trained runs are used when given
(--jepa-run, --world-run); otherwise small untrained models of the tiny (--quick: micro) configs,
and the JSON `case` says so. The full run (tiny grid, 32 x 3 x 6) needs a free machine: token-by-token
generation of 256 tokens per frame for every candidate is exactly the cost being measured.

    python benchmarks/bench_planning.py [--quick] [--jepa-run runs/jepa_ac] [--world-run runs/gpt_tiny]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _untrained(path: str, **overrides):
    from drivewm.config import merge_into, read_yaml
    from drivewm.registry import build_model, config_class

    model_cfg = read_yaml(path)["model"]
    cfg = merge_into(config_class(model_cfg["name"])(), [(path, model_cfg), ("bench", overrides)])
    return build_model(cfg).eval()


def _models(args, sim):
    from drivewm.planning.factory import PlanConfig, load_planning_model
    from drivewm.planning.learned import JepaPlanningModel, TokenPlanningModel

    pc = PlanConfig()
    trained = []
    torch.manual_seed(0)
    if args.jepa_run:
        _, jepa = load_planning_model(args.jepa_run, pc, sim)
        trained.append("jepa")
    else:
        from drivewm.jepa.ac import JepaAC, JepaACConfig
        from drivewm.jepa.encoders import EncoderConfig

        g = sim.grid_spec
        enc = EncoderConfig(grid_shape=list(g.shape), grid_lower=list(g.lower), voxel_size=g.voxel_size,
                            patch=4, dim=64, depth=4, heads=4)
        jepa = JepaPlanningModel(JepaAC(JepaACConfig(encoder=enc, width=64, depth=4, heads=4)).eval(), 2, sim.hz, sim.max_speed)
    if args.world_run:
        _, world = load_planning_model(args.world_run, pc, sim)
        trained.append("world")
    else:
        if sim.grid == "micro":  # the micro tokenizer: 8 x 8 tokens of a 64-code book
            tok = _untrained("tokenizer/occ_micro.yaml")
            w = _untrained("world/gpt_tiny.yaml", tokenizer_run="", vocab_size=64, token_shape=[8, 8],
                           warp_prior=False)
        else:
            tok = _untrained("tokenizer/occ_tiny.yaml")
            # Without the ego-warped hint (a decode + encode per predicted frame): the cheaper token
            # model, so the embedding-vs-generation ratio is the conservative one.
            w = _untrained("world/gpt_tiny.yaml", tokenizer_run="", vocab_size=512, token_shape=[16, 16],
                           warp_prior=False)
        w.tokenizer = tok.requires_grad_(False)
        world = TokenPlanningModel(w, 2, sim.hz, sim.max_speed)
    return jepa, world, trained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Smaller budget; finishes in about a minute.")
    ap.add_argument("--jepa-run", default="", help="Trained jepa_ac run directory (default: untrained tiny model).")
    ap.add_argument("--world-run", default="", help="Trained token world model run directory (default: untrained gpt_world tiny).")
    args = ap.parse_args()

    from drivewm.planning.config import CEMConfig
    from drivewm.planning.factory import PlanConfig, build_planner
    from drivewm.planning.goals import embedding_goal
    from drivewm.planning.open_loop import evaluate_open_loop, observation_at, simulated_episodes
    from drivewm.sim import sim_preset

    # --quick: the micro grid (8 x 8 tokens per frame) and a small budget; full: the tiny grid (16 x 16).
    sim = sim_preset("micro" if args.quick else "tiny", lidar=False, camera=False, visibility=False)
    s, it, h, reps = (4, 1, 2, 1) if args.quick else (32, 3, 6, 2)
    pc = PlanConfig(cem=CEMConfig(horizon=h, samples=s, elites=max(2, s // 8), iterations=it))
    jepa, world, trained = _models(args, sim)
    episodes = simulated_episodes(sim, [9101], 2 + h + (0 if args.quick else 6))
    planners = {"cem-jepa": build_planner("cem", sim, pc, jepa, "jepa", "cem-jepa"),
                "cem-token": build_planner("cem", sim, pc, world, "token", "cem-token")}
    goal = {"cem-jepa": lambda arr, t, hh, obs: embedding_goal(jepa, arr["occ"][t + hh], obs)}

    times = {}
    ep = episodes[0]
    for name, planner in planners.items():
        obs = observation_at(ep, 1, 2, with_sim=False)
        g = goal[name](ep.arrays, 1, h, obs) if name in goal else obs.route
        if not args.quick:
            planner.plan(obs, g)  # warm-up (allocations, caches)
        t0 = time.perf_counter()
        for _ in range(reps):
            planner.plan(obs, g)
        times[name] = (time.perf_counter() - t0) / reps
    quality = evaluate_open_loop({**planners, "constant-velocity": build_planner("constant-velocity", sim, pc)},
                                 episodes, horizon=h, hz=sim.hz, max_speed=sim.max_speed, context_frames=2,
                                 stride=2 if args.quick else 3, goal_fns=goal)
    q = {n: {"l2_avg_m": round(r["l2_stp3"].get("avg", float("nan")), 3),
             "collision_avg_pct": round(r["collision_stp3"].get("avg", float("nan")), 3)} for n, r in quality.items()}
    models = ("trained " if "jepa" in trained else "untrained ") + "jepa_ac vs " + \
             ("trained " if "world" in trained else "untrained ") + "gpt_world+decode"
    ratio = times["cem-token"] / times["cem-jepa"]
    print(json.dumps({
        "bench": "planning", "case": f"CEM {s} samples x {it} iters x horizon {h}, {sim.grid} grid, {models}, CPU",
        "unit": "s per replanning step", "ours": round(times["cem-jepa"], 4), "reference": round(times["cem-token"], 4),
        "ratio": round(ratio, 2), "target": 15, "quality_open_loop": q,
    }))


if __name__ == "__main__":
    main()
