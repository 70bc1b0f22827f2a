"""Tiny token world models shared by the dynamics tests (random token ids, no tokenizer needed)."""

from __future__ import annotations

import pytest
import torch

from drivewm.dynamics import (
    GPTWorldConfig,
    GPTWorldModel,
    MaskGITWorldConfig,
    MaskGITWorldModel,
    SpatioTemporalWorldConfig,
    SpatioTemporalWorldModel,
)

VOCAB, GRID = 16, (4, 4)
# Tiny models: one thread avoids oversubscription on a shared 2-core machine.
torch.set_num_threads(1)


def tiny_model(kind: str, backbone: str = "attention", **over):
    common = dict(vocab_size=VOCAB, token_shape=list(GRID), dim=32, depth=1, heads=2, max_frames=6, backbone=backbone)
    common.update(over)
    torch.manual_seed(0)
    if kind == "gpt":
        return GPTWorldModel(GPTWorldConfig(**common))
    if kind == "occworld":
        return SpatioTemporalWorldModel(SpatioTemporalWorldConfig(dim_mult=[1, 2], **common))
    if kind == "maskgit":
        return MaskGITWorldModel(MaskGITWorldConfig(dim_mult=[1, 2], **common))
    raise ValueError(kind)


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (2, 5, *GRID), generator=g)


@pytest.fixture
def cond():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 5, 5, generator=g)


@pytest.fixture
def make_model():
    """tiny_model(kind, backbone='attention', **config overrides) as a fixture."""
    return tiny_model
