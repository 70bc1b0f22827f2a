"""Action (DrivingGPT) and pose (DrivingWorld) tokenizers: round-trips within half a bin, vocab ranges, bad input."""

import math

import pytest
import torch

from drivewm.geometry import integrate_steps, relative_steps
from drivewm.tokenizers.actions import (
    ActionTokenizer,
    ActionTokenizerConfig,
    PoseTokenizer,
    PoseTokenizerConfig,
)


def _poses(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    steps = torch.stack([torch.rand(4, 9, generator=g) * 8, torch.randn(4, 9, generator=g) * 0.5,
                         torch.randn(4, 9, generator=g) * 0.1], -1)
    start = torch.tensor([100.0, -50.0, 2.5]).expand(4, 3)
    return integrate_steps(steps, start), steps


def test_relative_steps_invert_integration():
    poses, steps = _poses()
    assert torch.allclose(relative_steps(poses), steps, atol=1e-4)
    # a known case: facing +y, moving 1 m in world +y is 1 m forward
    p = torch.tensor([[0.0, 0.0, math.pi / 2], [0.0, 1.0, math.pi / 2]])
    assert torch.allclose(relative_steps(p), torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6)


def test_action_tokens_round_trip_within_half_bin_and_own_ranges():
    tok = ActionTokenizer(ActionTokenizerConfig(bins=128), scene_vocab=512)
    poses, steps = _poses()
    t = tok.encode_poses(poses)
    assert t.shape == (4, 9, 3)
    for i in range(3):
        assert (t[..., i] >= 512 + 128 * i).all() and (t[..., i] < 512 + 128 * (i + 1)).all()
    err = tok.roundtrip_error(steps)
    assert (err <= tok.bin_width / 2 + 1e-5).all()
    assert torch.allclose(tok.decode(t), steps, atol=float(tok.bin_width.max()) / 2 + 1e-5)
    # bin centres are fixed points
    centres = tok.decode(t)
    assert torch.equal(tok.encode(centres), t)
    assert tok.vocab_size == 384


def test_action_out_of_range_and_bad_tokens():
    strict = ActionTokenizer(ActionTokenizerConfig(clamp=False), scene_vocab=10)
    with pytest.raises(ValueError, match="x: values outside"):
        strict.encode(torch.tensor([[50.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="finite"):
        strict.encode(torch.tensor([[float("nan"), 0.0, 0.0]]))
    lenient = ActionTokenizer(ActionTokenizerConfig(clamp=True), scene_vocab=10)
    assert int(lenient.encode(torch.tensor([[50.0, 0.0, 0.0]]))[0, 0]) == 10 + 127
    with pytest.raises(ValueError, match="action tokens"):
        lenient.decode(torch.tensor([[10, 10, 10 + 256]]))  # y token in x's range
    with pytest.raises(ValueError, match="range"):
        ActionTokenizer(ActionTokenizerConfig(x_range=[1.0, 1.0]), scene_vocab=0)


def test_pose_tokens_match_drivingworld_and_round_trip_within_half_bin():
    """The official DrivingWorld binning (pose_tokenizer.py: x over [0, 8) in 128 bins, y over 1 m from
    y_min = -0.5 + step / 2, yaw in degrees over 16 from yaw_min = -8 + step / 2 in 512 bins), written out."""
    tok = PoseTokenizer(PoseTokenizerConfig(), scene_vocab=100)
    g = torch.Generator().manual_seed(3)
    steps = torch.stack([torch.rand(200, generator=g, dtype=torch.float64) * 8,
                         torch.rand(200, generator=g, dtype=torch.float64) * 0.98 - 0.48,
                         torch.deg2rad(torch.rand(200, generator=g, dtype=torch.float64) * 15.9 - 7.9)], -1)
    t = tok.encode(steps)
    assert tok.slot_ranges == [(100, 612), (612, 740), (740, 868)] and tok.vocab_size == 768
    y_step, yaw_step = 1 / 128, 16 / 512
    official_yaw = torch.floor((torch.rad2deg(steps[:, 2]) - (-8 + yaw_step / 2)) * 512 / 16).clip(0, 511)
    official_x = torch.floor(steps[:, 0] * 128 / 8).clip(0, 127)
    official_y = torch.floor((steps[:, 1] - (-0.5 + y_step / 2)) * 128 / 1).clip(0, 127)
    assert torch.equal(t[:, 0] - 100, official_yaw.long())
    assert torch.equal(t[:, 1] - 612, official_x.long())
    assert torch.equal(t[:, 2] - 740, official_y.long())
    # the official decode: x = idx * step + step / 2, y = idx * step + y_min + step / 2 (yaw alike, degrees)
    back = tok.decode(t).double()  # decodes in float32
    assert torch.allclose(back[:, 0], official_x * 8 / 128 + 8 / 256, atol=1e-5)
    assert torch.allclose(back[:, 1], official_y * y_step + (-0.5 + y_step / 2) + y_step / 2, atol=1e-5)
    assert torch.allclose(torch.rad2deg(back[:, 2]), official_yaw * yaw_step - 8 + yaw_step, atol=1e-4)
    err = (back - steps).abs().amax(0)
    assert (err <= tok.bin_width.double() / 2 + 1e-5).all()
    # values past the ranges clip to the edge bins, as the official `clip`
    edge = tok.encode(torch.tensor([[20.0, -3.0, 1.0]]))
    assert edge.tolist() == [[611, 739, 740]]
    with pytest.raises(ValueError, match="slot 1"):
        tok.decode(torch.tensor([[100, 100, 740]]))  # a yaw id in the x slot
