"""Tiny token world models shared by the dynamics tests (random token ids, no tokenizer needed)."""

from __future__ import annotations

import pytest
import torch

from drivewm.backbones import BackboneConfig
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
    common = dict(vocab_size=VOCAB, token_shape=list(GRID), dim=32, depth=1, heads=2, max_frames=6,
                  backbone=BackboneConfig(kind=backbone))
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


def _tokenizer_run(path, codebook=64):
    """An untrained micro-grid occupancy tokenizer saved as a run directory (8 x 8 tokens, `codebook` codes)."""
    from drivewm.config import to_yaml
    from drivewm.train.config import RunConfig
    from drivewm.registry import build_model
    from drivewm.tokenizers.occ import OccTokenizerConfig
    from drivewm.train.checkpoint import write_checkpoint

    cfg = RunConfig(model=OccTokenizerConfig(grid="micro", class_dim=4, z_channels=16))
    cfg.model.cnn.channels, cfg.model.cnn.channel_mult, cfg.model.cnn.attention = 8, [1, 2, 2], False
    cfg.model.quantizer.codebook_size = codebook
    torch.manual_seed(0)
    tok = build_model(cfg.model)
    write_checkpoint(path, config_yaml=to_yaml(cfg), model_state=tok.state_dict(), optim_state=None, state={"step": 0})
    return tok


@pytest.fixture
def tokenizer_run():
    """_tokenizer_run(path, codebook=64) as a fixture: writes the run and returns the tokenizer."""
    return _tokenizer_run
