"""Semantic occupancy forecasting metrics under two published protocols, selectable by name.

``protocol="occworld"`` — OccWorld (Zheng et al., arXiv 2311.16038; code wzzheng/OccWorld
``utils/metric_util.py``, class ``multi_step_MeanIou``):
  * per forecast step, true-positive / ground-truth / predicted voxel counts are summed over the
    whole dataset (not averaged per sample);
  * mIoU is the plain mean over the semantic classes 0..16 (``others`` included, ``free`` = 17
    excluded); a class whose ground-truth count is zero scores IoU = 1 whatever was predicted
    (the code's ``if total_seen == 0: ious.append(1)``);
  * IoU is the binary IoU of occupied (label != free) vs free, with the same zero-GT rule;
  * no visibility mask: every voxel counts (a mask passed to ``update`` is rejected);
  * "1 s / 2 s / 3 s" are the values at steps 2 / 4 / 6 (2 Hz) and "avg" is their mean.

Beside the protocol's mIoU, ``dynamic_miou`` is the mean IoU over the road users' classes
(``DYNAMIC_CLASSES``: car, bus, truck, construction vehicle, trailer, motorcycle, bicycle, pedestrian)
that occur in the ground truth of that step: classes absent from the truth are left out rather than
scored 1, so the figure measures the moving part of the scene, not the classes the data never holds.

``protocol="occ3d"`` — Occ3D-nuScenes (Tian et al., arXiv 2304.14365; its ``Metric_mIoU``):
  * the same dataset-summed counts restricted to voxels where ``mask_camera`` is true (the mask
    is required);
  * per-class IoU = TP / (GT + Pred - TP), NaN when the union is empty, and mIoU is the NaN-mean
    over classes 0..16 (a class with no ground truth but false positives scores 0);
  * IoU of occupied vs free over the same masked voxels (NaN when nothing is occupied in either).

Beside the protocol's mIoU (unchanged), ``compute`` reports ``miou_present``: the mean IoU over the
semantic classes that occur in the evaluated ground truth at that step, and ``classes_absent``: the share
(percent) of semantic classes that do not. On a store whose class table is mostly unused, the
protocol's mIoU is dominated by absent classes (each scores 100 under OccWorld's rule); these two say so.

All counts come from a ``bincount`` over ``(step * C + gt) * C + pred`` per batch, so the
state is a [H, C, C] confusion matrix per forecast step; it is additive, hence streaming and
exact under any batch split and under data parallelism (one all-reduce in ``compute``).
Values are reported in percent, as the papers do.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from drivewm.data.spec import FREE_ID, NUM_CLASSES, OCC3D_CLASSES
from drivewm.metrics.distributed import StreamingMetric

PROTOCOLS = ("occworld", "occ3d")
DYNAMIC_CLASSES = ("car", "bus", "truck", "construction_vehicle", "trailer", "motorcycle", "bicycle", "pedestrian")


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Confusion matrices [H, C, C] (rows = ground truth, columns = prediction) of [B, H, ...] label grids."""
    if gt.device.type == "cpu":
        return _confusion_numpy(pred, gt, num_classes, mask)
    return _confusion_torch(pred, gt, num_classes, mask)


