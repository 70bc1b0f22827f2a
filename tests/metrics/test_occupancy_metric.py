"""Occupancy forecasting metrics against hand-built grids and an independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.metrics import OccupancyForecastMetric
from drivewm.metrics.occupancy import _confusion_numpy, _confusion_torch

C, FREE = 18, 17


def reference(pred: np.ndarray, gt: np.ndarray, protocol: str, mask: np.ndarray | None = None):
    """Per-step (mIoU, IoU) in % by a plain per-class loop over the whole dataset, as the papers' code does."""
    out = []
    for t in range(gt.shape[1]):
        p, g = pred[:, t].ravel(), gt[:, t].ravel()
        if mask is not None:
            m = mask[:, t].ravel()
            p, g = p[m], g[m]
        ious = []
        for c in range(17):
            tp = np.sum((g == c) & (p == c))
            seen, pos = np.sum(g == c), np.sum(p == c)
            if protocol == "occworld":
                ious.append(1.0 if seen == 0 else tp / (seen + pos - tp))
            else:
                ious.append(np.nan if seen + pos - tp == 0 else tp / (seen + pos - tp))
        miou = np.mean(ious) if protocol == "occworld" else np.nanmean(ious)
        go, po = g != FREE, p != FREE
        union = np.sum(go | po)
        iou = np.sum(go & po) / union if union else (1.0 if protocol == "occworld" else np.nan)
        out.append((100 * miou, 100 * iou))
    return out


def random_pair(seed: int, shape=(3, 4, 8, 8, 4)):
    g = torch.Generator().manual_seed(seed)
    gt = torch.randint(0, C, shape, generator=g, dtype=torch.uint8)
    # Make free dominant and leave some classes out so the empty-class rule matters.
    gt[torch.rand(shape, generator=g) < 0.5] = FREE
    gt[gt == 5] = FREE
    pred = gt.clone()
    flip = torch.rand(shape, generator=g) < 0.3
    pred[flip] = torch.randint(0, C, shape, generator=g, dtype=torch.uint8)[flip]
    mask = torch.rand(shape, generator=g) < 0.7
    return pred, gt, mask


def test_hand_built_known_iou():
    # One step, 4 voxels: gt = [car, car, free, road]; pred = [car, free, car, road].
    gt = torch.tensor([4, 4, FREE, 11], dtype=torch.uint8).view(1, 1, 4, 1, 1)
    pred = torch.tensor([4, FREE, 4, 11], dtype=torch.uint8).view(1, 1, 4, 1, 1)
    m = OccupancyForecastMetric(report_steps=(1,))
    m.update(pred, gt)
    r = m.compute()
    car = 1 / 3  # TP 1, GT 2, Pred 2
    # OccWorld: the 15 classes absent from gt score 1, car 1/3, driveable_surface 1.
    assert r["miou"]["0.5s"] == pytest.approx(100 * (15 + car + 1) / 17)
    assert r["per_class_iou"]["0.5s"]["car"] == pytest.approx(100 * car)
    # Occupied: gt {0, 1, 3}, pred {0, 2, 3} -> TP 2, union 4.
    assert r["iou"]["0.5s"] == pytest.approx(100 * 2 / 4)
    assert r["protocol"] == "occworld"


def test_empty_class_occworld_scores_one_even_with_false_positives():
    gt = torch.full((1, 1, 2, 2, 1), FREE, dtype=torch.uint8)
    pred = gt.clone()
    pred[0, 0, 0, 0, 0] = 3  # bus predicted, never in gt
    occworld = OccupancyForecastMetric(report_steps=(1,))
    occworld.update(pred, gt)
    r = occworld.compute()
    assert r["per_class_iou"]["0.5s"]["bus"] == 100.0
    assert r["miou"]["0.5s"] == 100.0
    assert r["iou"]["0.5s"] == 100.0  # nothing occupied in gt -> 1 under the OccWorld rule
    occ3d = OccupancyForecastMetric(protocol="occ3d", report_steps=(1,))
    occ3d.update(pred, gt, mask=torch.ones_like(gt, dtype=torch.bool))
    r3 = occ3d.compute()
    assert r3["per_class_iou"]["0.5s"]["bus"] == 0.0  # false positives only -> 0
    assert np.isnan(r3["per_class_iou"]["0.5s"]["car"])  # never seen nor predicted -> NaN
    assert r3["miou"]["0.5s"] == 0.0  # NaN-mean over the one class with a union


@pytest.mark.parametrize("protocol", ["occworld", "occ3d"])
def test_matches_reference_and_batch_split(protocol):
    pred, gt, mask = random_pair(0)
    use_mask = mask if protocol == "occ3d" else None
    whole = OccupancyForecastMetric(protocol=protocol, report_steps=(1, 2, 3, 4))
    whole.update(pred, gt, use_mask)
    split = OccupancyForecastMetric(protocol=protocol, report_steps=(1, 2, 3, 4))
    for sl in (slice(0, 1), slice(1, 3)):
        split.update(pred[sl], gt[sl], None if use_mask is None else use_mask[sl])
    r, rs = whole.compute(), split.compute()
    ref = reference(pred.numpy(), gt.numpy(), protocol, None if use_mask is None else mask.numpy())
    assert np.allclose(r["miou_per_step"], [m for m, _ in ref])
    assert np.allclose(r["iou_per_step"], [i for _, i in ref])
    assert r == rs
    assert r["miou"]["avg"] == pytest.approx(np.mean([ref[k][0] for k in range(4)]))


def test_identical_inputs_are_perfect_and_horizon_names():
    _, gt, mask = random_pair(1, shape=(2, 6, 6, 6, 2))
    m = OccupancyForecastMetric()
    m.update(gt, gt)
    r = m.compute()
    assert set(r["miou"]) == {"1s", "2s", "3s", "avg"}
    assert all(v == 100.0 for v in r["miou_per_step"] + r["iou_per_step"])


def test_bad_input_names_argument():
    m = OccupancyForecastMetric()
    gt = torch.zeros(1, 2, 4, 4, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pred shape"):
        m.update(gt[:, :1], gt)
    with pytest.raises(ValueError, match="gt has labels"):
        m.update(gt, gt + 18)
    with pytest.raises(ValueError, match="pred must hold integer"):
        m.update(gt.float(), gt)
    with pytest.raises(ValueError, match="mask"):
        m.update(gt, gt, mask=torch.ones_like(gt, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        OccupancyForecastMetric(protocol="occ3d").update(gt, gt)
    with pytest.raises(ValueError, match="protocol"):
        OccupancyForecastMetric(protocol="nuscenes")
    m.update(gt, gt)
    with pytest.raises(ValueError, match="forecast steps"):
        m.update(gt[:, :1], gt[:, :1])


def test_numpy_and_torch_count_paths_agree():
    pred, gt, mask = random_pair(3)
    for m in (None, mask):
        assert torch.equal(_confusion_numpy(pred, gt, C, m), _confusion_torch(pred, gt, C, m))
    # A non-contiguous view counts the same as its copy.
    assert torch.equal(_confusion_numpy(pred[:, ::2], gt[:, ::2], C, None), _confusion_numpy(pred[:, ::2].clone(), gt[:, ::2].clone(), C, None))
