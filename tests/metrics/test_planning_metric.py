"""Planning L2 conventions; BEV collision against a numpy port of ST-P3 / UniAD ``evaluate_coll`` and,
for drivewm's centred rule, against a full-raster numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.metrics import PlanningMetric
from drivewm.metrics.planning import stp3_ego_cells

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
    m = PlanningMetric(collision="centred")
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
    m = PlanningMetric(seconds=(0.5, 1.0), collision="centred")
    assert m.collisions(pred, boxes, None, None).tolist() == [[False, False, True, False]]
    # Just beside the lane: ego half-width 0.925 + car half-width 1 < 2.5 m apart.
    side = boxes.clone()
    side[..., 1] = 2.5
    side[..., 4] = 0.0
    assert not m.collisions(pred, side, None, None).any()
    whole, split = PlanningMetric(), PlanningMetric()  # the stp3 rule, split or not
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


# --- ST-P3 / UniAD collision -----------------------------------------------------------------------
# A line-by-line numpy port of `PlanningMetric.evaluate_single_coll` / `evaluate_coll`, identical in
# OpenDriveLab/ST-P3 stp3/metrics.py (commit 6b11e13) and OpenDriveLab/UniAD
# projects/mmdet3d_plugin/uniad/dense_heads/planning_head_plugin/planning_metrics.py (commit dd161b2),
# with their grid ([-50, 50, 0.5] on both axes: gen_dx_bx / calculate_birds_eye_view_parameters) and
# skimage.draw.polygon (the crossing-number scan of skimage/draw/_draw.pyx `_polygon`).
STP3_DX = np.array([0.5, 0.5], np.float32)
STP3_BX = np.array([-50.0 + 0.25, -50.0 + 0.25], np.float32)
STP3_BEV = np.array([200, 200])
STP3_W, STP3_H = 1.85, 4.084


def skimage_polygon(r, c):
    r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
    minr, maxr = int(max(0, r.min())), int(np.ceil(r.max()))
    minc, maxc = int(max(0, c.min())), int(np.ceil(c.max()))
    rr, cc = [], []
    for r_i in range(minr, maxr + 1):
        for c_i in range(minc, maxc + 1):
            inside, j = False, len(c) - 1
            for i in range(len(c)):  # point_in_polygon(xp=c, yp=r, x=c_i, y=r_i)
                if ((r[i] <= r_i < r[j]) or (r[j] <= r_i < r[i])) and (
                    c_i < (c[j] - c[i]) * (r_i - r[i]) / (r[j] - r[i]) + c[i]
                ):
                    inside = not inside
                j = i
            if inside:
                rr.append(r_i)
                cc.append(c_i)
    return np.array(rr, dtype=np.intp), np.array(cc, dtype=np.intp)


def evaluate_single_coll(traj, segmentation):
    pts = np.array([
        [-STP3_H / 2. + 0.5, STP3_W / 2.],
        [STP3_H / 2. + 0.5, STP3_W / 2.],
        [STP3_H / 2. + 0.5, -STP3_W / 2.],
        [-STP3_H / 2. + 0.5, -STP3_W / 2.],
    ])
    pts = (pts - STP3_BX) / (STP3_DX)
    pts[:, [0, 1]] = pts[:, [1, 0]]
    rr, cc = skimage_polygon(pts[:, 1], pts[:, 0])
    rc = np.concatenate([rr[:, None], cc[:, None]], axis=-1)

    n_future, _ = traj.shape
    trajs = traj.reshape(n_future, 1, 2)
    trajs[:, :, [0, 1]] = trajs[:, :, [1, 0]]  # can also change original tensor
    trajs = trajs / STP3_DX
    trajs = trajs + rc  # (n_future, 32, 2)

    r = trajs[:, :, 0].astype(np.int32)
    r = np.clip(r, 0, STP3_BEV[0] - 1)

    c = trajs[:, :, 1].astype(np.int32)
    c = np.clip(c, 0, STP3_BEV[1] - 1)

    collision = np.full(n_future, False)
    for t in range(n_future):
        rr = r[t]
        cc = c[t]
        I = np.logical_and(
            np.logical_and(rr >= 0, rr < STP3_BEV[0]),
            np.logical_and(cc >= 0, cc < STP3_BEV[1]),
        )
        collision[t] = np.any(segmentation[t, rr[I], cc[I]])
    return collision


def evaluate_coll(trajs, gt_trajs, segmentation):
    """trajs, gt_trajs: float32 [B, n_future, 2] nuScenes LiDAR frame (x right, y forward);
    segmentation: [B, n_future, 200, 200]. Returns (obj_coll_sum, obj_box_coll_sum) [n_future]."""
    B, n_future, _ = trajs.shape
    trajs = trajs * np.array([-1, 1], np.float32)
    gt_trajs = gt_trajs * np.array([-1, 1], np.float32)

    obj_coll_sum = np.zeros(n_future)
    obj_box_coll_sum = np.zeros(n_future)

    for i in range(B):
        gt_box_coll = evaluate_single_coll(gt_trajs[i], segmentation[i])

        xx, yy = trajs[i, :, 0], trajs[i, :, 1]
        yi = ((yy - STP3_BX[0]) / STP3_DX[0]).astype(np.int64)
        xi = ((xx - STP3_BX[1]) / STP3_DX[1]).astype(np.int64)

        m1 = np.logical_and(
            np.logical_and(yi >= 0, yi < STP3_BEV[0]),
            np.logical_and(xi >= 0, xi < STP3_BEV[1]),
        )
        m1 = np.logical_and(m1, np.logical_not(gt_box_coll))

        ti = np.arange(n_future)
        obj_coll_sum[ti[m1]] += segmentation[i, ti[m1], yi[m1], xi[m1]].astype(np.int64)

        m2 = np.logical_not(gt_box_coll)
        box_coll = evaluate_single_coll(trajs[i], segmentation[i])
        obj_box_coll_sum[ti[m2]] += (box_coll[ti[m2]]).astype(np.int64)

    return obj_coll_sum, obj_box_coll_sum


def to_lidar(traj: np.ndarray) -> np.ndarray:
    """drivewm (forward, left) -> nuScenes LiDAR (right, forward), float32 as their tensors."""
    return np.stack([-traj[..., 1], traj[..., 0]], -1).astype(np.float32)


def toy_with_colliding_logs(seed: int = 0, b: int = 12, t: int = 6, k: int = 4):
    """Logged drives through traffic that often overlaps them, plans near the logs, random boxes."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(3, 10, (b, 1, 1))
    steps = np.arange(1, t + 1)[None, :, None] * 0.5
    gt = np.concatenate([speed * steps, rng.normal(0, 0.3, (b, t, 1)) * steps], -1)
    pred = gt + rng.normal(0, 1.5, (b, t, 2))
    boxes = np.zeros((b, t, k, 5))
    boxes[..., :2] = gt[:, :, None, :] + rng.uniform(-7, 7, (b, t, k, 2))
    boxes[..., 2] = rng.uniform(3.5, 5, (b, t, k))
    boxes[..., 3] = rng.uniform(1.6, 2.2, (b, t, k))
    boxes[..., 4] = rng.uniform(-0.4, 0.4, (b, t, k))
    bev = np.zeros((b, t, 200, 200), bool)
    for i in range(b):
        for s in range(t):
            for j in range(k):
                bev[i, s] |= raster(boxes[i, s, j])
    return pred.astype(np.float32), gt.astype(np.float32), boxes, bev


