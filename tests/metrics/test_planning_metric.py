"""Planning L2 conventions and BEV collision against a full-raster numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.metrics import PlanningMetric

RES, HALF = 0.5, 50.0
CENTRES = (np.arange(200) + 0.5) * RES - HALF


def raster(box) -> np.ndarray:
    """[200, 200] bool: cells whose centre lies in box (x, y, length, width, yaw)."""
    x, y, length, width, yaw = box
    cx, cy = np.meshgrid(CENTRES, CENTRES, indexing="ij")
    dx, dy = cx - x, cy - y
    lx = np.cos(yaw) * dx + np.sin(yaw) * dy
    ly = -np.sin(yaw) * dx + np.cos(yaw) * dy
    return (np.abs(lx) <= length / 2) & (np.abs(ly) <= width / 2)


def test_l2_conventions_known_answer():
    gt = torch.zeros(1, 6, 2)
    pred = torch.zeros(1, 6, 2)
    pred[0, :, 0] = torch.arange(1, 7, dtype=torch.float32)  # L2 = 1..6 at steps 1..6
    m = PlanningMetric()
    m.update(pred, gt)
    r = m.compute()
    assert r["l2_per_step"] == [1, 2, 3, 4, 5, 6]
    assert r["l2_uniad"] == {"1s": 2, "2s": 4, "3s": 6, "avg": 4}
    assert r["l2_stp3"]["1s"] == pytest.approx(1.5)
    assert r["l2_stp3"]["2s"] == pytest.approx(2.5)
    assert r["l2_stp3"]["3s"] == pytest.approx(3.5)


def test_collision_matches_full_raster_reference_and_bev_input():
    rng = np.random.default_rng(0)
    b, t, k = 4, 6, 5
    pred = torch.from_numpy(rng.uniform(-20, 20, (b, t, 2)))
    boxes = np.zeros((b, t, k, 5))
    boxes[..., :2] = pred.numpy()[:, :, None, :] + rng.uniform(-6, 6, (b, t, k, 2))
    boxes[..., 2] = rng.uniform(3, 6, (b, t, k))
    boxes[..., 3] = rng.uniform(1.5, 2.5, (b, t, k))
    boxes[..., 4] = rng.uniform(-np.pi, np.pi, (b, t, k))
    valid = torch.from_numpy(rng.random((b, t, k)) < 0.8)
    expected = np.zeros((b, t), bool)
    bev = np.zeros((b, t, 200, 200), bool)
    for i in range(b):
        for s in range(t):
            for j in range(k):
                if valid[i, s, j]:
                    bev[i, s] |= raster(boxes[i, s, j])
            ego = raster((*pred[i, s].numpy(), 4.084, 1.85, 0.0))
            expected[i, s] = np.any(ego & bev[i, s])
    assert 0 < expected.sum() < expected.size  # the case exercises both outcomes
    m = PlanningMetric()
    got = m.collisions(pred, torch.from_numpy(boxes), valid, None)
    assert np.array_equal(got.numpy(), expected)
    got_bev = m.collisions(pred, None, None, torch.from_numpy(bev))
    assert np.array_equal(got_bev.numpy(), expected)
    m.update(pred, pred, obstacles=torch.from_numpy(boxes), obstacle_valid=valid)
    r = m.compute()
    assert r["collision_per_step"] == pytest.approx(list(100 * expected.mean(0)))
    assert r["collision_uniad"]["1s"] == pytest.approx(100 * expected[:, 1].mean())
    assert r["collision_stp3"]["1s"] == pytest.approx(100 * expected[:, :2].mean())


def test_known_collision_and_batch_split():
    # A car parked 10 m ahead; the plan drives straight through it at step 3 only.
    pred = torch.tensor([[[2.0, 0], [6, 0], [10, 0], [14, 0.0]]])
    boxes = torch.tensor([10.0, 0, 4, 2, 0.3]).expand(1, 4, 1, 5)
    m = PlanningMetric(seconds=(0.5, 1.0))
    assert m.collisions(pred, boxes, None, None).tolist() == [[False, False, True, False]]
    # Just beside the lane: ego half-width 0.925 + car half-width 1 < 2.5 m apart.
    side = boxes.clone()
    side[..., 1] = 2.5
    side[..., 4] = 0.0
    assert not m.collisions(pred, side, None, None).any()
    whole, split = PlanningMetric(), PlanningMetric()
    p2 = torch.cat([pred, pred + 1])
    o2 = torch.cat([boxes, boxes])
    whole.update(p2, p2 * 0.9, obstacles=o2)
    split.update(p2[:1], p2[:1] * 0.9, obstacles=o2[:1])
    split.update(p2[1:], p2[1:] * 0.9, obstacles=o2[1:])
    assert whole.compute() == split.compute()


def test_identical_trajectories_give_zero_l2_and_bad_input():
    m = PlanningMetric()
    x = torch.randn(2, 6, 2)
    m.update(x, x)
    assert all(v == 0 for v in m.compute()["l2_per_step"])
    with pytest.raises(ValueError, match="gt shape"):
        m.update(x, x[:, :3])
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        m.update(bad, x)
    with pytest.raises(ValueError, match="obstacles must be boxes"):
        m.update(x, x, obstacles=torch.zeros(2, 6, 4))
    with pytest.raises(ValueError, match="obstacle_bev"):
        m.update(x, x, obstacle_bev=torch.zeros(2, 6, 100, 100, dtype=torch.bool))
