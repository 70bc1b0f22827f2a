"""Per-frame ego conditioning vectors for the token world models, built from a window batch.

The vector of frame t describes the transition t -> t+1. `condition="action"` uses the applied action
(acceleration m/s^2, steering rad); `"action_motion"` appends the ego motion to the next frame
(dx, dy, dyaw of frame t+1 in frame t's ego frame, from `ego_pose`), the same known ego motion the
ego-warped copy baseline uses, so model and baseline see the same information. OccWorld (arXiv
2311.16038) feeds the per-step ego displacement the same way; DrivingGPT (arXiv 2412.18607) its
relative (x, y, theta). Each entry is divided by a fixed scale so that typical values are O(1).
`condition="none"` gives zero-width vectors: the scene stream of OccWorld as published (wzzheng/OccWorld,
`model/transformer/PlanUtransformer.py`), whose scene tokens attend only to scene tokens and never read
the ego motion of the frames it forecasts.
"""

from __future__ import annotations

import torch

from drivewm.geometry import world_to_ego

CONDITIONS = {"none": 0, "action": 2, "action_motion": 5}
# Typical magnitudes: accel 3 m/s^2, steer 0.5 rad, 5 m forward and 1 m sideways per 0.5 s step, 0.2 rad yaw.
_SCALE = (3.0, 0.5, 5.0, 1.0, 0.2)


def condition_dim(condition: str) -> int:
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} unknown; valid: {', '.join(CONDITIONS)}")
    return CONDITIONS[condition]


def relative_motion(ego_pose: torch.Tensor) -> torch.Tensor:
    """ego_pose [B, T, 3] (x, y, yaw world) -> [B, T, 3] pose of frame t+1 in frame t (last frame: 0)."""
    xy = world_to_ego(ego_pose[:, 1:, :2], ego_pose[:, :-1])  # [B, T-1, 2]
    d = ego_pose[:, 1:, 2] - ego_pose[:, :-1, 2]
    dyaw = torch.atan2(torch.sin(d), torch.cos(d))
    motion = torch.cat([xy, dyaw[..., None]], -1)
    return torch.cat([motion, torch.zeros_like(motion[:, :1])], 1)


def ego_conditions(batch: dict[str, torch.Tensor], condition: str) -> torch.Tensor:
    """Conditioning vectors [B, T, A] (A = condition_dim(condition)) of a window batch."""
    dim = condition_dim(condition)
    if condition == "none":  # one empty vector per frame of the longest per-frame key (the ego keys span the window)
        frames = [v for v in batch.values() if v.dim() >= 2]
        if not frames:
            raise KeyError("batch has no per-frame key to size condition='none' vectors by")
        longest = max(frames, key=lambda v: v.shape[1])
        return torch.zeros(*longest.shape[:2], 0, device=longest.device)
    for key in ("action",) + (("ego_pose",) if condition == "action_motion" else ()):
        if key not in batch:
            raise KeyError(f"batch has no {key!r} (needed by condition={condition!r}); add it to data.keys")
    parts = [batch["action"].float()]
    if condition == "action_motion":
        parts.append(relative_motion(batch["ego_pose"].float()))
    cond = torch.cat(parts, -1)
    scale = torch.tensor(_SCALE[:dim], dtype=cond.dtype, device=cond.device)
    return cond / scale


def motion_from_conditions(cond: torch.Tensor) -> torch.Tensor:
    """The known ego motion (dx, dy, dyaw of frame t+1 in frame t) [..., 3] back out of
    'action_motion' conditioning vectors cond [..., 5] (the inverse of the scaling above)."""
    if cond.shape[-1] != CONDITIONS["action_motion"]:
        raise ValueError(f"need condition='action_motion' vectors [..., 5] to recover the ego motion, got {tuple(cond.shape)}")
    return cond[..., 2:5] * torch.tensor(_SCALE[2:5], dtype=cond.dtype, device=cond.device)