# evaluate_coll on toy_with_colliding_logs(0), computed once with the port above (run below too).
FIXTURE_OBJ_BOX_COLL = [2, 3, 2, 2, 1, 4]
FIXTURE_OBJ_COLL = [1, 2, 0, 1, 0, 2]
FIXTURE_GT_BOX_COLL = [3, 6, 8, 3, 6, 5]


def test_stp3_ego_box_cells_are_their_polygon():
    pts = np.array([[-STP3_H / 2 + 0.5, STP3_W / 2], [STP3_H / 2 + 0.5, STP3_W / 2],
                    [STP3_H / 2 + 0.5, -STP3_W / 2], [-STP3_H / 2 + 0.5, -STP3_W / 2]])
    pts = (pts - STP3_BX) / STP3_DX
    rr, cc = skimage_polygon(pts[:, 0], pts[:, 1])
    cells = stp3_ego_cells(50.0, 0.5, STP3_H, STP3_W, 0.5).numpy()
    assert cells.shape == (32, 2)  # their comment: (n_future, 32, 2)
    assert sorted(map(tuple, cells)) == sorted(zip(rr.tolist(), cc.tolist()))
    # 0.5 m ahead: rows 97..104 around the origin's row 99.5, i.e. one cell more ahead than behind
    assert cells[:, 0].min() == 97 and cells[:, 0].max() == 104 and cells[:, 1].min() == 98 and cells[:, 1].max() == 101
    # other sizes, edges on whole cells included (skimage's half-open rule)
    for length, width, ahead in ((4.0, 2.0, 0.25), (3.0, 1.0, 0.0), (5.5, 2.5, 1.0)):
        p = np.array([[-length / 2 + ahead, width / 2], [length / 2 + ahead, width / 2],
                      [length / 2 + ahead, -width / 2], [-length / 2 + ahead, -width / 2]])
        p = (p - STP3_BX) / STP3_DX
        rr, cc = skimage_polygon(p[:, 0], p[:, 1])
        got = stp3_ego_cells(50.0, 0.5, length, width, ahead).numpy()
        assert sorted(map(tuple, got)) == sorted(zip(rr.tolist(), cc.tolist())), (length, width, ahead)


