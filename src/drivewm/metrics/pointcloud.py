"""Point-cloud forecasting metrics, 4D-Occ protocol (Khurana et al., arXiv 2302.13130; used by Copilot4D, arXiv 2311.01017).

* Chamfer distance (CD): ``(mean_i min_j |p_i - g_j|^2 + mean_j min_i |g_j - p_i|^2) / 2`` in m^2
  (squared distances, each direction averaged over its own cloud, then halved).
* Near-field Chamfer (NFCD): the same after cropping both clouds to the region of interest
  [-70, 70] x [-70, 70] x [-4.5, 4.5] m.
* Per-ray depth: along each ground-truth ray, L1 = |d_gt - d_pred| (m) and AbsRel = L1 / d_gt,
  with d measured from the sensor origin; needs the model's predicted depth along the
  ground-truth rays (``pred_depth``), as 4D-Occ and Copilot4D render them.
* Each number is averaged per cloud first, then over all (sample, future frame) pairs.

Nearest neighbours are exact: a KD-tree (scipy ``cKDTree``, all cores) on CPU tensors and a
chunked ``cdist`` search on CUDA tensors, so a 30k x 30k pair never builds a full [N, M] matrix.

Empty clouds: Chamfer is undefined when either cloud of a pair is empty (no nearest neighbour
exists), so such a pair is left out of CD and counted in ``skipped_cd``. NFCD scores a pair whose
crop leaves either cloud empty as 0 and keeps it in the average, as 4D-Occ's evaluation kit does
(tarashakhurana/4d-occ-forecasting, ``cvpr23-evalkit/evaluate.py``,
``compute_nearfield_chamferdistance``, commit e1ea943); ``empty_nfcd`` counts those pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.spatial import cKDTree

from drivewm.metrics.distributed import StreamingMetric, check_finite

ROI_4DOCC: tuple[tuple[float, float, float], tuple[float, float, float]] = ((-70.0, -70.0, -4.5), (70.0, 70.0, 4.5))


def nearest_sq_dist(src: torch.Tensor, dst: torch.Tensor, chunk: int = 4096, method: str = "auto") -> torch.Tensor:
    """Squared distance [N] from each point of ``src`` [N, 3] to its exact nearest neighbour in ``dst`` [M, 3].

    ``method``: "kdtree" (scipy, CPU), "chunked" (cdist over ``chunk`` rows at a time, any device)
    or "auto" (KD-tree for CPU tensors, chunked otherwise).
    """
    if method not in ("auto", "kdtree", "chunked"):
        raise ValueError(f"method must be 'auto', 'kdtree' or 'chunked', got {method!r}")
    if dst.shape[0] == 0:
        raise ValueError("dst: nearest neighbours need a non-empty cloud")
    if src.shape[0] == 0:
        return src.new_zeros(0)
    if method == "kdtree" or (method == "auto" and src.device.type == "cpu"):
        tree = cKDTree(dst.detach().double().cpu().numpy())
        d, _ = tree.query(src.detach().double().cpu().numpy(), k=1, workers=-1)
        return torch.from_numpy(d * d).to(device=src.device, dtype=src.dtype)
    out = []
    for start in range(0, src.shape[0], chunk):
        # [chunk, M] at a time; the direct difference form keeps the distances exact to fp32.
        block = torch.cdist(src[start : start + chunk], dst, compute_mode="donot_use_mm_for_euclid_dist")
        out.append(block.min(dim=1).values.square())
    return torch.cat(out)


def chamfer_distance(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """4D-Occ Chamfer (m^2) of two non-empty clouds [N, >=3] and [M, >=3] (only xyz used)."""
    if pred.shape[0] == 0 or gt.shape[0] == 0:
        raise ValueError(f"chamfer_distance needs non-empty clouds, got pred {pred.shape[0]} and gt {gt.shape[0]} points")
    p, g = pred[:, :3], gt[:, :3]
    if p.device.type == "cpu":
        p, g = p.double(), g.double()  # the KD-tree works in float64 anyway
    return float((nearest_sq_dist(p, g).double().mean() + nearest_sq_dist(g, p).double().mean()) / 2)


def crop(points: torch.Tensor, roi: tuple[Sequence[float], Sequence[float]] = ROI_4DOCC) -> torch.Tensor:
    """Points [N, >=3] whose xyz lie inside the closed box ``roi`` = (lower, upper)."""
    lo = torch.as_tensor(roi[0], dtype=points.dtype, device=points.device)
    hi = torch.as_tensor(roi[1], dtype=points.dtype, device=points.device)
    keep = ((points[:, :3] >= lo) & (points[:, :3] <= hi)).all(dim=1)
    return points[keep]


def clouds_from_padded(lidar: torch.Tensor, count: torch.Tensor) -> list[list[torch.Tensor]]:
    """Nested clouds [B][H] of [n, C] from the padded window layout ``lidar`` [B, H, N, C] + ``lidar_count`` [B, H]."""
    if lidar.ndim != 4 or count.shape != lidar.shape[:2]:
        raise ValueError(f"lidar must be [B, H, N, C] with lidar_count [B, H], got {tuple(lidar.shape)} and {tuple(count.shape)}")
    return [[lidar[b, t, : int(count[b, t])] for t in range(lidar.shape[1])] for b in range(lidar.shape[0])]


class PointCloudForecastMetric(StreamingMetric):
    """Streaming CD / NFCD / per-ray L1 and AbsRel over (sample, future frame) pairs, 4D-Occ protocol.

    ``update(pred, gt, pred_depth=None, origin=None)``: ``pred`` and ``gt`` are nested sequences
    [B][H] of clouds [N, >=3] (xyz first, ego frame of that future frame); ``pred_depth`` [B][H]
    of depths [N_gt] along the ground-truth rays; ``origin`` [B, H, 3] sensor origins (default 0).
    """

    def __init__(self, *, roi: tuple[Sequence[float], Sequence[float]] = ROI_4DOCC) -> None:
        super().__init__()
        self.roi = (tuple(float(v) for v in roi[0]), tuple(float(v) for v in roi[1]))
        # Per step: [sum, count] of CD, NFCD, L1, AbsRel; counts of skipped pairs.
        for name in ("cd", "nfcd", "l1", "absrel"):
            self._add_state(f"{name}_sum", torch.zeros(0, dtype=torch.float64))
            self._add_state(f"{name}_n", torch.zeros(0, dtype=torch.float64))
        self._add_state("skipped_cd", torch.zeros(0, dtype=torch.float64))
        self._add_state("empty_nfcd", torch.zeros(0, dtype=torch.float64))

    def _grow(self, h: int) -> None:
        if self.cd_sum.shape[0] == 0:
            for name in self._state_names:
                setattr(self, name, torch.zeros(h, dtype=torch.float64))
        elif self.cd_sum.shape[0] != h:
            raise ValueError(f"pred has {h} future frames per sample but earlier batches had {self.cd_sum.shape[0]}")

    def update(
        self,
        pred: Sequence[Sequence[torch.Tensor]],
        gt: Sequence[Sequence[torch.Tensor]],
        pred_depth: Sequence[Sequence[torch.Tensor]] | None = None,
        origin: torch.Tensor | None = None,
    ) -> None:
        if len(pred) != len(gt):
            raise ValueError(f"pred has {len(pred)} samples but gt has {len(gt)}")
        if len(gt) == 0:
            return
        h = len(gt[0])
        if pred_depth is not None and len(pred_depth) != len(gt):
            raise ValueError(f"pred_depth has {len(pred_depth)} samples but gt has {len(gt)}")
        if origin is not None and tuple(origin.shape) != (len(gt), h, 3):
            raise ValueError(f"origin must be [B, H, 3] = [{len(gt)}, {h}, 3], got {tuple(origin.shape)}")
        self._grow(h)
        for b in range(len(gt)):
            if len(pred[b]) != h or len(gt[b]) != h:
                raise ValueError(f"sample {b}: pred has {len(pred[b])} and gt {len(gt[b])} frames, expected {h}")
            for t in range(h):
                p, g = pred[b][t], gt[b][t]
                for name, x in (("pred", p), ("gt", g)):
                    if x.ndim != 2 or x.shape[1] < 3:
                        raise ValueError(f"{name}[{b}][{t}] must be a cloud [N, >=3], got shape {tuple(x.shape)}")
                    check_finite(f"{name}[{b}][{t}]", x)
                self._add_pair(t, p, g)
                if pred_depth is not None:
                    o = origin[b, t] if origin is not None else None
                    self._add_depth(t, pred_depth[b][t], g, o, f"pred_depth[{b}][{t}]")

    def _add_pair(self, t: int, p: torch.Tensor, g: torch.Tensor) -> None:
        if p.shape[0] and g.shape[0]:
            self.cd_sum[t] += chamfer_distance(p, g)
            self.cd_n[t] += 1
        else:
            self.skipped_cd[t] += 1
        pc, gc = crop(p, self.roi), crop(g, self.roi)
        if pc.shape[0] and gc.shape[0]:
            self.nfcd_sum[t] += chamfer_distance(pc, gc)
        else:
            self.empty_nfcd[t] += 1  # scores 0 and still counts, as the 4D-Occ kit
        self.nfcd_n[t] += 1

    def _add_depth(self, t: int, depth: torch.Tensor, g: torch.Tensor, o: torch.Tensor | None, name: str) -> None:
        if depth.shape != (g.shape[0],):
            raise ValueError(f"{name} must hold one depth per ground-truth ray, shape ({g.shape[0]},), got {tuple(depth.shape)}")
        check_finite(name, depth)
        if g.shape[0] == 0:
            return
        xyz = g[:, :3].double()
        d_gt = (xyz - (o.double() if o is not None else 0.0)).norm(dim=1)
        valid = d_gt > 0  # a ray of zero length has no direction and no relative error
        if not bool(valid.any()):
            return
        err = (d_gt[valid] - depth.double()[valid]).abs()
        self.l1_sum[t] += float(err.mean())
        self.absrel_sum[t] += float((err / d_gt[valid]).mean())
        self.l1_n[t] += 1
        self.absrel_n[t] += 1

    def compute(self) -> dict:
        """Mean over (sample, frame) pairs overall and per future step; NaN where nothing was counted."""
        s = self._reduced()
        if s["cd_sum"].shape[0] == 0:
            raise ValueError("compute() called before any update()")

        def mean(name: str) -> tuple[float, list[float]]:
            total, n = s[f"{name}_sum"], s[f"{name}_n"]
            per_step = [float(a / c) if c > 0 else float("nan") for a, c in zip(total, n)]
            overall = float(total.sum() / n.sum()) if n.sum() > 0 else float("nan")
            return overall, per_step

        result: dict = {"protocol": "4d-occ", "roi": self.roi}
        for name, unit in (("cd", "m^2"), ("nfcd", "m^2"), ("l1", "m"), ("absrel", "ratio")):
            overall, per_step = mean(name)
            result[name] = overall
            result[f"{name}_per_step"] = per_step
            result[f"{name}_unit"] = unit
        result["pairs"] = int(s["cd_n"].sum() + s["skipped_cd"].sum())
        result["skipped_cd"] = int(s["skipped_cd"].sum())
        result["empty_nfcd"] = int(s["empty_nfcd"].sum())
        return result

