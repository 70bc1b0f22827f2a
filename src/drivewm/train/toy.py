"""The engine's debug flavour: a tiny forecaster on synthetic sequences, trainable in seconds.

It exercises every part of the engine (dropout draws from the RNG so resume must restore it) with
no episode store, so engine tests, `bench_train` and a first `drivewm train toy.yaml` run
anywhere. Its data is noisy sinusoids: predict the next `dim` values from the past `past` ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from drivewm.registry import register_model


@dataclass(kw_only=True)
class ToyConfig:
    name: str = "toy_forecaster"
    dim: int = 8
    """Channels of each synthetic time step."""
    past: int = 4
    """Time steps of context."""
    hidden: int = 64
    """Width of the MLP."""
    depth: int = 2
    """Hidden layers of the MLP."""
    dropout: float = 0.1
    """Dropout probability (makes the RNG part of the training state)."""
    samples: int = 512
    """Size of the synthetic training set (the validation set is a quarter of it)."""


class ToySequences(Dataset):
    def __init__(self, cfg: ToyConfig, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        freq = torch.rand(n, cfg.dim, generator=g) * 0.5 + 0.1
        phase = torch.rand(n, cfg.dim, generator=g) * 6.283
        t = torch.arange(cfg.past + 1).float()
        x = torch.sin(freq[:, None, :] * t[None, :, None] + phase[:, None, :])  # [n, past+1, dim]
        self.x = x + 0.05 * torch.randn(x.shape, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"seq": self.x[i]}


class ToyForecaster(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.dim * cfg.past
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.dim))
        self.net = nn.Sequential(*layers)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seq = batch["seq"]  # [B, past+1, dim]
        pred = self.net(seq[:, :-1].flatten(1))  # [B, dim]
        mse = F.mse_loss(pred, seq[:, -1])
        return {"loss": mse, "mse": mse.detach()}


@register_model("toy_forecaster", ToyConfig, kind="toy")
def build_toy(cfg: ToyConfig) -> ToyForecaster:
    return ToyForecaster(cfg)


def toy_datasets(cfg: ToyConfig, seed: int) -> tuple[ToySequences, ToySequences]:
    return ToySequences(cfg, cfg.samples, seed), ToySequences(cfg, max(1, cfg.samples // 4), seed + 1)
