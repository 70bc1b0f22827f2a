"""Roll any token world model out from a window batch and decode the tokens to occupancy.

The one path from occupancy to occupancy that evaluation, benchmarks and the demo share:
encode the past frames with the model's frozen tokenizer, roll out `horizon` frames conditioned on
the window's actions (and, with condition="action_motion", its known ego motion), decode.
`forecast_tokens` reads the model's modality (occ or lidar frames); LiDAR tokens are rendered to
points by `lidar_forecast.py`.
"""

from __future__ import annotations

import torch

from drivewm.dynamics.base import TokenWorldModel
from drivewm.conditions import ego_conditions


@torch.no_grad()
def forecast_tokens(
    model: TokenWorldModel, batch: dict[str, torch.Tensor], past: int, horizon: int, **rollout_kw
) -> torch.Tensor:
    """batch of windows (>= past + horizon - 1 frames of conditions) -> future tokens [B, H, h, w]."""
    if past < 1:
        raise ValueError(f"past must be >= 1, got {past}")
    context = model.encode_batch(batch, past)  # [B, past, h, w]
    if context.shape[1] < past:
        raise ValueError(f"past must be in 1..{context.shape[1]} (window frames), got {past}")
    cond = ego_conditions(batch, model.cfg.condition)  # [B, T, A]
    return model.rollout(context, cond, horizon, **rollout_kw)


@torch.no_grad()
def forecast_occupancy(
    model: TokenWorldModel, batch: dict[str, torch.Tensor], past: int, horizon: int, **rollout_kw
) -> torch.Tensor:
    """Forecast occupancy class ids [B, H, X, Y, Z] for the `horizon` frames after frame past - 1."""
    return model.decode(forecast_tokens(model, batch, past, horizon, **rollout_kw))


@torch.no_grad()
def reconstruct_occupancy(model: TokenWorldModel, occ: torch.Tensor) -> torch.Tensor:
    """The tokenizer's own reconstruction of occ [B, T, X, Y, Z]: the upper bound of any token model."""
    return model.decode(model.encode(occ))
