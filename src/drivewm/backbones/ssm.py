"""Mamba-style selective state-space backbone (Gu & Dao, arXiv 2312.00752).

Block: in_proj -> (x, z); short causal depthwise conv1d on x; SiLU; input-dependent delta (softplus of a
rank-dt_rank projection), B and C; selective scan with diagonal A = -exp(A_log) (S4D-real init) and a
D skip; y * SiLU(z); out_proj. Layers are pre-norm residual, as in Mamba. The step form carries the
last d_conv - 1 conv inputs and the [E, N] scan state per layer, so a step costs O(1) in the past length.
The scan is `scan.selective_scan`: the Mamba authors' fused kernel for CUDA inputs when mamba-ssm is
installed (`pip install drivewm[mamba]`; its import guard sits in scan.py), drivewm's own scan otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones.attention import make_norm
from drivewm.backbones.base import SequenceBackbone
from drivewm.backbones.config import BackboneConfig
from drivewm.backbones.scan import selective_scan, selective_scan_step


@dataclass(frozen=True)
class SSMState:
    """Per layer: conv inputs [B, E, d_conv - 1] (most recent last) and scan state [B, E, N] (float32)."""

    conv: tuple[Tensor, ...]
    ssm: tuple[Tensor, ...]
    length: int = 0
    """Tokens seen so far."""


class MambaBlock(nn.Module):
    """Gated selective-SSM mixer [B, L, D] -> [B, L, D], with an explicit (conv, scan) state."""

    def __init__(self, cfg: BackboneConfig, *, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        self.cfg = cfg
        e, n, r = cfg.d_inner, cfg.d_state, cfg.dt_rank_value
        self.in_proj = nn.Linear(cfg.dim, 2 * e, bias=False)
        self.conv = nn.Conv1d(e, e, cfg.d_conv, groups=e, bias=True)  # causal padding done by hand
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.out_proj = nn.Linear(e, cfg.dim, bias=False)
        # S4D-real: A_n = -(n + 1) for every channel
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1))  # [E, N]
        self.D = nn.Parameter(torch.ones(e))
        # Mamba's delta init: softplus(bias) log-uniform in [dt_min, dt_max]
        nn.init.uniform_(self.dt_proj.weight, -(r**-0.5), r**-0.5)
        dt = torch.exp(torch.rand(e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: Tensor, conv_state: Tensor | None = None, ssm_state: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, n, D] after the given states (None = start) -> (y [B, n, D], conv_state, ssm_state)."""
        b, n, _ = x.shape
        cfg = self.cfg
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, n, E] each
        xs = xs.transpose(1, 2)  # [B, E, n]
        if conv_state is None:
            conv_state = xs.new_zeros(b, cfg.d_inner, cfg.d_conv - 1)
        padded = torch.cat([conv_state.to(xs.dtype), xs], dim=-1)  # [B, E, d_conv - 1 + n]
        new_conv_state = padded[..., padded.shape[-1] - (cfg.d_conv - 1):]
        xc = F.silu(F.conv1d(padded, self.conv.weight, self.conv.bias, groups=cfg.d_inner)).transpose(1, 2)  # [B, n, E]
        dt, B, C = self.x_proj(xc).split([cfg.dt_rank_value, cfg.d_state, cfg.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # [B, n, E], > 0
        A = -torch.exp(self.A_log.float())  # [E, N], < 0
        if n == 1 and ssm_state is not None:  # rollout: O(1) recurrent step
            y, h = selective_scan_step(xc[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], self.D, ssm_state)
            y = y[:, None]
        else:
            y, h = selective_scan(xc, delta, A, B, C, self.D, h0=ssm_state, chunk=cfg.chunk)
        y = y * F.silu(z)
        return self.out_proj(y), new_conv_state, h


class SSMBackbone(SequenceBackbone):
    """Pre-norm residual stack of MambaBlocks: x + Mamba(norm(x)), final norm."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norms = nn.ModuleList(make_norm(cfg.norm, cfg.dim) for _ in range(cfg.depth))
        self.mixers = nn.ModuleList(MambaBlock(cfg) for _ in range(cfg.depth))
        self.drop = nn.Dropout(cfg.dropout)
        self.norm = make_norm(cfg.norm, cfg.dim)

    def forward(self, x: Tensor, *, positions: Tensor | None = None, block_size: int = 1) -> Tensor:
        """Strictly causal in sequence order. positions are ignored (the recurrence knows the order);
        any block_size is honoured as "every token sees all earlier tokens", never later ones of its block."""
        self._check_input(x, block_size)
        for norm, mixer in zip(self.norms, self.mixers):
            y, _, _ = mixer(norm(x))
            x = x + self.drop(y)
        return self.norm(x)

    def init_state(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SSMState:
        dtype = dtype or torch.float32
        e = self.cfg.d_inner
        conv = torch.zeros(batch, e, self.cfg.d_conv - 1, device=device, dtype=dtype)
        ssm = torch.zeros(batch, e, self.cfg.d_state, device=device, dtype=torch.promote_types(dtype, torch.float32))
        return SSMState(conv=(conv,) * self.cfg.depth, ssm=(ssm,) * self.cfg.depth)

    def prefill(self, x: Tensor, *, positions: Tensor | None = None) -> tuple[Tensor, SSMState]:
        """The step form from the start: it is causal within a block of tokens, so it is the prompt's pass."""
        return self.step(x, self.init_state(x.shape[0], x.device, x.dtype), positions=positions)

    def step(self, x: Tensor, state: SSMState, *, positions: Tensor | None = None) -> tuple[Tensor, SSMState]:
        self._check_input(x)
        if state.ssm[0].shape[0] != x.shape[0]:
            raise ValueError(f"state holds batch {state.ssm[0].shape[0]}, input has batch {x.shape[0]}")
        convs, ssms = [], []
        for norm, mixer, conv_state, ssm_state in zip(self.norms, self.mixers, state.conv, state.ssm):
            y, conv_state, ssm_state = mixer(norm(x), conv_state, ssm_state)
            x = x + self.drop(y)
            convs.append(conv_state)
            ssms.append(ssm_state)
        return self.norm(x), SSMState(conv=tuple(convs), ssm=tuple(ssms), length=state.length + x.shape[1])
