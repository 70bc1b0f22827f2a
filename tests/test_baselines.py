"""No-learning forecasters: copy-last, ego-motion warp (known box moves by a known motion), constant-velocity LiDAR."""

from __future__ import annotations

import math

import pytest
import torch

from drivewm.baselines import ConstantVelocityLidar, CopyLast, CopyLastLidar, EgoWarpCopyLast, future_poses
from drivewm.geometry import se2_compose, se2_inverse
from drivewm.data.spec import GridSpec
from drivewm.metrics import OccupancyForecastMetric

GRID = GridSpec(shape=(40, 40, 2), lower=(-20.0, -20.0, -1.0), voxel_size=1.0)
FREE, CAR = GRID.free_id, 4


def box_scene() -> torch.Tensor:
    """One frame with a car occupying x in [5, 8) m, y in [-1, 1) m (voxels 25..27, 19..20)."""
    occ = torch.full((40, 40, 2), FREE, dtype=torch.uint8)
    occ[25:28, 19:21, 0] = CAR
    return occ


def context(last: torch.Tensor, future_rel: list[tuple[float, float, float]]) -> dict:
    past = 2
    occ = last.expand(1, past, *last.shape).clone()
    rel = torch.zeros(1, past + len(future_rel), 3)
    rel[0, 0] = torch.tensor([-1.0, 0.0, 0.0])
    rel[0, past:] = torch.tensor(future_rel)
    return {"occ": occ, "rel_pose": rel}


def test_copy_last_repeats_frame():
    occ = torch.randint(0, 18, (2, 3, 4, 4, 2), dtype=torch.uint8)
    out = CopyLast().forecast({"occ": occ}, 4)
    assert out.shape == (2, 4, 4, 4, 2) and bool((out == occ[:, -1:]).all())


def test_ego_warp_translation_moves_box_back():
    # Ego drives 3 m forward: the static car appears 3 m closer (voxels 22..24).
    out = EgoWarpCopyLast(GRID).forecast(context(box_scene(), [(3.0, 0.0, 0.0), (6.0, 0.0, 0.0)]), 2)
    expected = torch.full((40, 40, 2), FREE, dtype=torch.uint8)
    expected[22:25, 19:21, 0] = CAR
    assert torch.equal(out[0, 0], expected)
    expected2 = torch.full((40, 40, 2), FREE, dtype=torch.uint8)
    expected2[19:22, 19:21, 0] = CAR
    assert torch.equal(out[0, 1], expected2)
    # The far rear strip comes from outside the old grid: free, even where the old frame had labels.
    full = torch.full((40, 40, 2), CAR, dtype=torch.uint8)
    warped = EgoWarpCopyLast(GRID).forecast(context(full, [(3.0, 0.0, 0.0)]), 1)
    assert bool((warped[0, 0, -3:] == FREE).all()) and bool((warped[0, 0, :-3] == CAR).all())


def test_border_fill_runs_the_road_on_into_the_unseen_strip():
    """A road stripe along x with a sidewalk beside it: after 3 m forward the free copy leaves the front
    3 rows free, the border copy repeats the edge row, which is the truth for a straight road."""
    road = torch.full((40, 40, 2), FREE, dtype=torch.uint8)
    road[:, 15:25, 0], road[:, 25:28, 0] = 11, 13  # driveable surface, sidewalk
    ctx = context(road, [(3.0, 0.0, 0.0)])
    free = EgoWarpCopyLast(GRID).forecast(ctx, 1)[0, 0]
    border = EgoWarpCopyLast(GRID, outside="border")
    assert border.name == "ego_warp_copy_last_border"
    out = border.forecast(ctx, 1)[0, 0]
    assert torch.equal(out, road) and bool((free[-3:] == FREE).all()) and torch.equal(free[:-3], road[:-3])
    with pytest.raises(ValueError, match="outside must be 'free' or 'border'"):
        EgoWarpCopyLast(GRID, outside="wrap")


def test_ego_warp_rotation_moves_box_to_the_side():
    # Ego turns left by 90 deg in place: a car ahead (+x) now lies to the right (-y).
    out = EgoWarpCopyLast(GRID).forecast(context(box_scene(), [(0.0, 0.0, math.pi / 2)]), 1)[0, 0]
    idx = (out[:, :, 0] == CAR).nonzero().float()
    centre_y = -20 + idx[:, 1].mean() + 0.5
    centre_x = -20 + idx[:, 0].mean() + 0.5
    assert idx.shape[0] == 6  # 3 x 2 voxels, transposed
    assert centre_x == pytest.approx(0.0, abs=0.01) and centre_y == pytest.approx(-6.5, abs=0.01)


