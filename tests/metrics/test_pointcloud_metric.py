"""4D-Occ point-cloud metrics against scipy cKDTree / numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from drivewm.metrics import PointCloudForecastMetric, chamfer_distance, clouds_from_padded, crop, nearest_sq_dist


def ref_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return (np.mean(da**2) + np.mean(db**2)) / 2


PC_RANGE = [-70.0, -70.0, -4.5, 70.0, 70.0, 4.5]


def kit_nfcd(gt_pcd: np.ndarray, pred_pcd: np.ndarray) -> float:
    """4D-Occ's ``compute_nearfield_chamferdistance`` (tarashakhurana/4d-occ-forecasting,
    cvpr23-evalkit/evaluate.py, commit e1ea943), with chamferdist's summed squared nearest-neighbour
    distances taken from a KD-tree."""
    def inner(pcd):
        m1 = np.logical_and(PC_RANGE[0] <= pcd[:, 0], pcd[:, 0] <= PC_RANGE[3])
        m2 = np.logical_and(PC_RANGE[1] <= pcd[:, 1], pcd[:, 1] <= PC_RANGE[4])
        m3 = np.logical_and(PC_RANGE[2] <= pcd[:, 2], pcd[:, 2] <= PC_RANGE[5])
        return m1 & m2 & m3

    inner_mask_pred, inner_mask_gt = inner(pred_pcd), inner(gt_pcd)
    if inner_mask_pred.sum() == 0 or inner_mask_gt.sum() == 0:
        return 0.0
    pred_pcd_inner, gt_pcd_inner = pred_pcd[inner_mask_pred], gt_pcd[inner_mask_gt]
    cd_forward = np.sum(cKDTree(gt_pcd_inner).query(pred_pcd_inner)[0] ** 2)
    cd_backward = np.sum(cKDTree(pred_pcd_inner).query(gt_pcd_inner)[0] ** 2)
    return ((cd_forward / pred_pcd_inner.shape[0]) + (cd_backward / gt_pcd_inner.shape[0])) / 2.0


def cloud(seed: int, n: int, scale: float = 40.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 4, generator=g) * scale
    pts[:, 2] = pts[:, 2] / 10
    return pts


def test_chamfer_matches_kdtree_and_brute_force():
    a, b = cloud(0, 500), cloud(1, 700)
    ref = ref_chamfer(a[:, :3].double().numpy(), b[:, :3].double().numpy())
    assert chamfer_distance(a, b) == pytest.approx(ref, rel=1e-9)
    # Chunked exact search (the CUDA path) on CPU tensors agrees with the tree.
    d_tree = nearest_sq_dist(a[:, :3].double(), b[:, :3].double())
    full = torch.cdist(a[:, :3].double(), b[:, :3].double()).min(1).values ** 2
    assert torch.allclose(d_tree, full)
    d_chunked = nearest_sq_dist(a[:, :3].double(), b[:, :3].double(), chunk=64, method="chunked")
    assert torch.allclose(d_chunked, full)


def test_known_answer_and_identity():
    a = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    b = torch.tensor([[0.0, 2, 0]])
    # a -> b: 4 and 5 -> mean 4.5; b -> a: 4 -> (4.5 + 4) / 2.
    assert chamfer_distance(a, b) == pytest.approx(4.25)
    assert chamfer_distance(a, a) == 0.0


def test_metric_streaming_nfcd_depth_and_empty():
    g = [[cloud(s, 300, 60.0), cloud(s + 10, 200, 60.0)] for s in range(3)]
    p = [[c + 0.3 for c in frames] for frames in g]
    p[2][1] = torch.zeros(0, 4)  # an empty prediction: left out of CD and counted; NFCD 0 as the 4D-Occ kit
    depth = [[(c[:, :3].norm(dim=1) * 1.1) for c in frames] for frames in g]
    whole = PointCloudForecastMetric()
    whole.update(p, g, pred_depth=depth)
    split = PointCloudForecastMetric()
    split.update(p[:1], g[:1], pred_depth=depth[:1])
    split.update(p[1:], g[1:], pred_depth=depth[1:])
    r, rs = whole.compute(), split.compute()
    assert r == rs
    cds = [ref_chamfer(p[b][t][:, :3].double().numpy(), g[b][t][:, :3].double().numpy()) for b in range(3) for t in range(2) if (b, t) != (2, 1)]
    assert r["cd"] == pytest.approx(np.mean(cds))
    assert r["skipped_cd"] == 1 and r["pairs"] == 6

    def roi(x):
        x = x[:, :3].double().numpy()
        return x[np.all((x >= [-70, -70, -4.5]) & (x <= [70, 70, 4.5]), axis=1)]

    nf = [ref_chamfer(roi(p[b][t]), roi(g[b][t])) if (b, t) != (2, 1) else 0.0 for b in range(3) for t in range(2)]
    assert r["nfcd"] == pytest.approx(np.mean(nf))
    assert r["empty_nfcd"] == 1
    # Depth 10 % too long on every ray: AbsRel = 0.1 exactly, L1 = 0.1 * mean range per cloud.
    assert r["absrel"] == pytest.approx(0.1)
    l1 = [0.1 * g[b][t][:, :3].double().norm(dim=1).mean().item() for b in range(3) for t in range(2)]
    assert r["l1"] == pytest.approx(np.mean(l1))
    assert len(r["cd_per_step"]) == 2


def test_nfcd_of_empty_crops_matches_the_4docc_kit():
    near, g_near = cloud(0, 200, 20.0), cloud(1, 150, 20.0)
    far = near.clone()
    far[:, 0] += 500.0  # every point beyond the 70 m crop
    half = near.clone()
    half[:100, 0] += 500.0
    # pred cropped empty, gt cropped empty, both non-empty after the crop
    pairs = [(far, g_near), (near, far), (half, g_near)]
    m = PointCloudForecastMetric()
    m.update([[p] for p, _ in pairs], [[g] for _, g in pairs])
    r = m.compute()
    kit = [kit_nfcd(g[:, :3].double().numpy(), p[:, :3].double().numpy()) for p, g in pairs]
    assert kit[0] == kit[1] == 0.0 and kit[2] > 0
    assert r["nfcd"] == pytest.approx(np.mean(kit), rel=1e-12)
    assert r["empty_nfcd"] == 2 and r["skipped_cd"] == 0
    assert r["cd"] > 1000  # the full clouds still count, 500 m apart


def test_identical_clouds_are_perfect():
    g = [[cloud(5, 100)]]
    m = PointCloudForecastMetric()
    m.update(g, g, pred_depth=[[g[0][0][:, :3].double().norm(dim=1)]])
    r = m.compute()
    assert r["cd"] == 0 and r["nfcd"] == 0 and r["l1"] == 0 and r["absrel"] == 0


def test_crop_and_padded_layout():
    pts = torch.tensor([[69.0, 0, 4.5, 1], [71.0, 0, 0, 1], [0, 0, -5.0, 1]])
    assert crop(pts).shape[0] == 1
    lidar = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    count = torch.tensor([[1, 2, 0], [4, 3, 2]])
    clouds = clouds_from_padded(lidar, count)
    assert [[c.shape[0] for c in f] for f in clouds] == [[1, 2, 0], [4, 3, 2]]


def test_bad_input_names_argument():
    m = PointCloudForecastMetric()
    good = [[cloud(0, 10)]]
    bad = cloud(0, 10)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"pred\[0\]\[0\] contains NaN"):
        m.update([[bad]], good)
    with pytest.raises(ValueError, match=r"gt\[0\]\[0\] must be a cloud"):
        m.update(good, [[torch.zeros(10)]])
    with pytest.raises(ValueError, match="pred has 2 samples"):
        m.update(good * 2, good)
    with pytest.raises(ValueError, match="pred_depth"):
        m.update(good, good, pred_depth=[[torch.ones(3)]])
