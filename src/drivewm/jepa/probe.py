"""Linear probes on frozen patch features: BEV semantics of the current frame, future agent occupancy.

The representation test of the JEPA papers (I-JEPA arXiv 2301.08243, LeJEPA arXiv 2511.08544),
made dense for driving: every patch token [D] of the frozen encoder gets two labels,

- ``seg``: the BEV semantic class of the patch in the current frame (per BEV cell the top-most
  non-free voxel's class, ``free`` if none; per patch the most frequent cell class), scored by mIoU;
- ``agents``: the share of the patch's BEV cells that a dynamic road user (car, bus, truck, trailer,
  construction vehicle, bicycle, motorcycle, pedestrian) occupies ``offset`` frames ahead (a future the
  encoder only sees through the current frame), a ridge regression scored by R^2. Road users cover a
  few percent of the patches, so a classifier's argmax would answer "no agent" everywhere and score
  the same for every encoder; the regression's R^2 does not reward that.

The probe head is ``drivewm.metrics.linear_probe`` (closed-form ridge on standardised features), fitted
on the train split's tokens and scored on the validation split's.

``finetune_segmentation`` is the paper's evaluation (AD-L-JEPA, arXiv 2501.04969, Sec. 4: a downstream
head fine-tuned with the encoder, from the pretrained weights against from scratch, at a fraction of the
labels): a small BEV segmentation head (3x3 conv, BatchNorm, ReLU, 1x1 conv to the classes) on the
encoder's [B, N, D] features, trained with the encoder end to end on the ``seg`` labels of a seeded
``label_fraction`` of the training frames, scored by mIoU on the validation frames.
"""

from __future__ import annotations

from dataclasses import replace
import copy
import math
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.data.config import DataConfig
from drivewm.data.spec import class_id
from drivewm.metrics import linear_probe, token_miou

AGENT_CLASSES = ("bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian", "trailer", "truck")


def bev_semantics(occ: Tensor, free_id: int) -> Tensor:
    """[B, X, Y, Z] -> [B, X, Y]: the class of the top-most non-free voxel of each column, free if none."""
    z = occ.shape[-1]
    occupied = occ != free_id
    height = torch.arange(1, z + 1, device=occ.device).view(1, 1, 1, z)
    top = (occupied * height).argmax(dim=-1, keepdim=True)  # index of the highest occupied voxel
    cls = torch.gather(occ, -1, top).squeeze(-1)
    return torch.where(occupied.any(-1), cls, torch.full_like(cls, free_id))


def patch_semantics(occ: Tensor, patch: int, num_classes: int, free_id: int) -> Tensor:
    """[B, X, Y, Z] -> [B, N] the most frequent BEV class of each patch."""
    sem = bev_semantics(occ, free_id).long()  # [B, X, Y]
    hot = F.one_hot(sem, num_classes).permute(0, 3, 1, 2).float()  # [B, C, X, Y]
    counts = F.avg_pool2d(hot, patch)  # [B, C, X/p, Y/p]
    return counts.argmax(1).flatten(1)


def patch_agents(occ: Tensor, patch: int) -> Tensor:
    """[B, X, Y, Z] -> [B, N] the share of each patch's BEV cells with a dynamic road user in any voxel."""
    ids = torch.tensor([class_id(c) for c in AGENT_CLASSES], device=occ.device)
    agent = torch.isin(occ, ids).any(-1).float()[:, None]  # [B, 1, X, Y]
    return F.avg_pool2d(agent, patch).flatten(1)


