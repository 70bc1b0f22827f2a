"""The dynamic-class mIoU (road users only) against a numpy reference, both protocols."""

from __future__ import annotations

import numpy as np
import torch

from drivewm.data.spec import FREE_ID, OCC3D_CLASSES
from drivewm.metrics import OccupancyForecastMetric
from drivewm.metrics.occupancy import DYNAMIC_CLASSES


def _reference(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> list[float]:
    """Per step: mean over the dynamic classes present in the ground truth of TP / (GT + Pred - TP)."""
    out = []
    for t in range(gt.shape[1]):
        p, g = pred[:, t], gt[:, t]
        if mask is not None:
            p, g = p[mask[:, t]], g[mask[:, t]]
        ious = []
        for name in DYNAMIC_CLASSES:
            c = OCC3D_CLASSES.index(name)
            tp, n_gt, n_pred = np.sum((p == c) & (g == c)), np.sum(g == c), np.sum(p == c)
            if n_gt:
                ious.append(tp / (n_gt + n_pred - tp))
        out.append(100 * float(np.mean(ious)) if ious else float("nan"))
    return out


def _labels(rng: np.random.Generator, shape) -> np.ndarray:
    # Mostly free and road, a few road users; bicycles and trailers never occur (left out of the mean).
    classes = np.array([FREE_ID, 11, 11, 13, 4, 4, 3, 7, 10, 2])
    return classes[rng.integers(0, len(classes), shape)]


def test_dynamic_miou_matches_numpy_reference():
    rng = np.random.default_rng(3)
    shape = (3, 4, 6, 6, 2)
    gt = _labels(rng, shape)
    gt[gt == 2] = 11  # bicycles only in the predictions: a false positive of a class with no ground truth
    pred = np.where(rng.random(shape) < 0.6, gt, _labels(rng, shape))
    for protocol, mask in (("occworld", None), ("occ3d", rng.random(shape) < 0.7)):
        metric = OccupancyForecastMetric(protocol=protocol, report_steps=(1, 2, 3, 4))
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt), None if mask is None else torch.from_numpy(mask))
        got = metric.compute()["dynamic_miou"]
        want = _reference(pred, gt, mask)
        np.testing.assert_allclose([got[k] for k in ("0.5s", "1s", "1.5s", "2s")], want, rtol=0, atol=1e-9)
        assert abs(got["avg"] - np.mean(want)) < 1e-9


def test_dynamic_miou_ignores_static_classes_and_absent_road_users():
    gt = torch.full((1, 1, 4, 4, 1), 11)
    gt[0, 0, 0, 0, 0] = 4  # one car voxel
    pred = gt.clone()
    pred[0, 0, 1:, :, 0] = 13  # static classes wrong: the overall mIoU drops, the dynamic one does not
    pred[0, 0, 0, 1, 0] = 7  # a pedestrian that is not there: pedestrians have no ground truth, left out
    metric = OccupancyForecastMetric(report_steps=(1,))
    metric.update(pred, gt)
    res = metric.compute()
    assert res["dynamic_miou"]["0.5s"] == 100.0
    assert res["miou"]["0.5s"] < 100.0
    metric = OccupancyForecastMetric(report_steps=(1,))
    metric.update(torch.full_like(gt, 11), gt)  # the car missed
    assert metric.compute()["dynamic_miou"]["0.5s"] == 0.0
