"""The one forecasting interface: baselines, token world models and the direct voxel model all implement it.

A forecaster sees the *context* of a window batch (`split_window(batch, past)[0]`): the past frames of
every key, plus the ego's own plan for every frame (poses, applied actions and the driving command,
`EGO_KEYS`) and the window's static keys whole (the camera calibration, `STATIC_KEYS`), which drivewm's action-conditioned world models read; OccWorld as published
(`occworld_published`) reads only the observed poses and the command. It returns the `horizon` frames after the last observed one in
its modality's window layout:

* ``"occ"``: class ids [B, H, X, Y, Z];
* ``"lidar"``: ``{"lidar": [B, H, N, C], "lidar_count": [B, H]}`` (the padded window layout), or, for a
  model that predicts a field rather than points (Copilot4D's LiDAR tokens), ``{"render": fn}`` where
  ``fn(points [B, H, P, C], count [B, H], origin [B, H, 3] or None, inside: bool)`` renders it along the rays
  of the true future sweeps, cast from their sensor origins (None: the tokenizer's mount), those inside the
  tokenizer's grid or all of them (the protocol under which such models are scored) and returns [B][H] dicts of ``points`` / ``points_gt``
  [R, 3] and ``depth`` [R];
* ``"camera"``: images [B, H, h, w, 3] in the dtype of the context's ``camera`` (uint8 in the data contract).

``sees_future`` is False for every real forecaster. The one exception is an upper-bound row, the
tokenizer's own reconstruction of the truth (`dynamics.TokenizerBound`): the evaluation loop hands it
the future frames (`split_window(...)[1]`) instead of the context. Forecasters that sample draw from
``generator``, so one seeded generator makes a whole table reproducible.
"""

from __future__ import annotations

from typing import Protocol

import torch

MODALITIES = ("occ", "lidar", "camera")
# Keys a forecaster may see for every frame, past and future: the ego's own recorded motion and controls, and the
# driving command (right / left / straight, VAD's navigation input that OccWorld's pose branch reads).
EGO_KEYS = ("rel_pose", "ego_pose", "action", "command")
# Keys a window carries once, not per frame (the episode's camera calibration, [B, 3, 3] / [B, 4, 4]): they have no
# frame axis, so `split_window` hands them whole to both the context and the future.
STATIC_KEYS = ("camera_intrinsics", "camera_extrinsics")


class Forecaster(Protocol):
    name: str
    """Row name in the forecasting tables."""
    modality: str
    """'occ', 'lidar' or 'camera': which window keys it reads and which table scores it."""
    sees_future: bool
    """True only for an upper bound scored on its own encoding of the truth (given the future frames)."""

    def forecast(self, context: dict[str, torch.Tensor], horizon: int, *,
                 generator: torch.Generator | None = None) -> torch.Tensor | dict: ...


def split_window(batch: dict[str, torch.Tensor], past: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(context, future) of a window batch [B, T, ...]: context = past frames of every key plus the ego keys
    of all frames; future = the frames from `past` on of every key. The static keys (`STATIC_KEYS`, no frame
    axis) go whole into both."""
    if past < 1:
        raise ValueError(f"past must be >= 1, got {past}")
    frames = {key: value.shape[1] for key, value in batch.items() if key not in EGO_KEYS + STATIC_KEYS}
    for key, t in frames.items():
        if t <= past:
            raise ValueError(f"batch[{key!r}] has {t} frames; past = {past} leaves no future to score")
    context, future = {}, {}
    for key, value in batch.items():
        if key in STATIC_KEYS:
            context[key] = future[key] = value
            continue
        context[key] = value if key in EGO_KEYS else value[:, :past]
        future[key] = value[:, past:]
    return context, future