def _confusion_torch(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Accelerator path: one bincount for all steps, on the tensors' device."""
    h, c = gt.shape[1], num_classes
    # The narrowest integer type that holds every flat index: less memory traffic on the GPU.
    dtype = torch.int16 if h * c * c <= 2**15 - 1 else torch.int32 if h * c * c <= 2**31 - 1 else torch.int64
    offset = (torch.arange(h, device=gt.device, dtype=dtype) * (c * c)).view(1, h, *([1] * (gt.ndim - 2)))
    # Flat index (step, gt, pred) -> one bincount for every step and class at once.
    idx = gt.to(dtype) * c + pred.to(dtype) + offset  # [B, H, X, Y, Z]
    if mask is not None:
        idx = idx[mask]
    counts = torch.bincount(idx.reshape(-1), minlength=h * c * c)
    return counts.view(h, c, c).cpu()


def _confusion_numpy(pred: torch.Tensor, gt: torch.Tensor, c: int, mask: torch.Tensor | None) -> torch.Tensor:
    """CPU path: numpy's integer kernels run the per-step (gt * C + pred) bincount several times faster."""
    g, p = gt.numpy(), pred.numpy()
    m = mask.numpy() if mask is not None else None
    itype = np.uint16 if c * c <= 2**16 - 1 else np.int64
    out = np.zeros((g.shape[1], c * c), np.int64)
    for t in range(g.shape[1]):
        idx = g[:, t].astype(itype) * itype(c) + p[:, t].astype(itype)  # [B, X, Y, Z]
        if m is not None:
            idx = idx[m[:, t]]
        out[t] = np.bincount(idx.ravel(), minlength=c * c)
    return torch.from_numpy(out).view(-1, c, c)


class OccupancyForecastMetric(StreamingMetric):
    """Per-horizon IoU / mIoU / per-class IoU of forecast occupancy, OccWorld or Occ3D protocol.

    Args:
        num_classes: size of the class table (18 for Occ3D-nuScenes, ``free`` included).
        free_id: id of the ``free`` class (17 for Occ3D); excluded from mIoU, defines "occupied".
        protocol: ``"occworld"`` (no mask, zero-GT class scores 1) or ``"occ3d"`` (``mask_camera``
            voxels only, NaN-mean over classes).
        report_steps: 1-based forecast steps named in the report (default 2, 4, 6 = 1 s, 2 s, 3 s).
        hz: frame rate used to name the steps in seconds.
        class_names: names for the per-class table (default: the Occ3D names when C = 18).

    ``update(pred, gt, mask=None)`` takes integer label grids [B, H, X, Y, Z] with H forecast steps.
    """

    def __init__(
        self,
        *,
        num_classes: int = NUM_CLASSES,
        free_id: int = FREE_ID,
        protocol: str = "occworld",
        report_steps: tuple[int, ...] = (2, 4, 6),
        hz: float = 2.0,
        class_names: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if not 0 <= free_id < num_classes:
            raise ValueError(f"free_id {free_id} outside the class table of {num_classes} classes")
        if any(s < 1 for s in report_steps):
            raise ValueError(f"report_steps are 1-based forecast steps, got {report_steps}")
        if class_names is None:
            class_names = OCC3D_CLASSES if num_classes == len(OCC3D_CLASSES) else tuple(f"class_{i}" for i in range(num_classes))
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        self.num_classes = num_classes
        self.free_id = free_id
        self.protocol = protocol
        self.report_steps = tuple(report_steps)
        self.hz = hz
        self.class_names = tuple(class_names)
        self._add_state("confusion", torch.zeros(0, num_classes, num_classes, dtype=torch.int64))

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch: ``pred``, ``gt`` integer labels [B, H, X, Y, Z]; ``mask`` bool, same shape (occ3d)."""
        self._check(pred, gt, mask)
        counts = confusion_counts(pred, gt, self.num_classes, mask)
        if self.confusion.shape[0] == 0:
            self.confusion = torch.zeros_like(counts)
        elif self.confusion.shape[0] != counts.shape[0]:
            raise ValueError(f"pred has {counts.shape[0]} forecast steps but earlier batches had {self.confusion.shape[0]}")
        self.confusion += counts

    def _check(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> None:
        if gt.ndim < 3:
            raise ValueError(f"gt must be label grids [B, H, X, Y, Z] (at least [B, H, N]), got shape {tuple(gt.shape)}")
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} does not match gt shape {tuple(gt.shape)}")
        for name, x in (("pred", pred), ("gt", gt)):
            if x.is_floating_point() or x.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class ids, got dtype {x.dtype}")
            if x.numel():
                lo, hi = (int(v) for v in torch.aminmax(x))
                if lo < 0 or hi >= self.num_classes:
                    raise ValueError(f"{name} has labels in [{lo}, {hi}], outside the class table 0..{self.num_classes - 1}")
        if self.protocol == "occworld" and mask is not None:
            raise ValueError("mask: the occworld protocol uses no visibility mask; use protocol='occ3d' to evaluate on mask_camera")
        if self.protocol == "occ3d":
            if mask is None:
                raise ValueError("mask: the occ3d protocol needs the mask_camera voxels (bool, same shape as gt)")
            if mask.shape != gt.shape or mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool with gt's shape {tuple(gt.shape)}, got {mask.dtype} {tuple(mask.shape)}")

    def _class_iou(self, tp: torch.Tensor, seen: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Per-class IoU [H, K] from counts [H, K] under the protocol's rule for empty classes."""
        union = (seen + positive - tp).double()
        iou = tp.double() / union.clamp_min(1)
        if self.protocol == "occworld":
            return torch.where(seen == 0, torch.ones_like(iou), iou)
        return torch.where(union == 0, torch.full_like(iou, math.nan), iou)

    def compute(self) -> dict:
        """Reduce over processes and report per-step and named-horizon IoU / mIoU (percent)."""
        conf = self._reduced()["confusion"]  # [H, C, C]
        if conf.shape[0] == 0:
            raise ValueError("compute() called before any update()")
        h = conf.shape[0]
        sem = [c for c in range(self.num_classes) if c != self.free_id]
        tp = torch.diagonal(conf, dim1=1, dim2=2)  # [H, C]
        seen, positive = conf.sum(2), conf.sum(1)  # ground-truth and predicted counts per class
        class_iou = self._class_iou(tp[:, sem], seen[:, sem], positive[:, sem])  # [H, K]
        if self.protocol == "occworld":
            miou = class_iou.mean(1)
        else:
            miou = torch.nanmean(class_iou, dim=1)
        occ = torch.ones(self.num_classes, dtype=torch.bool)
        occ[self.free_id] = False
        occ_tp = conf[:, occ][:, :, occ].sum((1, 2))
        occ_seen = conf[:, occ].sum((1, 2))
        occ_pos = conf[:, :, occ].sum((1, 2))
        iou = self._class_iou(occ_tp[:, None], occ_seen[:, None], occ_pos[:, None])[:, 0]  # [H]
        present = seen[:, sem] > 0  # [H, K] classes in the evaluated ground truth
        miou_present = torch.stack([class_iou[t][present[t]].mean() if present[t].any() else
                                    torch.tensor(math.nan, dtype=class_iou.dtype) for t in range(h)])
        absent = 1.0 - present.double().mean(1)  # [H]
        names = [self.class_names[c] for c in sem]
        dyn = [c for c in range(self.num_classes) if self.class_names[c] in DYNAMIC_CLASSES]
        dyn_iou = self._class_iou(tp[:, dyn], seen[:, dyn], positive[:, dyn])  # [H, D]
        present = seen[:, dyn] > 0
        dynamic = torch.where(present, dyn_iou, torch.zeros_like(dyn_iou)).sum(1) / present.sum(1).clamp_min(1)
        dynamic = torch.where(present.any(1), dynamic, torch.full_like(dynamic, math.nan))  # [H]
        steps = [s for s in self.report_steps if s <= h] or list(range(1, h + 1))
        horizon = {self._step_name(s): s for s in steps}
        result = {
            "protocol": self.protocol,
            "unit": "%",
            "miou_per_step": [100 * float(v) for v in miou],
            "iou_per_step": [100 * float(v) for v in iou],
            "miou": {k: 100 * float(miou[s - 1]) for k, s in horizon.items()},
            "iou": {k: 100 * float(iou[s - 1]) for k, s in horizon.items()},
            "dynamic_miou": {k: 100 * float(dynamic[s - 1]) for k, s in horizon.items()},
            "per_class_iou": {k: dict(zip(names, (100 * float(v) for v in class_iou[s - 1]))) for k, s in horizon.items()},
            "voxels_per_step": [int(v) for v in conf.sum((1, 2))],
        }
        result["miou_present"] = {k: 100 * float(miou_present[s - 1]) for k, s in horizon.items()}
        result["classes_absent"] = {k: 100 * float(absent[s - 1]) for k, s in horizon.items()}
        for key in ("miou_present", "classes_absent"):
            result[key]["avg"] = sum(result[key][k] for k in horizon) / len(horizon)
        result["miou"]["avg"] = sum(result["miou"][k] for k in horizon) / len(horizon)
        result["iou"]["avg"] = sum(result["iou"][k] for k in horizon) / len(horizon)
        result["dynamic_miou"]["avg"] = sum(result["dynamic_miou"][k] for k in horizon) / len(horizon)
        return result

    def _step_name(self, step: int) -> str:
        seconds = step / self.hz
        return f"{seconds:g}s"