def test_ego_warp_beats_copy_last_when_ego_moves():
    scene = box_scene()
    ctx = context(scene, [(2.0, 0.0, 0.0)])
    truth = EgoWarpCopyLast(GRID).forecast(ctx, 1)  # the world is static: the warp is the truth
    scores = {}
    for model in (CopyLast(), EgoWarpCopyLast(GRID)):
        m = OccupancyForecastMetric(report_steps=(1,))
        m.update(model.forecast(ctx, 1), truth)
        scores[type(model).__name__] = m.compute()["iou"]["avg"]
    assert scores["EgoWarpCopyLast"] == 100.0 and scores["CopyLast"] < 50.0


def test_constant_velocity_poses_and_lidar():
    # Past frames 1 m apart with a 0.1 rad turn: the future repeats that step.
    prev = torch.tensor([[-1.0, 0.2, -0.1]], dtype=torch.float64)
    rel = torch.cat([prev[:, None], torch.zeros(1, 1, 3, dtype=torch.float64)], 1)
    poses = future_poses({"rel_pose": rel}, 2, 3, "constant_velocity")
    step = se2_compose(se2_inverse(prev), torch.zeros(1, 3, dtype=torch.float64))
    assert torch.allclose(poses[:, 0], step) and torch.allclose(poses[:, 1], se2_compose(step, step))
    assert poses[0, 2, 2].item() == pytest.approx(0.3)
    # Straight at 2 m per frame: a point 10 m ahead is 8, 6 m ahead in the next frames; padding stays 0.
    lidar = torch.zeros(1, 2, 3, 4)
    lidar[0, -1, 0] = torch.tensor([10.0, 1.0, 0.5, 0.7])
    lidar[0, -1, 1] = torch.tensor([-4.0, 0.0, 0.0, 0.1])
    ctx = {"lidar": lidar, "lidar_count": torch.tensor([[2, 2]]), "rel_pose": torch.tensor([[[-2.0, 0, 0], [0, 0, 0]]])}
    out = ConstantVelocityLidar().forecast(ctx, 2)
    assert out["lidar"].shape == (1, 2, 3, 4) and out["lidar_count"].tolist() == [[2, 2]]
    assert torch.allclose(out["lidar"][0, 0, 0], torch.tensor([8.0, 1.0, 0.5, 0.7]))
    assert torch.allclose(out["lidar"][0, 1, 1], torch.tensor([-8.0, 0.0, 0.0, 0.1]))
    assert bool((out["lidar"][0, :, 2] == 0).all())


def test_bad_context_names_key():
    with pytest.raises(KeyError, match="occ"):
        CopyLast().forecast({}, 1)
    with pytest.raises(KeyError, match="rel_pose"):
        EgoWarpCopyLast(GRID).forecast({"occ": torch.zeros(1, 2, 40, 40, 2, dtype=torch.uint8)}, 1)
    with pytest.raises(ValueError, match="past \\+ horizon"):
        EgoWarpCopyLast(GRID).forecast(context(box_scene(), [(1.0, 0, 0)]), 3)
    with pytest.raises(ValueError, match="grid"):
        EgoWarpCopyLast(GRID).forecast({"occ": torch.zeros(1, 2, 8, 8, 2, dtype=torch.uint8), "rel_pose": torch.zeros(1, 3, 3)}, 1)
    with pytest.raises(ValueError, match="horizon"):
        CopyLast().forecast({"occ": torch.zeros(1, 2, 4, 4, 2)}, 0)