def test_stp3_collision_equals_their_evaluate_coll_and_fixtures():
    pred, gt, boxes, bev = toy_with_colliding_logs(0)
    obj_coll, obj_box_coll = evaluate_coll(to_lidar(pred), to_lidar(gt), bev)
    gt_box_coll = sum(evaluate_single_coll(to_lidar(gt)[i] * np.float32([-1, 1]), bev[i]) for i in range(len(gt)))
    assert obj_box_coll.tolist() == FIXTURE_OBJ_BOX_COLL
    assert obj_coll.tolist() == FIXTURE_OBJ_COLL
    assert gt_box_coll.tolist() == FIXTURE_GT_BOX_COLL
    b = len(pred)
    for source in ({"obstacle_bev": torch.from_numpy(bev)}, {"obstacles": torch.from_numpy(boxes)}):
        m = PlanningMetric()
        m.update(torch.from_numpy(pred), torch.from_numpy(gt), **source)
        r = m.compute()
        assert r["collision_per_step"] == pytest.approx([100 * v / b for v in FIXTURE_OBJ_BOX_COLL], abs=1e-12)
        assert r["collision_point_per_step"] == pytest.approx([100 * v / b for v in FIXTURE_OBJ_COLL], abs=1e-12)
    # drivewm's centred rule counts the logs' own overlaps: far more collisions on the same toy
    centred = PlanningMetric(collision="centred")
    centred.update(torch.from_numpy(pred), torch.from_numpy(gt), obstacle_bev=torch.from_numpy(bev))
    assert centred.compute()["collision_per_step"][1] > 2 * 100 * FIXTURE_OBJ_BOX_COLL[1] / b


def test_stp3_collision_equals_port_on_random_scenes_and_the_edge_of_the_grid():
    rng = np.random.default_rng(1)
    b, t = 16, 4
    gt = rng.uniform(-55, 55, (b, t, 2)).astype(np.float32)  # some logs and plans leave the grid
    pred = (gt + rng.normal(0, 2.0, (b, t, 2))).astype(np.float32)
    pred[0, 0] = [-49.9, 0.1]  # truncation toward zero keeps this waypoint in cell 0
    bev = rng.random((b, t, 200, 200)) < 0.02
    bev[:, :, 100:104, 98:102] = True  # a car parked just ahead of the start, in most boxes near the origin
    pred[:4] = gt[:4] = rng.uniform(-2, 2, (4, t, 2)).astype(np.float32)
    gt[:2] += 30.0  # logs that stay clear of it, plans that do not
    obj_coll, obj_box_coll = evaluate_coll(to_lidar(pred), to_lidar(gt), bev)
    assert obj_box_coll.sum() > 0 and obj_coll.sum() > 0  # both outcomes exercised
    m = PlanningMetric()
    m.update(torch.from_numpy(pred), torch.from_numpy(gt), obstacle_bev=torch.from_numpy(bev))
    r = m.compute()
    assert r["collision_per_step"] == pytest.approx(list(100 * obj_box_coll / b), abs=1e-12)
    assert r["collision_point_per_step"] == pytest.approx(list(100 * obj_coll / b), abs=1e-12)
    assert m.collisions(torch.from_numpy(pred), None, None, torch.from_numpy(bev), gt=torch.from_numpy(gt)).sum() == obj_box_coll.sum()
    with pytest.raises(ValueError, match="needs the logged trajectory"):
        m.collisions(torch.from_numpy(pred), None, None, torch.from_numpy(bev))
    with pytest.raises(ValueError, match="rotate_ego"):
        PlanningMetric(rotate_ego=True)
