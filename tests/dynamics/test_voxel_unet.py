"""The direct voxel forecaster: what it reads, that it learns motion the copy cannot, its errors, its eval row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drivewm.geometry import se2_compose, se2_inverse, warp_occupancy, warp_seen
from drivewm.data.spec import class_id, grid_preset
from drivewm.dynamics import VoxelUNetConfig, VoxelUNetForecaster
from drivewm.forecaster import split_window
from drivewm.train.checkpoint import write_checkpoint

GRID = grid_preset("micro")  # 32 x 32 x 4
CAR, ROAD, FREE = class_id("car"), class_id("driveable_surface"), GRID.free_id


def _model(**over) -> VoxelUNetForecaster:
    torch.manual_seed(0)
    return VoxelUNetForecaster(VoxelUNetConfig(grid="micro", width=16, levels=2, max_horizon=3, **over))


def _moving_cars(n: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    """A still ego on a road; one 2 x 2 car driving 1 voxel per frame along +x or -x."""
    g = torch.Generator().manual_seed(seed)
    x, y, z = GRID.shape
    occ = torch.full((n, frames, x, y, z), FREE, dtype=torch.uint8)
    occ[..., 0] = ROAD
    step = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    x0 = torch.randint(10, 20, (n,), generator=g)
    y0 = torch.randint(2, y - 4, (n,), generator=g)
    for i in range(n):
        for t in range(frames):
            cx = int(x0[i] + step[i] * t)
            occ[i, t, cx : cx + 2, y0[i] : y0[i] + 2, :2] = CAR
    return {"occ": occ, "ego_pose": torch.zeros(n, frames, 3)}


def test_inputs_are_the_warped_observed_frames_and_seen_mask():
    model = _model(observed=2)
    g = torch.Generator().manual_seed(0)
    occ = torch.randint(0, GRID.num_classes, (2, 5, *GRID.shape), generator=g)
    pose = torch.tensor([[0.0, 0, 0], [1.0, 0.2, 0.05], [3.0, 0.5, 0.1], [6.0, 1.0, 0.2], [9.0, 1.0, 0.3]]).expand(2, 5, 3)
    current, horizon = torch.tensor([2, 1]), torch.tensor([2, 3])
    x = model.inputs(occ, pose, current, horizon)
    per = GRID.num_classes * GRID.shape[2]
    assert x.shape == (2, 2 * per + 1 + 3, 32, 32)
    for b in range(2):
        c, t = int(current[b]), int(current[b] + horizon[b])
        for back in range(2):
            rel = se2_compose(se2_inverse(pose[b, c - back].double()), pose[b, t].double())[None, None]
            want = F.one_hot(warp_occupancy(occ[b : b + 1, c - back].long(), rel, GRID, "border")[0, 0],
                             GRID.num_classes).permute(2, 3, 0, 1).flatten(0, 1).float()
            assert torch.equal(x[b, back * per : (back + 1) * per], want)
        rel = se2_compose(se2_inverse(pose[b, c].double()), pose[b, t].double())[None, None]
        assert torch.equal(x[b, 2 * per].bool(), warp_seen(rel, GRID)[0, 0])
        assert not x[b, 2 * per].bool().all()  # the ego moved: part of the target frame was never seen
        assert x[b, 2 * per + 1 :, 0, 0].tolist() == F.one_hot(horizon[b] - 1, 3).float().tolist()


def test_forecast_never_reads_the_future_frames():
    model = _model().eval()
    batch = _moving_cars(2, 6, seed=0)
    out = model.forecast(split_window(batch, 3)[0], 3)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["occ"][:, 3:] = CAR  # the frames being forecast, rewritten
    assert torch.equal(model.forecast(split_window(changed, 3)[0], 3), out)
    assert out.shape == (2, 3, *GRID.shape)


def test_seeded_training_moves_cars_the_copy_leaves_behind():
    model = _model()
    train = _moving_cars(48, 5, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(200):
        idx = torch.randint(0, 48, (8,), generator=g)
        loss = model.loss({k: v[idx] for k, v in train.items()})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = _moving_cars(16, 5, seed=99)
    truth = test["occ"][:, 2:5].long() == CAR
    pred = model.forecast(split_window(test, 2)[0], 3) == CAR
    copy = (test["occ"][:, 1:2].long() == CAR).expand_as(truth)

    def iou(p):
        return float((p & truth).sum() / (p | truth).sum())

    assert iou(pred) > 0.6 and iou(copy) < 0.2, (iou(pred), iou(copy))


def test_bad_input_is_named():
    model = _model()
    batch = _moving_cars(1, 6, seed=0)
    with pytest.raises(ValueError, match="horizon must be in 1..3"):
        model.forecast(split_window(batch, 2)[0], 4)
    with pytest.raises(ValueError, match=r"T>=8, 3\] \(5 frames \+ horizon 3\)"):
        model.forecast(split_window(batch, 5)[0], 3)
    with pytest.raises(ValueError, match="grid 'micro'"):
        model.loss({"occ": torch.zeros(1, 4, 64, 64, 8, dtype=torch.uint8), "ego_pose": torch.zeros(1, 4, 3)})
    with pytest.raises(KeyError, match="ego_pose"):
        model.loss({"occ": batch["occ"]})
    with pytest.raises(ValueError, match="training windows of >= 3"):
        model.loss({k: v[:, :2] for k, v in batch.items()})
    with pytest.raises(ValueError, match="outside"):
        _model(outside="edge")


def test_evaluate_forecast_scores_a_voxel_unet_run_beside_the_baselines(tmp_path):
    from drivewm.config import to_yaml
    from drivewm.train.config import RunConfig
    from drivewm.sim.generate import generate_store
    from drivewm.evaluation import evaluate_forecast

    generate_store(tmp_path / "data", preset="micro", episodes=2, frames=12, seed=0)
    cfg = RunConfig(model=VoxelUNetConfig(grid="micro", width=8, levels=2))
    write_checkpoint(tmp_path / "vu", config_yaml=to_yaml(cfg), model_state=VoxelUNetForecaster(cfg.model).state_dict(),
                     optim_state=None, state={"step": 0})
    res = evaluate_forecast([tmp_path / "vu"], tmp_path / "data", past=5, horizon=6, max_windows=2).results
    assert list(res) == ["copy_last", "ego_warp_copy_last", "ego_warp_copy_last_cv", "ego_warp_copy_last_border",
                         "constant_velocity_agents", "ceiling: copy where seen, truth where unseen", "voxel_unet (vu)"]
    assert set(res["voxel_unet (vu)"]["miou"]) == {"1s", "2s", "3s", "avg"}


def test_the_tiny_preset_builds_and_reads_what_it_needs():
    from pathlib import Path

    from drivewm.train.config import load_run_config
    from drivewm.registry import build_model

    cfg = load_run_config("world/voxel_unet_tiny.yaml", [])
    model = build_model(cfg.model)
    assert isinstance(model, VoxelUNetForecaster) and model.grid.shape == grid_preset("tiny").shape
    assert {"occ", "ego_pose"} <= set(cfg.data.keys) and cfg.data.future >= cfg.model.max_horizon
