"""Reconstruction quality and code statistics of a trained tokenizer on an episode store.

Occupancy tokenizers: every frame is encoded to tokens and decoded back (argmax of the logits);
IoU / mIoU / per-class IoU follow the OccWorld protocol (``drivewm.metrics.OccupancyForecastMetric``,
dataset-summed counts, free excluded, no mask) with the reconstruction as a one-step "forecast".
LiDAR tokenizers: every return's ray is re-rendered through the tokens; per-ray depth L1 / AbsRel
and Chamfer distance of the re-rendered cloud (4D-Occ protocol, ``PointCloudForecastMetric``).
Both report codebook usage, perplexity and bits per frame (``CodebookMetric``) and the compression
ratio = bits of the raw frame / bits of its tokens (occupancy: X*Y*Z*log2(C) bits; LiDAR: 3 x 32
bits per point).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from drivewm.data.windows import build_dataset
from drivewm.metrics import CodebookMetric, OccupancyForecastMetric, PointCloudForecastMetric
from drivewm.tokenizers.bev_cnn import largest_downsampling
from drivewm.tokenizers.lidar import LidarTokenizer
from drivewm.tokenizers.occ import OccTokenizer

log = logging.getLogger(__name__)

LOST_IOU = 1.0
"""Reconstruction IoU (%) at or below which a class present in the data counts as lost by the tokenizer."""


def frame_dataset(cfg, data_path: str, split: str, key: str, max_frames: int):
    """Single frames of one split (past 1, future 0) of the store at ``data_path``; an evenly spaced subset of ``max_frames``."""
    dcfg = dataclasses.replace(cfg.data, path=data_path, past=1, future=0, stride=1, keys=[key])
    ds = build_dataset(dcfg, split)
    if len(ds) == 0:
        raise ValueError(f"{data_path}: the {split!r} split has no frames")
    if max_frames and len(ds) > max_frames:
        ds = Subset(ds, np.linspace(0, len(ds) - 1, max_frames).astype(np.int64).tolist())
    return ds


@torch.no_grad()
def evaluate_occ(model: OccTokenizer, dataset, batch_size: int, device: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics dict and a few (input, reconstruction) frames [N, X, Y, Z] for the picture."""
    grid = model.grid
    occ_metric = OccupancyForecastMetric(num_classes=grid.num_classes, free_id=grid.free_id, protocol="occworld",
                                         report_steps=(1,), class_names=grid.classes)
    code_metric = CodebookMetric(vocab_size=model.vocab_size)
    shown_in, shown_out = [], []
    gt_counts = torch.zeros(grid.num_classes, dtype=torch.long)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        occ = batch["occ"][:, 0].to(device)  # [B, X, Y, Z]
        gt_counts += torch.bincount(occ.reshape(-1).long().cpu(), minlength=grid.num_classes)
        codes = model.encode(occ)
        rec = model.decode(codes).argmax(1)  # [B, X, Y, Z]
        occ_metric.update(rec[:, None].cpu(), occ[:, None].long().cpu())
        code_metric.update(codes.cpu())
        if len(shown_in) < 4:
            shown_in.append(occ[0].cpu().numpy())
            shown_out.append(rec[0].cpu().numpy())
    o, c = occ_metric.compute(), code_metric.compute()
    raw_bits = math.prod(grid.shape) * math.log2(grid.num_classes)
    per_class = next(iter(o["per_class_iou"].values()))
    sem = [c for c in range(grid.num_classes) if c != grid.free_id]
    voxels = {grid.classes[c]: int(gt_counts[c]) for c in sem if gt_counts[c] > 0}  # classes present in the data
    lost = lost_classes(per_class, voxels, model)
    result = {
        "iou": o["iou_per_step"][0],
        "miou": o["miou_per_step"][0],
        # OccWorld's mIoU scores a class absent from the ground truth as 100; the mean over present classes too.
        "miou_present": next(iter(o["miou_present"].values())),
        "classes_present": len(voxels),
        "classes_lost": lost,
        "per_class_iou": per_class,
        **{k: c[k] for k in ("usage", "codes_used", "vocab_size", "perplexity", "tokens_per_frame", "bits_per_frame",
                             "entropy_bits_per_frame", "frames")},
        "compression_ratio": raw_bits / c["bits_per_frame"],
        "code_counts": c["counts"],
    }
    return result, np.stack(shown_in), np.stack(shown_out)


