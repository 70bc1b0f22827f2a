"""A direct voxel forecaster: no tokens, a BEV U-Net from the last observed frames to each future frame.

The learned reference the token world models are measured against. It forecasts frame c + k from the
last `observed` frames, each moved into frame c + k by the known ego motion (`warp_occupancy`, the
ego-warped copy's warp, with the unseen area filled from the grid's edge), a mask of the columns the
last frame saw and the horizon k. Height is folded into channels, as 4D-Occ's BEV U-Net folds it
(Khurana et al., arXiv 2302.13130), and every voxel gets a class by cross-entropy. Unlike a token
world model it never passes the scene through a codebook, so what it keeps of the copy it keeps
exactly; what it learns is where the scene changes and how to fill the area entering the view.

Training (`loss`) draws, per window, a current frame c and a horizon k within the window; a forecast
(`forecast(context, horizon)`) runs each horizon of one window from the same current frame, so nothing it predicts is fed
back in. The ego motion is the recorded one, as for the world models' `action_motion` condition and
the ego-warped copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.geometry import WARP_OUTSIDE, se2_compose, se2_inverse, warp_occupancy, warp_seen
from drivewm.data.spec import resolve_grid
from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import ResBlock


@dataclass(kw_only=True)
class VoxelUNetConfig:
    name: str = "voxel_unet"
    grid: Any = "tiny"
    """The data's occupancy grid: a preset name, a grid written out ({shape, voxel_size, lower, classes,
    free_id}) or from_store (the episode store's); drivewm.data.spec.resolve_grid."""
    width: int = 48
    """Channels of the first level; level i has width * 2**i."""
    levels: int = 3
    """U-Net levels (levels - 1 halvings of the BEV plane)."""
    observed: int = 2
    """Observed frames it reads, the last one and those just before it."""
    max_horizon: int = 6
    """Farthest frame it forecasts (frames after the last observed one)."""
    outside: str = "border"
    """What the warped frames show where they never saw: 'border' (the nearest edge column) or 'free'."""


class VoxelUNetForecaster(nn.Module):
    """A `drivewm.forecaster.Forecaster` of occupancy; `loss(batch)` for the training engine."""

    modality = "occ"
    sees_future = False

    def __init__(self, cfg: VoxelUNetConfig) -> None:
        super().__init__()
        self.name = cfg.name
        if cfg.outside not in WARP_OUTSIDE:
            raise ValueError(f"model.outside must be 'free' or 'border', got {cfg.outside!r}")
        if cfg.observed < 1 or cfg.max_horizon < 1 or cfg.levels < 1 or cfg.width < 1:
            raise ValueError(f"model.observed, max_horizon, levels and width must be >= 1, got {cfg}")
        self.cfg = cfg
        self.grid = resolve_grid(cfg.grid)
        x, y, self.height = self.grid.shape
        if x % 2 ** (cfg.levels - 1) or y % 2 ** (cfg.levels - 1):
            raise ValueError(f"model.levels={cfg.levels}: grid {x}x{y} must divide by {2 ** (cfg.levels - 1)}")
        self.num_classes = self.grid.num_classes
        per_frame = self.num_classes * self.height
        widths = [cfg.width * 2**i for i in range(cfg.levels)]
        self.stem = nn.Conv2d(cfg.observed * per_frame + 1 + cfg.max_horizon, widths[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(widths[max(i - 1, 0)], w) for i, w in enumerate(widths))
        self.up = nn.ModuleList(ResBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.levels - 1)))
        self.head = nn.Conv2d(widths[0], per_frame, 1)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [B, channels, X, Y] -> class logits [B, C, X, Y, Z]."""
        h, skips = self.stem(inputs), []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = block(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], 1))
        out = self.head(h)  # [B, C*Z, X, Y]
        return out.unflatten(1, (self.num_classes, self.height)).permute(0, 1, 3, 4, 2)

    def inputs(self, occ: torch.Tensor, pose: torch.Tensor, current: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
        """occ [B, T, X, Y, Z] class ids and pose [B, T, 3] (any common frame) of a window; current and
        horizon [B] -> the U-Net's input [B, channels, X, Y] for frame current + horizon of each window."""
        rows = torch.arange(occ.shape[0], device=occ.device)
        target = pose[rows, current + horizon]  # [B, 3]
        frames = []
        for back in range(self.cfg.observed):  # the last observed frame first
            src = (current - back).clamp(min=0)
            rel = se2_compose(se2_inverse(pose[rows, src].double()), target.double())  # target in frame src
            warped = warp_occupancy(occ[rows, src].long(), rel[:, None], self.grid, self.cfg.outside)[:, 0]
            frames.append(F.one_hot(warped, self.num_classes).permute(0, 3, 4, 1, 2).flatten(1, 2))
            if back == 0:
                seen = warp_seen(rel[:, None], self.grid)[:, 0, None]  # [B, 1, X, Y]
        steps = F.one_hot(horizon - 1, self.cfg.max_horizon)[:, :, None, None].expand(-1, -1, *occ.shape[2:4])
        return torch.cat([*frames, seen, steps], 1).float()

    def _window(self, batch: dict[str, torch.Tensor], horizon: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """occ [B, T, X, Y, Z] and poses [B, T + horizon, 3] of a window (training: horizon 0; a forecast's
        context: the poses of the future frames too)."""
        if "occ" not in batch:
            raise KeyError(f"voxel_unet reads batch['occ']; the batch has keys {sorted(batch)}; add 'occ' to data.keys")
        key = "rel_pose" if "rel_pose" in batch else "ego_pose"
        if key not in batch:
            raise KeyError(f"voxel_unet needs the ego poses: batch has keys {sorted(batch)}; add 'ego_pose' to data.keys")
        occ, pose = batch["occ"], batch[key]
        if occ.dim() != 5 or tuple(occ.shape[2:]) != tuple(self.grid.shape):
            grid = repr(self.cfg.grid) if isinstance(self.cfg.grid, str) else self.grid.describe()
            raise ValueError(f"occ: expected [B, T, {', '.join(map(str, self.grid.shape))}] on grid {grid}, "
                             f"got {tuple(occ.shape)}")
        frames = occ.shape[1] + horizon
        if pose.dim() != 3 or pose.shape[0] != occ.shape[0] or pose.shape[1] < frames or pose.shape[-1] != 3:
            raise ValueError(f"{key}: expected [B={occ.shape[0]}, T>={frames}, 3] ({occ.shape[1]} frames + horizon "
                             f"{horizon}), got {tuple(pose.shape)}")
        return occ, pose

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        occ, pose = self._window(batch)
        b, t = occ.shape[:2]
        first = self.cfg.observed - 1
        if t < first + 2:
            raise ValueError(f"occ: model.observed={self.cfg.observed} needs training windows of >= {first + 2} "
                             f"frames, got {t}")
        # Any frame with its observed frames before it and a later one after it may be the current frame.
        current = torch.randint(first, t - 1, (b,), device=occ.device)
        reach = (t - 1 - current).clamp(max=self.cfg.max_horizon)
        horizon = 1 + (torch.rand(b, device=occ.device) * reach).long()
        target = occ[torch.arange(b, device=occ.device), current + horizon].long()
        loss = F.cross_entropy(self.logits(self.inputs(occ, pose, current, horizon)), target)
        return {"loss": loss}

    @torch.no_grad()
    def forecast(self, context: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Class ids [B, horizon, X, Y, Z] of the frames after the context's last one (`drivewm.forecaster`:
        past occupancy, poses of the past and future frames). With fewer than `observed` past frames, the
        first one stands in for those before it."""
        if not 1 <= horizon <= self.cfg.max_horizon:
            raise ValueError(f"horizon must be in 1..{self.cfg.max_horizon} (model.max_horizon), got {horizon}")
        occ, pose = self._window(context, horizon)  # [B, past, X, Y, Z], [B, past + H, 3]
        past = occ.shape[1]
        b = occ.shape[0]
        current = torch.full((b,), past - 1, device=occ.device)
        out = [self.logits(self.inputs(occ, pose, current, torch.full_like(current, k))).argmax(1)
               for k in range(1, horizon + 1)]
        return torch.stack(out, 1)


@register_model("voxel_unet", VoxelUNetConfig, kind="world")
def build_voxel_unet(cfg: VoxelUNetConfig) -> VoxelUNetForecaster:
    return VoxelUNetForecaster(cfg)
