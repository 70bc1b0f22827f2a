"""SE(2) pose math of drivewm.geometry: known answers, inverses, and numpy and torch giving the same map."""

import math

import numpy as np
import pytest
import torch

from drivewm.geometry import (
    ego_to_world,
    integrate_steps,
    relative_steps,
    rotate,
    se2_compose,
    se2_inverse,
    to_frame,
    world_to_ego,
    wrap_angle,
)


def _poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * [30.0, 30.0, 2.5]


def test_known_answers():
    pose = np.array([10.0, 5.0, math.pi / 2])  # at (10, 5) facing +y
    # 2 m ahead and 1 m to the left of that pose is (9, 7) in the world.
    np.testing.assert_allclose(ego_to_world(np.array([2.0, 1.0]), pose), [9.0, 7.0], atol=1e-12)
    np.testing.assert_allclose(world_to_ego(np.array([9.0, 7.0]), pose), [2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(rotate(np.array([1.0, 0.0]), math.pi / 2), [0.0, 1.0], atol=1e-12)
    # Facing +y and moving 1 m in world +y is 1 m forward.
    p = torch.tensor([[0.0, 0.0, math.pi / 2], [0.0, 1.0, math.pi / 2]])
    torch.testing.assert_close(relative_steps(p), torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)
    assert wrap_angle(math.pi) == pytest.approx(-math.pi) and wrap_angle(-math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


def test_inverses_and_consistency():
    a, b = _poses(20, 1), _poses(20, 2)
    xy = b[:, :2]
    np.testing.assert_allclose(world_to_ego(ego_to_world(xy, a), a), xy, atol=1e-9)
    np.testing.assert_allclose(se2_compose(a, se2_inverse(a)), np.zeros_like(a), atol=1e-9)
    # b in a's frame, two ways: one change of frame, or the inverse of a composed with b.
    rel = to_frame(b, a)
    alt = se2_compose(se2_inverse(a), b)
    np.testing.assert_allclose(rel[:, :2], alt[:, :2], atol=1e-9)
    np.testing.assert_allclose(rel[:, 2], wrap_angle(alt[:, 2]), atol=1e-12)
    assert np.all((rel[:, 2] >= -math.pi) & (rel[:, 2] < math.pi))
    # rotate then translate is the same map as ego_to_world (rounded in another order).
    np.testing.assert_allclose(rotate(xy, a[:, 2]) + a[:, :2], ego_to_world(xy, a), atol=1e-9)


def test_steps_invert_integration():
    g = torch.Generator().manual_seed(0)
    steps = torch.stack([torch.rand(4, 9, generator=g) * 8, torch.randn(4, 9, generator=g) * 0.5,
                         torch.randn(4, 9, generator=g) * 0.1], -1).double()
    start = torch.tensor([100.0, -50.0, 2.5], dtype=torch.float64).expand(4, 3)
    poses = integrate_steps(steps, start)
    assert poses.shape == (4, 10, 3)
    torch.testing.assert_close(poses[:, 0], start)
    torch.testing.assert_close(relative_steps(poses), steps, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"\[\.\.\., T, 3\]"):
        relative_steps(torch.zeros(5, 2))


def test_numpy_and_torch_agree_and_keep_dtype():
    a, b = _poses(16, 3), _poses(16, 4)
    for fn, args in [(se2_compose, (a, b)), (se2_inverse, (a,)), (to_frame, (b, a)),
                     (world_to_ego, (b[:, :2], a)), (ego_to_world, (b[:, :2], a)), (rotate, (b[:, :2], a[:, 2])),
                     (relative_steps, (a,)), (integrate_steps, (a[None] * 0.01,)), (wrap_angle, (a * 3,))]:
        out_np = fn(*args)
        out_t = fn(*(torch.from_numpy(np.ascontiguousarray(x)) for x in args))
        assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor), fn.__name__
        assert out_np.dtype == np.float64 and out_t.dtype == torch.float64, fn.__name__
        np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-9, err_msg=fn.__name__)
        out32 = fn(*(torch.from_numpy(np.ascontiguousarray(x)).float() for x in args))
        assert out32.dtype == torch.float32, fn.__name__
