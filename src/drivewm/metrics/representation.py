"""Representation metrics for JEPA-style encoders: RankMe, per-dimension spread, linear probes.

* RankMe (Garrido et al., arXiv 2210.02885, as used by LeJEPA arXiv 2511.08544): with the
  singular values sigma_k of the N x D embedding matrix, p_k = sigma_k / sum(sigma) + eps
  (eps = 1e-7) and RankMe = exp(-sum p_k log p_k), between 1 (collapse) and min(N, D).
  Streaming: the singular values of Z are the square roots of the eigenvalues of the Gram
  matrix Z^T Z, which is additive over batches and processes, so the value is exact.
* Per-dimension standard deviation of the raw embeddings (a dimension with ~0 spread has
  collapsed; VICReg arXiv 2105.04906 penalises std < 1) and of the L2-normalised embeddings
  times sqrt(D) (SimSiam arXiv 2011.10566: ~1 when spread over the sphere, ~0 when collapsed).
* Linear probe: a linear head on frozen features, fitted in closed form as ridge regression
  on standardised features (one-hot targets for classes); reports accuracy (classification),
  mIoU (dense per-token classes) or R^2 (regression) on held-out features.
"""

from __future__ import annotations

import math

import torch

from drivewm.metrics.distributed import StreamingMetric, check_finite

RANKME_EPS = 1e-7


