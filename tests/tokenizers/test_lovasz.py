"""Lovasz-softmax against its definition: the Lovasz extension equals the Jaccard loss on crisp predictions."""

import torch

from drivewm.tokenizers.lovasz import lovasz_grad, lovasz_softmax


def _reference(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class loop of Berman et al.'s reference implementation."""
    c = probs.shape[1]
    p = probs.movedim(1, -1).reshape(-1, c)
    y = labels.reshape(-1)
    losses = []
    for cls in torch.unique(y).tolist():
        fg = (y == cls).float()
        err = (fg - p[:, cls]).abs()
        err_sorted, perm = torch.sort(err, descending=True)
        losses.append(torch.dot(err_sorted, lovasz_grad(fg[perm])))
    return torch.stack(losses).mean()


def test_matches_per_class_reference():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 6, 7, generator=g), 1)
    labels = torch.randint(0, 4, (2, 6, 7), generator=g)  # class 4 absent
    assert torch.allclose(lovasz_softmax(probs, labels), _reference(probs, labels), atol=1e-6)


def test_crisp_predictions_give_one_minus_jaccard():
    labels = torch.tensor([[0, 0, 1, 1, 1, 2]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 2]])
    probs = torch.nn.functional.one_hot(pred, 3).permute(0, 2, 1).float()
    ious = []
    for c in range(3):
        inter = ((pred == c) & (labels == c)).sum()
        union = ((pred == c) | (labels == c)).sum()
        ious.append(float(inter) / float(union))
    expected = 1 - sum(ious) / 3
    assert abs(float(lovasz_softmax(probs, labels)) - expected) < 1e-6
    assert float(lovasz_softmax(torch.nn.functional.one_hot(labels, 3).permute(0, 2, 1).float(), labels)) == 0.0


def test_ignore_index_and_gradient():
    probs = torch.softmax(torch.randn(1, 3, 10), 1).requires_grad_()
    labels = torch.tensor([[0, 1, 2, 255, 255, 0, 1, 2, 0, 1]])
    loss = lovasz_softmax(probs, labels, ignore_index=255)
    loss.backward()
    assert probs.grad[0, :, 3].abs().sum() == 0 and probs.grad.abs().sum() > 0