def test_split_window_and_eval_cli_end_to_end(tmp_path):
    """A static box seen by an ego driving 1 voxel per frame: the ego-motion warp is exact, copy-last is not."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from drivewm.cli import app
    from drivewm.forecaster import split_window
    from drivewm.data.spec import grid_preset
    from drivewm.data.store import EpisodeWriter

    grid = grid_preset("micro")  # 32 x 32 x 4 voxels of 1.6 m
    frames, speed = 8, grid.voxel_size
    xs = grid.voxel_centers(0)
    occ = np.full((frames, *grid.shape), grid.free_id, np.uint8)
    for t in range(frames):
        world_x = xs + speed * t  # voxel centres in the world frame
        occ[t, (world_x >= 8.0) & (world_x < 12.8), 14:18, 0] = CAR
    pose = np.stack([speed * np.arange(frames), np.zeros(frames), np.zeros(frames)], 1).astype(np.float32)
    with EpisodeWriter(tmp_path / "store", grid=grid, hz=2.0) as w:
        w.write({"occ": occ, "ego_pose": pose, "action": np.zeros((frames, 2), np.float32)})

    batch = {"occ": torch.from_numpy(occ)[None], "rel_pose": torch.zeros(1, frames, 3), "action": torch.zeros(1, frames, 2)}
    context, future = split_window(batch, 2)
    assert context["occ"].shape[1] == 2 and future["occ"].shape[1] == 6
    # The ego's own poses and controls are known for every frame; the scene only for the past ones.
    assert context["rel_pose"].shape[1] == frames and context["action"].shape[1] == frames
    with pytest.raises(ValueError, match="leaves no future"):
        split_window(batch, frames)

    out = tmp_path / "res.json"
    args = ["eval", "baselines", f"data={tmp_path / 'store'}", "--split", "train", "--past", "2", "--horizon", "6",
            "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = {r["forecaster"]: r for r in json.loads(out.read_text())}
    assert rows["ego_warp_copy_last"]["iou"]["avg"] == 100.0 and rows["ego_warp_copy_last"]["miou"]["avg"] == 100.0
    assert rows["ego_warp_copy_last_cv"]["iou"]["avg"] == 100.0  # constant speed: extrapolation is exact too
    assert rows["ego_warp_copy_last_border"]["iou"]["avg"] == 100.0  # the entering area is free here
    assert rows["copy_last"]["iou"]["3s"] == 0.0  # the box has moved 6 voxels, beyond its own length
    assert "copy_last" in res.output and rows["copy_last"]["protocol"] == "occworld"
    bad = CliRunner().invoke(app, ["eval", "baselines", f"data={tmp_path / 'nothing'}"])
    assert bad.exit_code == 2 and "nothing" in bad.stderr


def test_lidar_evaluation_static_world_constant_speed():
    """Static points seen by an ego at constant speed: the constant-velocity forecast has zero Chamfer."""
    from drivewm.evaluation import LidarScoring, evaluate_forecasters

    g = torch.Generator().manual_seed(0)
    world = torch.randn(50, 3, generator=g) * 10  # static points, world frame
    frames, speed, n = 6, 1.5, 64
    lidar = torch.zeros(1, frames, n, 4)
    for t in range(frames):
        lidar[0, t, :50, :3] = world - torch.tensor([speed * t, 0.0, 0.0])
    batch = {
        "lidar": lidar,
        "lidar_count": torch.full((1, frames), 50),
        "rel_pose": torch.tensor([[[speed * (t - 1), 0.0, 0.0] for t in range(frames)]]),
    }
    ev = evaluate_forecasters([ConstantVelocityLidar(), CopyLastLidar()], [batch, batch], LidarScoring(), past=2, horizon=4)
    r = ev.metrics["constant_velocity_lidar"].compute()
    assert r["cd"] < 1e-10 and ev.windows == 2 and r["pairs"] == 8
    assert ev.metrics["copy_last_lidar"].compute()["cd"] > 1.0  # the unmoved sweep is 1.5 m per frame off
    with pytest.raises(KeyError, match="lidar"):
        evaluate_forecasters([ConstantVelocityLidar()], [{"occ": torch.zeros(1, 6, 2, 2, 2)}], LidarScoring(), past=2, horizon=4)
    with pytest.raises(ValueError, match="forecasts 'occ', but this table scores 'lidar'"):
        evaluate_forecasters([CopyLast()], [batch], LidarScoring(), past=2, horizon=4)


def test_one_list_of_baselines_for_every_table():
    from drivewm.baselines import baselines

    occ = baselines(GRID, "occ")
    assert [b.name for b in occ] == ["copy_last", "ego_warp_copy_last", "ego_warp_copy_last_cv", "ego_warp_copy_last_border"]
    full = baselines(GRID, "occ", agents=True, ceiling=True)
    assert [b.name for b in full[:-1]] == [b.name for b in occ] + ["constant_velocity_agents"]
    assert full[-1].sees_future and full[-1].name.startswith("ceiling")
    lidar = baselines(GRID, "lidar")
    assert [b.name for b in lidar] == ["copy_last_lidar", "ego_warp_copy_last_lidar", "constant_velocity_lidar"]
    assert {b.modality for b in occ} == {"occ"} and {b.modality for b in lidar} == {"lidar"}
    assert not any(b.sees_future for b in occ + lidar)
    with pytest.raises(ValueError, match="modality"):
        baselines(GRID, "radar")


def _agent_context(boxes: list[list[float]], valid: list[bool], rel: list[tuple[float, float, float]], past: int,
                   occ: torch.Tensor | None = None) -> dict:
    """A one-window context with agents [1, Tp, K, 8] given per past frame (ego frame of that frame)."""
    agents = torch.tensor(boxes, dtype=torch.float32).view(1, past, -1, 8)
    ctx = {"agents": agents, "agents_valid": torch.tensor(valid).view(1, past, -1),
           "rel_pose": torch.tensor(rel, dtype=torch.float32)[None]}
    if occ is not None:
        ctx["occ"] = occ
    return ctx


def test_constant_velocity_agents_moves_boxes_and_clears_their_old_place():
    from drivewm.baselines import ConstantVelocityAgents

    road = GRID.classes.index("driveable_surface")
    # Ego still; a car 4 m long moving +2 m per frame along x, at x = 0 now (x = -2 a frame ago).
    car = [0.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, CAR]
    prev = [-2.0, 0.0, 0.8, 4.0, 2.0, 1.6, 0.0, CAR]
    occ = torch.full((1, 2, 40, 40, 2), FREE, dtype=torch.uint8)
    occ[..., 0] = road
    occ[0, 1, 18:22, 19:21, 0] = CAR  # the car's columns now (x in [-2, 2), y in [-1, 1))
    ctx = _agent_context([prev, car], [True, True], [(0, 0, 0)] * 4, past=2, occ=occ)
    out = ConstantVelocityAgents(GRID).forecast(ctx, 2)
    for h, x0 in ((0, 2.0), (1, 4.0)):
        cols = (out[0, h, :, :, 0] == CAR).nonzero()
        xs = GRID.lower[0] + cols[:, 0].double() + 0.5
        assert xs.min() >= x0 - 2 and xs.max() <= x0 + 2 and len(cols) == 4 * 2
        assert (out[0, h, 18:20, 19:21, 0] == road).all()  # behind the car: the road is back
    # A car seen in one frame only stands still; a slot that jumps is a new road user (no velocity).
    for valid, jump in (([False, True], 0.0), ([True, True], -30.0)):
        ctx = _agent_context([[jump, *prev[1:]], car], valid, [(0, 0, 0)] * 4, past=2, occ=occ)
        out = ConstantVelocityAgents(GRID).forecast(ctx, 2)
        assert bool((out[0, :, 18:22, 19:21, 0] == CAR).all())


def test_constant_velocity_agents_in_the_future_ego_frames():
    from drivewm.baselines import extrapolate_agents

    # The ego drives +3 m per frame and turns 0.1 rad; a pedestrian crosses at +1 m per frame in y.
    ped = [[10.0, -1.0, 0.9, 0.6, 0.6, 1.75, 0.0, 7.0], [10.0 - 3.0, 0.0, 0.9, 0.6, 0.6, 1.75, 0.0, 7.0]]
    rel = [(-3.0, 0.0, 0.0), (0.0, 0.0, 0.0), (3.0, 0.0, 0.1), (6.0, 0.0, 0.2)]
    ctx = _agent_context(ped, [True, True], rel, past=2)
    boxes, valid = extrapolate_agents(ctx, 2, 2)
    assert bool(valid.all())
    for h, (ex, ey, eyaw) in enumerate(rel[2:]):
        wx, wy = 7.0, float(h + 1)  # current-frame position of the pedestrian
        c, s = math.cos(eyaw), math.sin(eyaw)
        want = ((wx - ex) * c + (wy - ey) * s, -(wx - ex) * s + (wy - ey) * c)
        assert boxes[0, h, 0, :2].tolist() == pytest.approx(want, abs=1e-6)
        assert float(boxes[0, h, 0, 6]) == pytest.approx(-eyaw)


def _simulated_road_users(preset: str, frames: int = 24) -> list[tuple]:
    """A busy straight street of the simulator driven by the expert: per frame the road users' boxes and valid
    flags (ego frame), their recorded velocities (ego axes), their speeds and the ego's pose."""
    from drivewm.sim import ExpertDriver, Scenario, sim_preset

    cfg = sim_preset(preset, layouts=("straight",), vehicle_density=3.0, pedestrian_density=3.0, lidar=False,
                     camera=False)
    sc = Scenario(cfg, 5, 30)
    expert = ExpertDriver(seed=0)
    out = []
    for _ in range(frames):
        boxes, valid = sc.agents_ego_frame()
        _, speed, _ = sc.agent_boxes_world()
        out.append((boxes, valid, sc.agents_velocity_ego_frame(), speed.copy(), sc.ego.pose().copy()))
        sc.step(expert.act(sc))
    return out