def rankme(z: torch.Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe of an embedding matrix [N, D] (Garrido et al. 2023)."""
    if z.ndim != 2:
        raise ValueError(f"z must be an embedding matrix [N, D], got shape {tuple(z.shape)}")
    check_finite("z", z)
    return _rankme_from_singular(torch.linalg.svdvals(z.double()), eps)


def _rankme_from_singular(s: torch.Tensor, eps: float) -> float:
    total = s.sum()
    if total <= 0:
        return 1.0  # all-zero embeddings: full collapse
    p = s / total + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


class EmbeddingStats(StreamingMetric):
    """Streaming RankMe and per-dimension std of embeddings; ``update(z)`` with z [N, D] or [B, N, D]."""

    def __init__(self, *, eps: float = RANKME_EPS) -> None:
        super().__init__()
        self.eps = eps
        self._add_state("n", torch.zeros((), dtype=torch.float64))
        for name in ("sum", "sumsq", "unit_sum", "unit_sumsq"):
            self._add_state(name, torch.zeros(0, dtype=torch.float64))
        self._add_state("gram", torch.zeros(0, 0, dtype=torch.float64))

    def update(self, z: torch.Tensor) -> None:
        if z.ndim == 3:
            z = z.reshape(-1, z.shape[-1])  # [B*N, D]: tokens of all samples pooled
        if z.ndim != 2:
            raise ValueError(f"z must be embeddings [N, D] or [B, N, D], got shape {tuple(z.shape)}")
        check_finite("z", z)
        z = z.detach().double().cpu()
        d = z.shape[1]
        if self.sum.shape[0] == 0:
            for name in ("sum", "sumsq", "unit_sum", "unit_sumsq"):
                setattr(self, name, torch.zeros(d, dtype=torch.float64))
            self.gram = torch.zeros(d, d, dtype=torch.float64)
        elif self.sum.shape[0] != d:
            raise ValueError(f"z has dimension {d}, earlier batches {self.sum.shape[0]}")
        unit = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.n += z.shape[0]
        self.sum += z.sum(0)
        self.sumsq += z.square().sum(0)
        self.unit_sum += unit.sum(0)
        self.unit_sumsq += unit.square().sum(0)
        self.gram += z.T @ z

    def compute(self) -> dict:
        s = self._reduced()
        n = s["n"]
        if n < 2:
            raise ValueError(f"compute() needs at least 2 embeddings, got {int(n)}")

        def std(total: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
            var = (sq - total.square() / n) / (n - 1)
            return var.clamp_min(0).sqrt()

        raw = std(s["sum"], s["sumsq"])
        unit = std(s["unit_sum"], s["unit_sumsq"]) * math.sqrt(raw.shape[0])
        singular = torch.linalg.eigvalsh(s["gram"]).clamp_min(0).sqrt()
        return {
            "rankme": _rankme_from_singular(singular, self.eps),
            "dim": int(raw.shape[0]),
            "samples": int(n),
            "std_mean": float(raw.mean()),
            "std_min": float(raw.min()),
            "std_per_dim": [float(v) for v in raw],
            "normalized_std": float(unit.mean()),
        }


def _design(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Standardised features with a bias column: [N, D + 1]."""
    xs = (x - mean) / scale
    return torch.cat([xs, torch.ones(xs.shape[0], 1, dtype=xs.dtype)], 1)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    task: str = "classification",
    num_classes: int | None = None,
    ridge: float = 1e-3,
) -> dict:
    """Fit a ridge-regularised linear head on frozen features and score it on held-out features.

    ``task``: "classification" (labels [N] -> accuracy), "segmentation" (per-token labels [N] ->
    mIoU, the mean over classes present in test labels or predictions) or "regression" (targets
    [N] or [N, K] -> R^2 averaged over outputs). Features are [N, D]; ``ridge`` is the L2
    penalty relative to N (bias unpenalised).
    """
    if task not in ("classification", "segmentation", "regression"):
        raise ValueError(f"task must be classification, segmentation or regression, got {task!r}")
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be features [N, D], got shape {tuple(x.shape)}")
        check_finite(name, x)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"test_x has {test_x.shape[1]} features, train_x {train_x.shape[1]}")
    for name, x, y in (("train_y", train_x, train_y), ("test_y", test_x, test_y)):
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{name} has {y.shape[0]} rows for {x.shape[0]} feature rows")
    xtr, xte = train_x.detach().double().cpu(), test_x.detach().double().cpu()
    mean, scale = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
    a_tr, a_te = _design(xtr, mean, scale), _design(xte, mean, scale)
    if task == "regression":
        targets = train_y.detach().double().cpu().reshape(train_y.shape[0], -1)
    else:
        if train_y.is_floating_point() or test_y.is_floating_point():
            raise ValueError("train_y / test_y must hold integer class ids for a classification probe")
        k = num_classes if num_classes is not None else int(max(train_y.max(), test_y.max())) + 1
        if int(train_y.min()) < 0 or int(train_y.max()) >= k or int(test_y.min()) < 0 or int(test_y.max()) >= k:
            raise ValueError(f"train_y / test_y have labels outside 0..{k - 1}")
        targets = torch.nn.functional.one_hot(train_y.long().cpu(), k).double()
    # Ridge normal equations: (A^T A + lambda N I') W = A^T Y, bias row not penalised.
    penalty = torch.eye(a_tr.shape[1], dtype=torch.float64) * ridge * a_tr.shape[0]
    penalty[-1, -1] = 0
    w = torch.linalg.solve(a_tr.T @ a_tr + penalty, a_tr.T @ targets)  # [D + 1, K]
    out = a_te @ w
    if task == "regression":
        y = test_y.detach().double().cpu().reshape(test_y.shape[0], -1)
        ss_res = (y - out).square().sum(0)
        ss_tot = (y - y.mean(0)).square().sum(0).clamp_min(1e-12)
        return {"task": task, "r2": float((1 - ss_res / ss_tot).mean()), "probe": "ridge"}
    pred = out.argmax(1)
    y = test_y.long().cpu()
    if task == "classification":
        return {"task": task, "accuracy": float((pred == y).double().mean()), "probe": "ridge"}
    return {"task": task, "miou": token_miou(pred, y, k), "probe": "ridge"}


def token_miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """mIoU of per-token class ids [N]: the mean IoU over the classes present in the targets or predictions."""
    k = num_classes
    conf = torch.bincount(target.long().cpu() * k + pred.long().cpu(), minlength=k * k).view(k, k)
    tp, union = conf.diagonal().double(), (conf.sum(0) + conf.sum(1) - conf.diagonal()).double()
    iou = tp[union > 0] / union[union > 0]
    return float(iou.mean())
