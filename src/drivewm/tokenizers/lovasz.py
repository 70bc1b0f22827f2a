"""Lovasz-softmax loss (Berman, Rannen Triki, Blaschko, "The Lovasz-Softmax loss: a tractable
surrogate for the optimization of the intersection-over-union measure in neural networks",
CVPR 2018, arXiv 1705.08790).

For each class c, the errors e_i = |1[y_i = c] - p_i(c)| are sorted in decreasing order and
dotted with the gradient of the Lovasz extension of the Jaccard loss at that order; the loss is
the mean over classes present in the labels (the paper's ``classes='present'``).
"""

from __future__ import annotations

import torch


def lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient [P] of the Lovasz extension of the Jaccard loss w.r.t. errors sorted descending.

    With g = number of foreground pixels, J_i = 1 - (g - cumsum(fg)_i) / (g + cumsum(1 - fg)_i)
    is the Jaccard loss of the first i predictions; the gradient is its first difference.
    """
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if fg_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Lovasz-softmax of class probabilities ``probs`` [B, C, ...] against ``labels`` [B, ...] (long).

    Voxels labelled ``ignore_index`` are left out. Returns a scalar (0 when no voxel is left).
    """
    c = probs.shape[1]
    flat_p = probs.movedim(1, -1).reshape(-1, c)  # [P, C]
    flat_y = labels.reshape(-1)  # [P]
    if ignore_index is not None:
        keep = flat_y != ignore_index
        flat_p, flat_y = flat_p[keep], flat_y[keep]
    if flat_y.numel() == 0:
        return probs.sum() * 0.0
    present = torch.unique(flat_y)  # [C'] classes='present'
    fg = (flat_y[None, :] == present[:, None]).to(flat_p.dtype)  # [C', P]
    errors = (fg - flat_p.t()[present]).abs()  # [C', P]
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    fg_sorted = fg.gather(1, perm)
    # all classes at once: lovasz_grad row by row, vectorised
    gts = fg_sorted.sum(1, keepdim=True)
    intersection = gts - fg_sorted.cumsum(1)
    union = gts + (1.0 - fg_sorted).cumsum(1)
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)
    return (errors_sorted * grad).sum(1).mean()