def test_constant_velocity_agents_predicts_the_simulator_when_nobody_brakes():
    """Road users of a simulated street one frame ahead: within 0.1 m of where the simulator puts those that
    kept their speed (within 0.1 m/s) and heading (no braking, no turn)."""
    import numpy as np

    from drivewm.baselines import extrapolate_agents
    from drivewm.geometry import to_frame

    frames = _simulated_road_users("micro")
    errors = []
    for t in range(1, len(frames) - 1):
        (b0, v0, _, s0, p0), (b1, v1, _, s1, p1), (b2, v2, _, s2, p2) = frames[t - 1 : t + 2]
        steady = v0 & v1 & v2 & (np.abs(s1 - s0) < 0.1) & (np.abs(s2 - s1) < 0.1) & (np.abs(b2[:, 6] - b1[:, 6]) < 1e-3)
        steady &= np.abs(b1[:, 6] - b0[:, 6]) < 1e-3
        rel = to_frame(np.stack([p0, p1, p2]), p1)
        ctx = _agent_context(np.stack([b0, b1]).tolist(), np.stack([v0, v1]).tolist(), rel.tolist(), past=2)
        pred, _ = extrapolate_agents(ctx, 2, 1)
        err = np.linalg.norm(pred[0, 0, :, :2].numpy() - b2[:, :2], axis=1)
        errors += err[steady].tolist()
    assert len(errors) >= 10
    assert max(errors) < 0.1