@torch.no_grad()
def probe_features(
    encode: Callable[[Tensor], Tensor], batches: Iterable[dict[str, Tensor]], *, current: int, offset: int,
    patch: int, num_classes: int, free_id: int, device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """Token features [M, D], BEV classes [M] and future agent shares [M] of windows' current frames."""
    feats, seg, agents = [], [], []
    for batch in batches:
        occ = batch["occ"].to(device)
        if occ.dim() != 5 or occ.shape[1] <= current + offset:
            raise ValueError(f"probe windows need >= {current + offset + 1} frames, got occ {tuple(occ.shape)}")
        now = occ[:, current]
        z = encode(now)  # [B, N, D]
        feats.append(z.reshape(-1, z.shape[-1]).float().cpu())
        seg.append(patch_semantics(now, patch, num_classes, free_id).flatten().cpu())
        agents.append(patch_agents(occ[:, current + offset], patch).flatten().cpu())
    if not feats:
        raise ValueError("probe_features: no batches")
    return torch.cat(feats), torch.cat(seg), torch.cat(agents)


def run_probes(
    encode: Callable[[Tensor], Tensor], train_batches: Iterable[dict[str, Tensor]], val_batches: Iterable[dict[str, Tensor]],
    *, current: int, offset: int, patch: int, num_classes: int = 18, free_id: int = 17, ridge: float = 1e-2,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Both probes fitted on train tokens, scored on val tokens: {'seg_miou', 'agents_r2'}."""
    kw = dict(current=current, offset=offset, patch=patch, num_classes=num_classes, free_id=free_id, device=device)
    xtr, str_, atr = probe_features(encode, train_batches, **kw)
    xte, ste, ate = probe_features(encode, val_batches, **kw)
    seg = linear_probe(xtr, str_, xte, ste, task="segmentation", num_classes=num_classes, ridge=ridge)
    ag = linear_probe(xtr, atr, xte, ate, task="regression", ridge=ridge)
    return {"seg_miou": seg["miou"], "agents_r2": ag["r2"], "train_tokens": int(xtr.shape[0]), "val_tokens": int(xte.shape[0])}


class SegmentationFineTune(nn.Module):
    """A copy of ``model`` (every parameter trainable) + a BEV segmentation head: frames [B, X, Y, Z] -> logits
    [B, C, h, w]; the model's ``encode`` gives the [B, N, D] features."""

    def __init__(self, model: nn.Module, grid: tuple[int, int], dim: int, num_classes: int) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).requires_grad_(True)
        self.grid = grid
        self.head = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.ReLU(), nn.Conv2d(dim, num_classes, 1))

    def forward(self, occ: Tensor) -> Tensor:
        z = self.model.encode(occ)  # [B, N, D]
        b, n, d = z.shape
        return self.head(z.transpose(1, 2).reshape(b, d, *self.grid))


def finetune_segmentation(
    model: nn.Module, train_frames: Tensor, val_frames: Tensor, *, label_fraction: float = 1.0, steps: int = 100,
    batch_size: int = 8, lr: float = 1e-3, num_classes: int = 18, free_id: int = 17, seed: int = 0,
) -> dict[str, float]:
    """Fine-tune ``model``'s encoder with a segmentation head on the labels of a seeded ``label_fraction`` of
    ``train_frames`` [M, X, Y, Z]; the head's mIoU on ``val_frames``. ``model`` itself is left unchanged."""
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    enc = model.encoder.cfg
    g = torch.Generator().manual_seed(seed)
    labelled = train_frames[torch.randperm(train_frames.shape[0], generator=g)[: max(1, math.ceil(label_fraction * train_frames.shape[0]))]]
    torch.manual_seed(seed)
    net = SegmentationFineTune(model, enc.token_grid, enc.dim, num_classes).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    labels = patch_semantics(labelled, enc.patch, num_classes, free_id)  # [M, N]
    for _ in range(steps):
        idx = torch.randint(0, labelled.shape[0], (min(batch_size, labelled.shape[0]),), generator=g)
        logits = net(labelled[idx]).flatten(2)  # [B, C, N]
        loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(val_frames[i:i + batch_size]).argmax(1).flatten() for i in range(0, val_frames.shape[0], batch_size)])
    target = patch_semantics(val_frames, enc.patch, num_classes, free_id).flatten()
    return {"seg_miou": token_miou(pred, target, num_classes), "labelled_frames": int(labelled.shape[0]),
            "label_fraction": label_fraction, "steps": steps}


def probe_encoder(model, data: DataConfig, *, offset: int = 2, batches: int = 16, batch_size: int = 8,
                  ridge: float = 1e-2) -> dict:
    """Linear probes on the frozen features of a JEPA-kind `model` over the store of `data` (train split fits,
    val split scores): BEV segmentation mIoU (current frame) and future agent occupancy R^2."""
    from drivewm.data.windows import build_dataset
    from drivewm.errors import DrivewmError

    if not hasattr(model, "encode"):
        raise DrivewmError(f"model {type(model).__name__} has no encode(); not a JEPA-kind model")
    data = replace(data, past=1, future=offset, keys=["occ"])
    enc = model.encoder.cfg
    train_set, val_set = build_dataset(data, "train"), build_dataset(data, "val")
    if len(val_set) == 0:
        raise DrivewmError(f"{data.path}: no validation windows (raise data.val_fraction or add episodes)")

    def loader(ds):
        gen = torch.Generator().manual_seed(0)
        dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen)
        return [b for _, b in zip(range(batches), dl)]

    res = run_probes(model.encode, loader(train_set), loader(val_set), current=0, offset=offset, patch=enc.patch,
                     num_classes=enc.num_classes, free_id=enc.num_classes - 1, ridge=ridge)
    res.update(data=data.path, offset=offset)
    return res
