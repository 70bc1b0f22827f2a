"""Multi-scale spatio-temporal transformer over token grids, shared by the OccWorld and MaskGIT models.

OccWorld (Zheng et al. 2023, arXiv 2311.16038) and Copilot4D (Zhang et al. 2023, arXiv 2311.01017) both
use a U-Net of transformer stages over the BEV token grid: inside a stage, spatial attention mixes the
tokens of one frame (bidirectional) and a causal temporal mixer mixes each location across frames;
between stages the grid is downsampled 2x (patch merging) and, on the way up, upsampled and fused with
the skip of the same scale. The ego token (OccWorld's pose token) is one more token of every frame: it
joins the spatial attention and has its own temporal sequence. The temporal mixer is any
`drivewm.backbones` backbone (attention with RoPE over frame indices, or the selective SSM).

Input ids may include `mask_id = vocab_size` (MaskGIT's [MASK], also DrivingWorld-style input masking).
With `warp_prior` a second grid of ids [B, T, h, w] (0..V, V = none) adds its own embedding to each token:
the world models' ego-warped prior (`TokenWorldModel.make_prior`), aligned with the frames by the caller.
Output: logits [B, T, h, w, V] at every frame; what frame t's logits predict is the caller's choice
(OccWorld: frame t+1, MaskGIT: the clean frame t).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from drivewm.backbones import BackboneConfig, TransformerBlock, build_backbone, make_norm
from drivewm.dynamics.base import WorldModelConfig, temporal_backbone


@dataclass
class TemporalCache:
    """Temporal states of every STBlock after a run of context frames, so a new frame costs one frame.

    Temporal mixing is causal, so the context frames' activations never depend on a later frame:
    `record` runs the context once and keeps each temporal mixer's step state (KV cache / SSM state);
    `step` runs only the new frame through the network, each temporal mixer stepping from its state
    (the states stay unchanged, so MaskGIT's decoding steps can all reuse them).
    """

    mode: str = "record"
    states: list = field(default_factory=list)
    index: int = 0


class STBlock(nn.Module):
    """Spatial attention within each frame, then causal temporal mixing per location."""

    def __init__(self, temporal: BackboneConfig) -> None:
        super().__init__()
        self.spatial = TransformerBlock(temporal.dim, temporal.heads, dropout=temporal.dropout)
        self.temporal = build_backbone(temporal)

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        """x [B, T, S, D] (S = grid tokens + 1 ego token) -> [B, T, S, D]."""
        b, t, s, d = x.shape
        x = self.spatial(x.reshape(b * t, s, d)).reshape(b, t, s, d)
        xt = x.permute(0, 2, 1, 3).reshape(b * s, t, d)  # one temporal sequence per location
        # The backbone ends in a norm; adding it back keeps the stage residual.
        if cache is None:
            xt = xt + self.temporal(xt)
        elif cache.mode == "record":
            y, state = self.temporal.prefill(xt)
            cache.states.append(state)
            xt = xt + y
        else:  # step: the new frame(s) after the recorded context
            y, _ = self.temporal.step(xt, cache.states[cache.index])
            cache.index += 1
            xt = xt + y
        return xt.reshape(b, s, t, d).permute(0, 2, 1, 3)


class Stage(nn.Module):
    def __init__(self, grid: tuple[int, int], depth: int, temporal: BackboneConfig) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(grid[0] * grid[1] + 1, temporal.dim) * 0.02)  # grid tokens + ego token
        self.blocks = nn.ModuleList(STBlock(temporal) for _ in range(depth))

    def forward(self, x: Tensor, cache: TemporalCache | None = None) -> Tensor:
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x, cache)
        return x


class SpatioTemporalNet(nn.Module):
    """tokens [B, T, h, w] (ids in 0..V, V = mask) + ego tokens [B, T, D0] -> logits [B, T, h, w, V].

    Built from a world model's config with `dim_mult` (OccWorld's or MaskGIT's): width dim * dim_mult[i] at
    scale i, `depth` blocks per stage, model.backbone as every block's temporal mixer."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        token_shape, vocab_size = (int(cfg.token_shape[0]), int(cfg.token_shape[1])), cfg.vocab_size
        dims = [cfg.dim * m for m in cfg.dim_mult]
        temporal = [temporal_backbone(cfg, dim=d, depth=1, max_len=cfg.max_frames) for d in dims]
        grids = [token_shape]
        for _ in dims[1:]:
            h, w = grids[-1]
            if h < 2 or w < 2:
                raise ValueError(f"token grid {token_shape} too small for {len(dims)} scales (dim_mult)")
            grids.append(((h + 1) // 2, (w + 1) // 2))
        self.grids = grids
        self.tok_emb = nn.Embedding(vocab_size + 1, cfg.dim)  # + [MASK]
        self.prior_emb = nn.Embedding(vocab_size + 1, cfg.dim) if cfg.warp_prior else None  # + none
        self.down_stages = nn.ModuleList(Stage(g, cfg.depth, tb) for g, tb in zip(grids, temporal))
        self.down = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(dims[:-1], dims[1:]))
        self.ego_down = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(dims[:-1], dims[1:]))
        self.ego_up = nn.ModuleList(nn.Linear(b, a) for a, b in zip(dims[:-1], dims[1:]))
        self.fuse = nn.ModuleList(nn.Linear(2 * a, a) for a in dims[:-1])
        self.up_stages = nn.ModuleList(Stage(g, cfg.depth, tb) for g, tb in zip(grids[:-1], temporal[:-1]))
        self.norm = make_norm("rms", cfg.dim)
        self.head = nn.Linear(cfg.dim, vocab_size)

    @staticmethod
    def _resample(x: Tensor, conv: nn.Module, grid: tuple[int, int], out_grid: tuple[int, int]) -> Tensor:
        """Grid tokens [B, T, h*w, D] through a 2x conv (down or up) -> [B, T, h'*w', D']."""
        b, t, _, d = x.shape
        img = x.transpose(2, 3).reshape(b * t, d, *grid)  # [B*T, D, h, w]
        if isinstance(conv, nn.Conv2d):  # pad odd grids up to even before a stride-2 merge
            img = F.pad(img, (0, grid[1] % 2, 0, grid[0] % 2))
        img = conv(img)[..., : out_grid[0], : out_grid[1]]
        return img.flatten(2).transpose(1, 2).reshape(b, t, out_grid[0] * out_grid[1], -1)

    def forward(self, tokens: Tensor, ego: Tensor, cache: TemporalCache | None = None,
                prior: Tensor | None = None) -> Tensor:
        """With `cache` in step mode the tokens are the frame(s) right after the context it recorded."""
        b, t = tokens.shape[:2]
        logits = self.head(self.norm(self.features(tokens, ego, cache, prior)[:, :, :-1]))  # [B, T, N, V]
        return logits.reshape(b, t, *tokens.shape[2:], -1)

    def record(self, tokens: Tensor, ego: Tensor, prior: Tensor | None = None) -> TemporalCache:
        """Run context frames tokens [B, T, h, w], ego [B, T, D0] once and keep their temporal states
        (a TemporalCache in step mode); their logits are never read, so the head does not run."""
        cache = TemporalCache()
        self.features(tokens, ego, cache, prior)
        cache.mode = "step"
        return cache

    def features(self, tokens: Tensor, ego: Tensor, cache: TemporalCache | None = None,
                 prior: Tensor | None = None) -> Tensor:
        """tokens [B, T, h, w], ego [B, T, D0], prior ids [B, T, h, w] (with warp_prior) -> last-stage
        features [B, T, N+1, D0] (ego token last)."""
        if cache is not None:
            cache.index = 0
        x = self.tok_emb(tokens.flatten(2))  # [B, T, N, D0]
        if (prior is None) != (self.prior_emb is None):
            raise ValueError("prior ids are given exactly when the network was built with warp_prior")
        if prior is not None:
            x = x + self.prior_emb(prior.flatten(2))
        x = torch.cat([x, ego[:, :, None]], 2)  # [B, T, N+1, D0]
        skips = []
        for i, stage in enumerate(self.down_stages):
            x = stage(x, cache)
            if i < len(self.down):
                skips.append(x)
                grid_tokens = self._resample(x[:, :, :-1], self.down[i], self.grids[i], self.grids[i + 1])
                x = torch.cat([grid_tokens, self.ego_down[i](x[:, :, -1:])], 2)
        for i in reversed(range(len(self.up))):
            grid_tokens = self._resample(x[:, :, :-1], self.up[i], self.grids[i + 1], self.grids[i])
            x = torch.cat([grid_tokens, self.ego_up[i](x[:, :, -1:])], 2)
            x = self.up_stages[i](self.fuse[i](torch.cat([x, skips[i]], -1)), cache)
        return x