def test_oracle_fill_is_the_copy_where_seen_and_the_truth_elsewhere():
    from drivewm.baselines import EgoWarpCopyLast, OracleFill
    from drivewm.evaluation import OccupancyScoring, evaluate_forecasters
    from drivewm.geometry import warp_seen

    g = torch.Generator().manual_seed(0)
    occ = torch.randint(0, 18, (2, 4, 40, 40, 2), generator=g, dtype=torch.uint8)
    rel = torch.zeros(2, 4, 3)
    rel[:, :, 0] = torch.tensor([-5.0, 0.0, 5.0, 10.0])  # 5 m per frame forward: a strip enters the view
    batch = {"occ": occ, "rel_pose": rel}
    scoring = OccupancyScoring(lambda: OccupancyForecastMetric(report_steps=(1, 2)))
    rows = [OracleFill(GRID), EgoWarpCopyLast(GRID)]
    ev = evaluate_forecasters(rows, [batch], scoring, past=2, horizon=2)
    oracle, copy = ev.example[rows[0].name], ev.example["ego_warp_copy_last"]
    seen = warp_seen(rel[:1, 2:].double(), GRID)[0]  # [H, X, Y]
    assert 0 < int(seen.sum()) < seen.numel()
    assert bool((oracle[seen] == copy[seen]).all()) and bool((oracle[~seen] == occ[0, 2:][~seen]).all())
    res = {n: m.compute()["miou"]["1s"] for n, m in ev.metrics.items()}
    assert res[rows[0].name] > res["ego_warp_copy_last"]


def test_constant_velocity_agents_moves_on_the_recorded_velocity_from_one_frame():
    """With the simulator's recorded velocities (`agents_velocity`), one observed frame is enough: road users that
    keep their speed and heading land within 0.1 m of where the simulator puts them a frame later."""
    import numpy as np

    from drivewm.baselines import extrapolate_agents
    from drivewm.geometry import to_frame

    frames = _simulated_road_users("micro_street")
    errors, moving = [], 0
    for (b0, v0, vel0, s0, p0), (b1, v1, _, s1, p1) in zip(frames, frames[1:]):
        steady = v0 & v1 & (np.abs(s1 - s0) < 0.1) & (np.abs(b1[:, 6] - b0[:, 6]) < 1e-3)
        ctx = _agent_context(b0[None].tolist(), v0[None].tolist(), to_frame(np.stack([p0, p1]), p0).tolist(), past=1)
        ctx["agents_velocity"] = torch.from_numpy(vel0)[None, None]
        pred, _ = extrapolate_agents(ctx, 1, 1)
        errors += np.linalg.norm(pred[0, 0, :, :2].numpy() - b1[:, :2], axis=1)[steady].tolist()
        moving += int((steady & (s0 > 1.0)).sum())
    assert len(errors) >= 10 and moving >= 10
    assert max(errors) < 0.1
