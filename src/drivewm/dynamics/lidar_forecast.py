"""LiDAR forecasting with token world models on Copilot4D's LiDAR tokenizer (arXiv 2311.01017).

Roll the tokens out as for occupancy (`forecast.forecast_tokens`), decode each future frame's tokens
to the tokenizer's neural field and render it along the rays of the true future sweep, as Copilot4D
evaluates (and as `LidarTokenizer.reconstruct` does for one frame): the predicted cloud is
sensor origin + rendered depth x ray direction. A forecast is therefore a field, `{"render": fn}`, that
the evaluation (`drivewm.evaluation`) renders along the true rays and scores with
`PointCloudForecastMetric` (4D-Occ protocol, arXiv 2302.13130); `returns_mask` is the part of a sweep a
token model can render (inside the tokenizer's grid, beyond its near plane), against which every
forecaster of that table is scored.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from drivewm.dynamics.base import TokenWorldModel
from drivewm.dynamics.forecast import forecast_tokens
from drivewm.tokenizers.lidar import LidarTokenizer


def returns_mask(tokenizer: LidarTokenizer, points: torch.Tensor, count: torch.Tensor,
                 origin: torch.Tensor | None = None, inside: bool = True) -> torch.Tensor:
    """[N, P] real returns inside the grid (anywhere when not `inside`) and beyond the near plane (from the sensor
    origins [N, 3], default the tokenizer's mount): the rays a LiDAR token model renders."""
    valid = tokenizer.valid_points(points, count, inside)  # real rows (inside the grid); checks shapes / finiteness
    o = tokenizer.sensor_origin(points.shape[0], points.device, origin)[:, None]  # [N, 1, 3]
    depth = (points[..., :3].float() - o).norm(dim=-1)
    return valid & (depth > tokenizer.cfg.near)


@torch.no_grad()
def render_sweeps(tokenizer: LidarTokenizer, codes: torch.Tensor, points: torch.Tensor,
                  count: torch.Tensor, origin: torch.Tensor | None = None, inside: bool = True) -> dict[str, torch.Tensor]:
    """Render tokens codes [N, h, w] along the rays of sweeps points [N, P, C] (count [N] real rows) from their
    sensor origins [N, 3] (default the tokenizer's mount): the returns inside the grid, or every real return
    (not `inside`; the 4D-Occ protocol scores full clouds).

    Returns ``points`` [N, R, 3] (predicted returns), ``points_gt`` [N, R, 3] (the true returns, same
    order), ``depth`` / ``depth_gt`` [N, R] and ``mask`` [N, R] (False rows are padding).
    """
    dirs, depth_gt, mask = tokenizer.rays(points.float(), tokenizer.valid_points(points, count, inside), None, origin)
    depth, _, _ = tokenizer.render(tokenizer.decode(codes), dirs, origin=origin)  # [N, R]
    o = tokenizer.sensor_origin(points.shape[0], points.device, origin)[:, None]  # [N, 1, 3]
    return {"points": o + depth[..., None] * dirs, "points_gt": o + depth_gt[..., None] * dirs,
            "depth": depth, "depth_gt": depth_gt, "mask": mask}


def _render_frames(model: TokenWorldModel, tokens: torch.Tensor, lidar: torch.Tensor, count: torch.Tensor,
                   origin: torch.Tensor | None = None, inside: bool = True) -> list[list[dict[str, torch.Tensor]]]:
    """tokens [B, H, h, w] rendered along sweeps lidar [B, H, P, C] from their sensor origins [B, H, 3] (default
    the mount), the returns inside the grid or all (`render_sweeps`) -> per (sample, frame) the real rays'
    ``points`` / ``points_gt`` [R, 3] and ``depth`` [R]."""
    if model.modality != "lidar":
        raise ValueError(f"model.tokenizer_run {model.cfg.tokenizer_run}: not a LiDAR tokenizer (modality {model.modality!r})")
    per_frame = []
    for t in range(tokens.shape[1]):  # one frame at a time bounds the rendering memory
        out = render_sweeps(model.tokenizer, tokens[:, t], lidar[:, t], count[:, t],
                            origin[:, t] if origin is not None else None, inside)
        per_frame.append([{k: out[k][b][out["mask"][b]] for k in ("points", "points_gt", "depth")}
                          for b in range(tokens.shape[0])])
    return [[per_frame[t][b] for t in range(tokens.shape[1])] for b in range(tokens.shape[0])]


@torch.no_grad()
def forecast_lidar(model: TokenWorldModel, context: dict[str, torch.Tensor], horizon: int,
                   **rollout_kw) -> dict[str, Callable]:
    """Forecast the `horizon` sweeps after the context's last one as the tokenizer's field: {"render": fn} with
    fn(points [B, H, P, C], count [B, H]) rendering it along the rays of those (true future) sweeps, [B][H] of
    ``points`` (predicted) / ``points_gt`` [R, 3] and ``depth`` [R]."""
    tokens = forecast_tokens(model, context, model.context_frames(context), horizon, **rollout_kw)  # [B, H, h, w]
    return {"render": partial(_render_frames, model, tokens)}


@torch.no_grad()
def reconstruct_lidar(model: TokenWorldModel, lidar: torch.Tensor, count: torch.Tensor) -> dict[str, Callable]:
    """The tokenizer's own encoding of sweeps lidar [B, T, P, C] (count [B, T]) as {"render": fn}: rendered along
    those sweeps' rays, the upper bound of any token model."""
    return {"render": partial(_render_frames, model, model.encode(lidar, count))}
