"""The ego-warped prior of the token world models (`model.warp_prior`): the ids of each frame's ego-warped
successor (`WarpPrior`), and the camera warp that makes it from camera frames, the homography-warped copy of
`baselines.camera` (road plane, bilinear, the unseen area filled from the border, rounded to uint8).
`TokenWorldModel.make_prior` (dynamics/base.py) decodes, warps and encodes with these."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.baselines.camera import sample_bilinear, source_pixels
from drivewm.errors import DrivewmError
from drivewm.tokenizers.temporal_vq import TemporalVQ


@dataclass(frozen=True)
class WarpPrior:
    """The ego-warped prior of a clip (model.warp_prior): `ids` [B, T, h, w], entry t the ego-warped copy of
    frame t+1 made from frame t (decoded, moved by the known ego motion t -> t+1, encoded again).

    Each model adds its embedding where it predicts frame t+1 (OccWorld: at input frame t; MaskGIT: at frame
    t+1's own input, `by_frame`; GPT: at the input that predicts each token)."""

    ids: Tensor

    def window(self, start: int, stop: int | None = None) -> WarpPrior:
        """The entries of frames start..stop-1."""
        return WarpPrior(self.ids[:, start:stop])

    def rows(self, index: Tensor) -> WarpPrior:
        """The clips `index` of the batch."""
        return WarpPrior(self.ids[index])

    def extend(self, later: WarpPrior) -> WarpPrior:
        """This prior followed by that of the frames after them."""
        return WarpPrior(torch.cat([self.ids, later.ids], 1))

    def by_frame(self, frames: int, none_id: int) -> Tensor:
        """Ids [B, frames, h, w] aligned with the frames they predict: frame j's prior, made from frame j-1;
        `none_id` for frame 0, which has no frame before it."""
        if self.ids.shape[1] < frames - 1:
            raise ValueError(f"model.warp_prior: need the prior of the {frames - 1} frames before the last, "
                             f"got {self.ids.shape[1]}")
        none = torch.full_like(self.ids[:, :1], none_id)
        return torch.cat([none, self.ids[:, : frames - 1]], 1)


def warp_camera_frames(frames: Tensor, motion: Tensor, calibration: dict[str, Tensor]) -> Tensor:
    """uint8 frames [B, T, H, W, 3], motion [B, T, 3] (frame t+1 in frame t's ego frame), calibration
    {'camera_intrinsics': [B, 3, 3], 'camera_extrinsics': [B, 4, 4]} -> each frame warped into the next, uint8."""
    b, t, h, w, c = frames.shape
    pixels = source_pixels(calibration["camera_intrinsics"], calibration["camera_extrinsics"], motion,
                           (h, w))  # [B, T, H, W, 2]: where frame t+1's pixels lie in frame t
    warped = sample_bilinear(frames.flatten(0, 1), pixels.flatten(0, 1)[:, None])  # [B*T, 1, H, W, 3]
    return warped.round().clamp(0, 255).to(torch.uint8).reshape(b, t, h, w, c)


def check_camera_prior(tokenizer: nn.Module | None, tokenizer_name: str, prior_outside: str) -> None:
    """Refuse model.warp_prior where a camera prior does not fit: the temporal VQ codes a frame from the frames
    before it in its clip and decodes clips causally, so a warped frame has no codes of its own; the camera warp
    fills the unseen area from the border only."""
    if isinstance(tokenizer, TemporalVQ):
        raise DrivewmError(f"model.warp_prior: the temporal VQ ({tokenizer_name}) codes "
                           f"each frame from the frames before it in its clip, so a warped frame has no codes of its "
                           f"own; use the per-frame VQ-GAN (camera_vqgan) or model.warp_prior=false")
    if prior_outside != "border":
        raise DrivewmError(f"model.prior_outside={prior_outside!r}: the camera prior fills the area the warped "
                           f"frame did not see from its border, as the homography-warped copy does; set "
                           f"model.prior_outside=border")
