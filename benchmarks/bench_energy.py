"""Does V-JEPA 2-AC's predicted planning energy follow the true one? Pearson correlation, in one run.

The state: the scripted expert has driven `--start` seconds from a seeded start (closed loop, as
`drivewm drive` observes it: the last `context_frames` occupancy frames, poses and actions). The
candidates: constant actions held over the horizon, acceleration x steering on a grid
(default 3 x 5 = 15: accel -3 / 0 / +2 m/s^2, steer -0.3 .. 0.3 rad). The goal: the observation the
expert reaches after the same horizon (`goals.expert_future_occupancy`), encoded.

- True energy: each candidate is driven in a clone of the simulator, the frame it really leads to is
  encoded, and V-JEPA 2-AC's energy is taken against the goal: mean |z - z_goal| (the L1 of
  `costs.EmbeddingGoalCost`, arXiv 2506.09985).
- Predicted energy (ours): the same energy on the predictor's rollout (`JepaPlanningModel.rollout`,
  what CEM scores).
- Reference: the energy of the current frame warped into each candidate's final ego pose
  (`geometry.warp_occupancy`, a static world) and encoded: what knowing the ego's motion alone gives.

One JSON line per horizon: the mean over seeds of the per-seed correlation; per-seed values ride along.
Issue #24's target: >= 0.9.

    python benchmarks/bench_energy.py --run runs/jepa_ac [--horizons 2 6] [--seeds 1 2 3] [--quick]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def observation_after(sim, seed: int, start_steps: int, context_frames: int):
    """(PlanningObservation, a clone of the scenario) after the expert has driven `start_steps` frames."""
    from drivewm.planning.baselines import ExpertPlanner
    from drivewm.planning.closed_loop import drive_one
    from drivewm.planning.sim_model import bounds_of

    seen = []

    class Recorder(ExpertPlanner):
        def act(self, observation, goal=None):
            seen.append((observation, observation.env.clone()))  # the live scenario moves on
            return super().act(observation, goal)

    drive_one(Recorder(bounds_of(sim), horizon=1), sim, seed, (start_steps + 1) / sim.hz,
              context_frames=context_frames, needs_occ=True)
    obs, sc = seen[start_steps]
    obs.env = sc
    return obs, sc


def energies(model, obs, sc, actions: torch.Tensor) -> dict[str, np.ndarray]:
    """True, predicted and ego-warped-copy energies [S] of constant-action candidates actions [S, H, 2]."""
    from drivewm.geometry import warp_occupancy
    from drivewm.planning.costs import EmbeddingGoal, EmbeddingGoalCost
    from drivewm.planning.goals import expert_future_occupancy
    from drivewm.planning.mpc import Rollout
    from drivewm.sim.sensors.occupancy import OccupancyRenderer

    h = actions.shape[1]
    render = OccupancyRenderer(sc.road, sc.grid)
    goal = EmbeddingGoal(embedding=model.encode(expert_future_occupancy(sc, h, render)[None])[0])
    energy = EmbeddingGoalCost(shaping=False)  # goal_l1 = 1, no intermediate term: L1 at the horizon
    reached = []
    for a in actions.numpy():
        c = sc.clone()
        for k in range(h):
            c.step(a[k])
        boxes, valid = c.agents_ego_frame()
        reached.append(render.render(c.ego.pose(), boxes, valid))
    model.observe(obs)
    ro = model.rollout(actions)
    true = energy(Rollout(ego=ro.ego, speed=ro.speed, embeddings=model.encode(np.stack(reached))[:, None]), actions, goal)
    pred = energy(ro, actions, goal)
    warped = warp_occupancy(torch.as_tensor(obs.occ[-1])[None], ro.ego[None, :, -1], sc.grid)[0]  # [S, X, Y, Z]
    copy = energy(Rollout(ego=ro.ego, speed=ro.speed, embeddings=model.encode(warped)[:, None]), actions, goal)
    return {"true": true.numpy(), "predicted": pred.numpy(), "warped_copy": copy.numpy()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="", help="Trained jepa_ac run directory (default: an untrained tiny model).")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="Simulator seeds (start states).")
    ap.add_argument("--horizons", type=int, nargs="+", default=[2, 6], help="Planned steps (2 Hz) the candidates are held.")
    ap.add_argument("--start", type=float, default=2.0, help="Seconds the expert drives before the state is taken.")
    ap.add_argument("--quick", action="store_true", help="Untrained model, one seed, one horizon: checks the pipeline.")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from drivewm.planning.factory import PlanConfig, load_planning_model
    from drivewm.planning.learned import JepaPlanningModel
    from drivewm.sim import sim_preset

    sim = sim_preset("tiny", lidar=False, camera=False, visibility=False)
    pc = PlanConfig()
    if args.run:
        _, model = load_planning_model(args.run, pc, sim)
    else:
        from drivewm.jepa.ac import JepaAC, JepaACConfig
        from drivewm.jepa.encoders import EncoderConfig

        torch.manual_seed(0)
        g = sim.grid_spec
        enc = EncoderConfig(grid_shape=list(g.shape), grid_lower=list(g.lower), voxel_size=g.voxel_size, patch=8,
                            dim=64, depth=4, heads=4)
        model = JepaPlanningModel(JepaAC(JepaACConfig(encoder=enc)).eval(), pc.context_frames, sim.hz, sim.max_speed)
    seeds, horizons = (args.seeds[:1], args.horizons[:1]) if args.quick else (args.seeds, args.horizons)
    grid = torch.tensor([[acc, st] for acc in (-3.0, 0.0, 2.0) for st in (-0.3, -0.15, 0.0, 0.15, 0.3)])
    states = {s: observation_after(sim, s, int(round(args.start * sim.hz)), pc.context_frames) for s in seeds}
    for h in horizons:
        actions = grid[:, None].expand(-1, h, -1).contiguous()  # [15, H, 2] held constant
        per_seed, ref_seed, spread = {}, {}, {}
        for s, (obs, sc) in states.items():
            e = energies(model, obs, sc, actions)
            per_seed[s] = float(np.corrcoef(e["predicted"], e["true"])[0, 1])
            ref_seed[s] = float(np.corrcoef(e["warped_copy"], e["true"])[0, 1])
            spread[s] = [round(float(e["true"].min()), 3), round(float(e["true"].max()), 3),
                         round(float(e["predicted"].min()), 3), round(float(e["predicted"].max()), 3)]
        ours, ref = float(np.mean(list(per_seed.values()))), float(np.mean(list(ref_seed.values())))
        print(json.dumps({
            "bench": "energy", "unit": "Pearson r, predicted vs true energy (mean over seeds)",
            "case": f"{'trained' if args.run else 'untrained'} jepa_ac, {len(grid)} constant actions held {h} steps "
                    f"({h / sim.hz:g} s) from the expert's state after {args.start:g} s, seeds {seeds}",
            "ours": round(ours, 3), "reference": round(ref, 3), "ratio": round(ours / ref, 2) if ref > 0 else None,
            "target": 0.9, "per_seed": {k: round(v, 3) for k, v in per_seed.items()},
            "reference_per_seed": {k: round(v, 3) for k, v in ref_seed.items()},
            "true_min_max_pred_min_max": spread,
        }))


if __name__ == "__main__":
    main()
