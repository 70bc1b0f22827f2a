"""DIAMOND's reward / termination model: from (frame, action, next frame) pairs, an encoder of AdaGroupNorm
ResBlocks conditioned on the action, an LSTM over time and a head of 3 reward classes (the sign of the
reward: -1, 0, +1) and 2 end classes.

Ported from eloialonso/diamond, commit 5bcd1599755b4f2fae8e5e079e02f0728e174965, ``src/models/rew_end_model.py``
(``RewEndModel``, ``RewEndEncoder``); the action enters as the csgo branch's multi-hot actions do
(``act @ embedding.weight``, a linear map without bias), here of drivewm's continuous actions.

drivewm's targets are per frame: ``reward[t]`` / ``end[t]`` describe frame t (the simulator's
``collision[t]``: the ego has collided by frame t), so the transition t -> t + 1 is scored against frame
t + 1's values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.dynamics.edm import Downsample, ResBlocks, _conv3x3


@dataclass(kw_only=True)
class RewardEndConfig:
    enabled: bool = False
    """Train the heads (only on batches that hold reward_key and/or end_key) and predict with them."""
    reward_key: str = "reward"
    """Batch key of the per-frame reward [B, T] (its sign is the target class)."""
    end_key: str = "collision"
    """Batch key of the per-frame termination flag [B, T] (the simulator records `collision`)."""
    lstm_dim: int = 512
    cond_channels: int = 128
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    attn_depths: list[bool] = field(default_factory=list)
    """Self-attention per level, empty for none (the last blocks always attend, as the official encoder)."""


class RewardEndModel(nn.Module):
    def __init__(self, cfg: RewardEndConfig, *, img_channels: int, image_hw: tuple[int, int], action_dim: int) -> None:
        super().__init__()
        attn_depths = cfg.attn_depths or [False] * len(cfg.depths)
        if not len(cfg.depths) == len(cfg.channels) == len(attn_depths):
            raise ValueError(f"reward_end.depths, channels, attn_depths need one entry per level, got {cfg}")
        self.cfg = cfg
        channels = cfg.channels
        self.conv_in = _conv3x3(2 * img_channels, channels[0])
        blocks = []
        for i, n in enumerate(cfg.depths):
            c1, c2 = channels[max(0, i - 1)], channels[i]
            blocks.append(ResBlocks([c1] + [c2] * (n - 1), [c2] * n, cfg.cond_channels, bool(attn_depths[i])))
        blocks.append(ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cfg.cond_channels, attn=True))
        self.blocks = nn.ModuleList(blocks)
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]] + [nn.Identity()])
        self.act_emb = nn.Linear(action_dim, cfg.cond_channels, bias=False)
        h, w = image_hw
        for _ in channels[:-1]:  # each stride-2 conv (padding 1) halves rounding up
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.lstm = nn.LSTM(channels[-1] * h * w, cfg.lstm_dim, batch_first=True)
        self.head = nn.Sequential(nn.Linear(cfg.lstm_dim, cfg.lstm_dim), nn.SiLU(),
                                  nn.Linear(cfg.lstm_dim, 3 + 2, bias=False))

    def forward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """obs, next_obs [B, T, C, H, W], act [B, T, A] -> reward logits [B, T, 3], end logits [B, T, 2] and
        the LSTM state (to continue a rollout)."""
        b, t = obs.shape[:2]
        x = self.conv_in(torch.cat((obs, next_obs), dim=2).flatten(0, 1))  # [B*T, C0, H, W]
        cond = self.act_emb(act.flatten(0, 1).float())
        for block, down in zip(self.blocks, self.downsamples):
            x, _ = block(down(x), cond)
        x, state = self.lstm(x.reshape(b, t, -1), state)
        logits = self.head(x)
        return logits[..., :3], logits[..., 3:], state

    def loss(self, frames: torch.Tensor, act: torch.Tensor, reward: torch.Tensor | None,
             end: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Cross-entropies over a window: frames [B, T, C, H, W], act [B, T, A], reward / end [B, T] (per frame,
        module docstring; None: not in the batch)."""
        logits_rew, logits_end, _ = self(frames[:, :-1], act[:, :-1], frames[:, 1:])
        out = {}
        if reward is not None:
            target = reward[:, 1:].sign().long().add(1)  # {-1, 0, 1} -> {0, 1, 2}
            out["loss_reward"] = F.cross_entropy(logits_rew.flatten(0, 1), target.flatten())
        if end is not None:
            out["loss_end"] = F.cross_entropy(logits_end.flatten(0, 1), end[:, 1:].long().flatten())
        return out
