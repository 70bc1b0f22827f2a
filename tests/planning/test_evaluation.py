"""Open- and closed-loop evaluation end to end on a tiny simulated scenario, and the score formula."""

import math

import numpy as np

from drivewm.planning.closed_loop import drive_closed_loop
from drivewm.planning.config import CEMConfig
from drivewm.planning.factory import PlanConfig, build_planner
from drivewm.planning.gif import save_drive_gif
from drivewm.planning.open_loop import evaluate_open_loop, simulated_episodes
from drivewm.planning.score import DriveStats, pdm_score
from drivewm.sim import sim_preset

SIM = sim_preset("micro", layouts=("straight",), vehicle_density=0.0, pedestrian_density=0.0,
                 lidar=False, camera=False, visibility=False)
PC = PlanConfig(cem=CEMConfig(horizon=3, samples=16, elites=4, iterations=2))


def _stats(**kw):
    base = dict(planner="p", seed=0, steps=10, seconds=5.0, distance_m=40.0, route_completion=0.5, progress_m=40.0,
                collisions=0, offroad_steps=0, ttc_violations=0, max_jerk=1.0, max_steer_rate=0.1, plan_time_s=0.0)
    base.update(kw)
    return DriveStats(**base)


def test_pdm_score_formula():
    assert pdm_score(_stats(), 40.0).score == 1.0
    s = pdm_score(_stats(progress_m=20.0, ttc_violations=5, max_jerk=9.0, offroad_steps=2), 40.0)
    assert math.isclose(s.score, (1 - 2 / 10) * (5 * 0.5 + 5 * 0.5 + 2 * 0) / 12)
    assert pdm_score(_stats(collisions=1), 40.0).score == 0.0


def test_open_loop_table_has_expert_baselines_and_sim_planner():
    eps = simulated_episodes(SIM, [7], 8)
    planners = {n: build_planner(n, SIM, PC) for n in ("constant-velocity", "random")}
    planners["cem-sim"] = build_planner("cem", SIM, PC)
    res = evaluate_open_loop(planners, eps, horizon=3, stride=3, needs_sim={"cem-sim"})
    assert set(res) == {"expert", "constant-velocity", "random", "cem-sim"}
    assert res["expert"]["l2_stp3"]["1s"] == 0.0
    for r in res.values():
        assert all(np.isfinite(v) for v in r["l2_stp3"].values())
    # planning through the simulator follows the expert's route far better than random actions
    assert res["cem-sim"]["l2_uniad"]["1s"] < res["random"]["l2_uniad"]["1s"]


def test_closed_loop_drives_and_writes_a_gif(tmp_path):
    res = drive_closed_loop({"cem-sim": build_planner("cem", SIM, PC)}, SIM, [3], 2.5, trace_planner="cem-sim")
    s = res["summary"]
    assert set(s) == {"expert", "cem-sim"}
    assert s["expert"]["ep"] == 1.0 and s["expert"]["collisions"] == 0
    assert s["cem-sim"]["collisions"] == 0 and s["cem-sim"]["progress_m"] > 4.0
    assert 0.0 <= s["cem-sim"]["score"] <= 1.0
    gif = save_drive_gif(res["trace"], SIM.grid_spec, tmp_path / "drive.gif")
    import imageio.v2 as imageio

    frames = imageio.mimread(gif)
    assert len(frames) == len(res["trace"].occ) == 5
