"""Roll any token world model out from a window batch and decode the tokens to occupancy.

The one path from occupancy to occupancy that `TokenWorldModel.forecast`, benchmarks and planning share:
encode the past frames with the model's frozen tokenizer, roll out `horizon` frames conditioned on
the window's actions (and, with condition="action_motion", its known ego motion), decode.
`forecast_tokens` reads the model's modality (occ, lidar or camera frames); LiDAR tokens are rendered to
points by `lidar_forecast.py`, camera tokens decoded to frames by `camera_forecast.py`. `TokenizerBound` is the upper-bound row of a forecasting table.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from drivewm.dynamics.base import TokenWorldModel
from drivewm.conditions import condition_dim, ego_conditions
from drivewm.errors import DrivewmError


@torch.no_grad()
def forecast_tokens(
    model: TokenWorldModel, batch: dict[str, torch.Tensor], past: int, horizon: int, *, with_context: bool = False,
    **rollout_kw
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """batch of windows (>= past + horizon - 1 frames of conditions) -> future tokens [B, H, h, w] (with
    `with_context`: (context tokens [B, past, h, w], future tokens))."""
    if past < 1:
        raise ValueError(f"past must be >= 1, got {past}")
    width = condition_dim("action")
    if model.cfg.condition != "none" and "action" in batch and batch["action"].shape[-1] != width:
        raise DrivewmError(f"batch['action']: expected {width} values per frame (accel, steer), "
                           f"got shape {tuple(batch['action'].shape)}")
    context = model.encode_batch(batch, past)  # [B, past, h, w]
    if context.shape[1] < past:
        raise ValueError(f"past must be in 1..{context.shape[1]} (window frames), got {past}")
    cond = ego_conditions(batch, model.cfg.condition)  # [B, T, A]
    future = model.rollout(context, cond, horizon, **rollout_kw)
    return (context, future) if with_context else future


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


class TokenizerBound:
    """The tokenizer's own reconstruction of the true future: what any world model on that tokenizer could at
    best forecast. The one forecaster that `sees_future`: the evaluation loop gives it the future frames
    (`split_window(...)[1]`) instead of the context, and it encodes and decodes (LiDAR: re-renders) them."""

    sees_future = True

    def __init__(self, model: nn.Module) -> None:
        """`model`: any world model with a frozen `tokenizer` (token world models; Epona's KL autoencoder)."""
        if getattr(model, "tokenizer", None) is None:
            raise ValueError(f"{model.cfg.name}: a world model without a tokenizer has no tokenizer bound")
        self.model = model
        self.modality = model.modality
        self.name = f"tokenizer_recon ({Path(model.cfg.tokenizer_run).name or model.cfg.tokenizer['name']})"

    @torch.no_grad()
    def forecast(self, future: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor | dict:
        if self.modality == "lidar":
            from drivewm.dynamics.lidar_forecast import reconstruct_lidar

            return reconstruct_lidar(self.model, future["lidar"][:, :horizon], future["lidar_count"][:, :horizon])
        if self.modality == "camera":  # uint8 in and out; a temporal tokenizer takes the future as one clip
            return self.model.tokenizer.reconstruct(future["camera"][:, :horizon])
        return reconstruct_occupancy(self.model, future["occ"][:, :horizon].long())