def lost_classes(per_class: dict[str, float], voxels: dict[str, int], model) -> list[str]:
    """The classes present in the data (`voxels`: name -> ground-truth voxel count) whose reconstruction IoU is
    at most LOST_IOU; each is logged as a warning that names it and the tokenizer's token cell."""
    f, rule = model.grid.shape[0] // model.token_shape[0], largest_downsampling(model.grid.voxel_size)
    lost = [name for name, n in voxels.items() if per_class[name] <= LOST_IOU]
    for name in lost:
        log.warning("the tokenizer loses class %r: reconstruction IoU %.1f%% although %d voxels of it are in the "
                    "data. Its %dx downsampling makes a token cell %g m wide; for %g m voxels the presets' rule "
                    "(docs/own-data.md, Downsampling) takes at most %dx (model.cnn.channel_mult with %d entries). "
                    "Within that rule, train longer", name, per_class[name], voxels[name], f,
                    f * model.grid.voxel_size, model.grid.voxel_size, rule, rule.bit_length())
    return lost


@torch.no_grad()
def evaluate_lidar(model: LidarTokenizer, dataset, batch_size: int, device: str) -> tuple[dict, list, list]:
    """Metrics dict and a few (input, reconstruction) clouds for the picture."""
    pc_metric = PointCloudForecastMetric()
    code_metric = CodebookMetric(vocab_size=model.vocab_size)
    points_total, shown_in, shown_out = 0, [], []
    origin = model.origin
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pts, count = batch["lidar"][:, 0].to(device), batch["lidar_count"][:, 0].to(device)  # [B, P, 4], [B]
        code_metric.update(model.encode(pts, count).cpu())
        rec = model.reconstruct(pts, count)
        b, m = pts.shape[0], rec["mask"].cpu()
        pred = [[rec["points"][i].cpu()[m[i]]] for i in range(b)]
        gt = [[rec["points_gt"][i].cpu()[m[i]]] for i in range(b)]
        depth = [[rec["depth"][i].cpu()[m[i]]] for i in range(b)]
        pc_metric.update(pred, gt, pred_depth=depth, origin=origin.expand(b, 1, 3))
        points_total += int(rec["mask"].sum())
        if len(shown_in) < 2:
            shown_in.append(gt[0][0].numpy())
            shown_out.append(pred[0][0].numpy())
    p, c = pc_metric.compute(), code_metric.compute()
    raw_bits = points_total / max(1, c["frames"]) * 3 * 32
    result = {**{k: p[k] for k in ("cd", "nfcd", "l1", "absrel", "pairs", "skipped_cd")},
              **{k: c[k] for k in ("usage", "codes_used", "vocab_size", "perplexity", "tokens_per_frame", "bits_per_frame",
                                   "entropy_bits_per_frame", "frames")},
              "compression_ratio": raw_bits / c["bits_per_frame"]}
    return result, shown_in, shown_out


def save_occ_comparison(path: Path, model: OccTokenizer, inputs: np.ndarray, recs: np.ndarray) -> Path:
    """PNG with one row per frame: input BEV | reconstruction BEV (top non-free voxel of each column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drivewm.data.render import bev_extent, bev_image

    n = len(inputs)
    fig, axes = plt.subplots(n, 2, figsize=(7, 3.5 * n), squeeze=False)
    for i in range(n):
        for j, (arr, name) in enumerate(((inputs[i], "input"), (recs[i], "reconstruction"))):
            axes[i, j].imshow(bev_image(arr.astype(np.uint8), model.grid), extent=bev_extent(model.grid), interpolation="nearest")
            axes[i, j].set_title(name)
            axes[i, j].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_lidar_comparison(path: Path, inputs: list, recs: list) -> Path:
    """PNG with one row per sweep: input returns | re-rendered returns (BEV scatter coloured by height)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(inputs), 2, figsize=(8, 4 * len(inputs)), squeeze=False)
    for i in range(len(inputs)):
        for j, (pts, name) in enumerate(((inputs[i], "input"), (recs[i], "reconstruction"))):
            axes[i, j].scatter(-pts[:, 1], pts[:, 0], c=pts[:, 2], s=0.5, cmap="viridis")
            axes[i, j].set_aspect("equal")
            axes[i, j].set_title(name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
