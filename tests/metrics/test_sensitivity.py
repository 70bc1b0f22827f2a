"""The temporal vs per-frame corruption check: corruptions as defined, noise at the requested PSNR, and known
ratios for extractors that see only frames or only motion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drivewm.metrics.sensitivity import (
    corruption_sensitivity,
    match_psnr,
    noise_corruption,
    set_psnr,
    temporal_corruption,
)
from drivewm.metrics.video import FrechetProtocol


def clips(n: int = 24, t: int = 6, seed: int = 0) -> torch.Tensor:
    """Float clips [n, t, 3, 8, 12] in [0, 1]: a smooth image drifting by a per-clip velocity."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(12.0), indexing="ij")
    phase, speed = torch.rand(n, 1, 1, 1, generator=g) * 6, 0.3 + torch.rand(n, 1, 1, 1, generator=g)
    frame = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1)
    base = 0.5 + 0.4 * torch.sin(0.5 * xs + 0.3 * ys + phase + speed * frame)  # [n, t, 8, 12]
    return torch.stack([base, base.flip(-1), 1 - base], 2)


def test_temporal_corruptions_move_frames_and_never_leave_a_clip_unchanged():
    x = clips()
    shuffled = temporal_corruption(x, "shuffled", seed=3)
    for a, b in zip(x, shuffled):
        order = [next(j for j in range(len(a)) if torch.equal(a[j], f)) for f in b]
        assert sorted(order) == list(range(len(a))) and order != list(range(len(a)))
    assert torch.equal(temporal_corruption(x, "shuffled", seed=3), shuffled)  # seeded
    frozen = temporal_corruption(x, "frozen")
    assert torch.equal(frozen, x[:, :1].expand_as(x))


@pytest.mark.parametrize("target", [9.0, 14.5, 25.0])
def test_matched_noise_has_the_requested_psnr(target):
    x = clips()
    noisy, sigma = match_psnr(x, target, seed=1)
    mse = float((noisy.double() - x.double()).square().mean())
    assert abs(10 * torch.log10(torch.tensor(1 / mse)).item() - target) < 0.1
    assert abs(set_psnr(x, noisy) - target) <= 0.01
    assert torch.equal(noisy, noise_corruption(x, sigma, seed=1))  # one seeded draw, scaled
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_frame_extractor_ignores_time_and_a_motion_extractor_sees_it():
    x = clips()
    protocol = FrechetProtocol("fd", "probe", size=(8, 12), frames=6, samples=24)

    def frames_only(v: torch.Tensor) -> torch.Tensor:  # the clip's frames as a set: mean colour and its spread
        return torch.cat([v.mean((1, 3, 4)), v.std((1, 3, 4))], 1)

    def motion(v: torch.Tensor) -> torch.Tensor:  # mean absolute change of 4 x 4 block means between consecutive frames
        blocks = F.avg_pool2d(v.flatten(0, 1), 4).view(v.shape[0], v.shape[1], -1)  # block means average noise out
        return (blocks[:, 1:] - blocks[:, :-1]).abs().mean(1)

    rows = corruption_sensitivity(x, protocol, frames_only, temporal=("shuffled",), seed=2)
    assert rows[0]["fd_temporal"] == pytest.approx(0.0, abs=1e-12) and rows[0]["ratio"] < 1e-9
    assert abs(rows[0]["psnr_per_frame"] - rows[0]["psnr_temporal"]) <= 0.01
    for row in corruption_sensitivity(x, protocol, motion, seed=2):
        assert row["ratio"] > 1.5, row  # a frozen or shuffled clip changes its motion more than noise of equal PSNR does
