"""Camera forecasting with the token world models (GAIA-1 / DrivingGPT's GPT, MaskGIT) on camera VQ tokens.

The same rollout as occupancy (`forecast.forecast_tokens`): the context's camera frames are encoded as one
clip by the frozen tokenizer (the VQ-GAN per frame, DrivingWorld's temporal-aware VQ causally in time), the
model rolls the tokens out conditioned on the ego's plan, and the tokens are decoded to uint8 frames. The
temporal VQ's decoder mixes frames in time (causally), so the forecast frames are decoded after the context's
tokens, as one clip, as that decoder was trained; the per-frame VQ-GAN decodes the forecast frames alone
(the same pixels). With `model.warp_prior` the context carries the camera calibration (`forecaster.STATIC_KEYS`),
by which each frame's prior is warped into the next.
"""

from __future__ import annotations

import torch

from drivewm.dynamics.base import TokenWorldModel
from drivewm.dynamics.forecast import forecast_tokens
from drivewm.tokenizers.temporal_vq import TemporalVQ


def _check_camera_model(model: TokenWorldModel) -> None:
    if model.modality != "camera":
        raise ValueError(f"{model.cfg.name}: its tokenizer ({model.tokenizer_name}) reads {model.modality!r} frames, "
                         f"not camera frames")


@torch.no_grad()
def decode_after(model: TokenWorldModel, context: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
    """Future tokens [B, H, h, w] that follow context tokens [B, Tc, h, w] -> uint8 frames [B, H, H_img, W_img, 3]."""
    _check_camera_model(model)
    if isinstance(model.tokenizer, TemporalVQ):
        return model.decode(torch.cat([context.long(), future.long()], 1))[:, context.shape[1]:]
    return model.decode(future)


@torch.no_grad()
def forecast_camera(model: TokenWorldModel, context: dict[str, torch.Tensor], horizon: int,
                    **rollout_kw) -> torch.Tensor:
    """The `horizon` camera frames after the context's last one, uint8 [B, H, H_img, W_img, 3]."""
    _check_camera_model(model)
    past = model.context_frames(context)
    calibration = model.prior_calibration(context, "the context")  # warp_prior: the episode's camera
    if calibration is not None:
        rollout_kw["calibration"] = calibration
    tokens, future = forecast_tokens(model, context, past, horizon, with_context=True, **rollout_kw)
    return decode_after(model, tokens, future)
