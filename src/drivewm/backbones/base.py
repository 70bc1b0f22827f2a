"""The one interface of a temporal sequence mixer: a parallel (training) form and a recurrent step form."""

from __future__ import annotations

import abc
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones.config import BackboneConfig


class SequenceBackbone(nn.Module, abc.ABC):
    """Causal mixer over [B, L, D]; every world model swaps 'attention' for 'ssm' through BackboneConfig.kind.

    Contract: feeding a sequence through `step` in pieces of n tokens, starting from `init_state`,
    gives the same outputs as `forward(x, block_size=n)` on the whole sequence (n = 1: plain causal);
    `prefill` gives forward's outputs and the state `step` token by token would reach.
    States are values: `step` returns a new state and never mutates the one passed in, so a planner can
    branch many futures from one context state.
    """

    cfg: BackboneConfig

    @abc.abstractmethod
    def forward(self, x: Tensor, *, positions: Tensor | None = None, block_size: int = 1) -> Tensor:
        """x [B, L, D] -> [B, L, D]; token i sees token j iff j // block_size <= i // block_size."""

    @abc.abstractmethod
    def init_state(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Any:
        """The state before any token (empty KV cache / zero conv and SSM states)."""

    @abc.abstractmethod
    def step(self, x: Tensor, state: Any, *, positions: Tensor | None = None) -> tuple[Tensor, Any]:
        """Append n new tokens x [B, n, D] (seeing each other as one block) -> (out [B, n, D], new state)."""

    @abc.abstractmethod
    def prefill(self, x: Tensor, *, positions: Tensor | None = None) -> tuple[Tensor, Any]:
        """A causal prompt x [B, L, D] in one parallel pass -> (out [B, L, D] == forward(x), the state after
        it): token i sees tokens <= i, unlike `step`, whose n tokens see each other as one block."""

    def _check_input(self, x: Tensor, block_size: int = 1) -> None:
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"backbone input must be [B, L, {self.cfg.dim}], got shape {tuple(x.shape)}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
