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


def test_pose_tokens_round_trip_within_half_bin():
    tok = PoseTokenizer(PoseTokenizerConfig(alpha=72, beta=64, gamma=32))
    _, steps = _poses(1)
    yaw_t, pos_t = tok.encode(steps)
    assert yaw_t.shape == pos_t.shape == (4, 9)
    assert int(pos_t.max()) < 64 * 32 and int(yaw_t.max()) < 72
    back = tok.decode(yaw_t, pos_t)
    err = (back - steps).abs().reshape(-1, 3).amax(0)
    assert (err <= tok.bin_width / 2 + 1e-5).all()
    # the orientation wraps: yaw 2 pi + 0.1 is yaw 0.1
    a, _ = tok.encode(torch.tensor([0.0, 0.0, 2 * math.pi + 0.1]))
    b, _ = tok.encode(torch.tensor([0.0, 0.0, 0.1]))
    assert int(a) == int(b)
    with pytest.raises(ValueError, match="position tokens"):
        tok.decode(torch.tensor([0]), torch.tensor([64 * 32]))
