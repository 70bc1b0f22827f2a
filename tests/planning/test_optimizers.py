"""CEM and MPPI on costs with known minima; MPPI's weights against their formula; limits; determinism."""

import math

import numpy as np
import pytest
import torch

from drivewm.planning.config import ActionBounds, CEMConfig, MPPIConfig, PlanningError
from drivewm.planning.optimizers import CEM, MPPI, mppi_weights

BOUNDS = ActionBounds(low=(-2.0, -1.0), high=(2.0, 1.0))
TARGET = torch.tensor([[0.7, -0.3], [1.2, 0.4], [-0.5, 0.1], [0.0, -0.8]])  # [H=4, A=2]


def quadratic(actions: torch.Tensor) -> torch.Tensor:
    return ((actions - TARGET) ** 2).sum(dim=(1, 2))


def test_cem_finds_quadratic_minimum():
    cem = CEM(CEMConfig(horizon=4, samples=200, elites=20, iterations=15, seed=1), BOUNDS)
    res = cem.optimize(quadratic)
    assert torch.allclose(res.actions, TARGET, atol=0.05), res.actions
    assert res.costs[-1] < res.costs[0]


def test_mppi_finds_quadratic_minimum():
    mppi = MPPI(MPPIConfig(horizon=4, samples=300, iterations=30, temperature=0.05, noise_std=0.3, seed=1), BOUNDS)
    res = mppi.optimize(quadratic)
    assert torch.allclose(res.actions, TARGET, atol=0.1), res.actions


def test_minimum_outside_box_lands_on_the_boundary():
    far = torch.tensor([[5.0, -5.0], [5.0, 5.0], [-5.0, 5.0], [-5.0, -5.0]])

    def cost(a):
        return ((a - far) ** 2).sum(dim=(1, 2))

    for opt in (CEM(CEMConfig(horizon=4, samples=100, iterations=25), BOUNDS),
                MPPI(MPPIConfig(horizon=4, samples=100, iterations=10, temperature=0.5), BOUNDS)):
        res = opt.optimize(cost)
        low, high = BOUNDS.tensors()
        assert (res.actions >= low).all() and (res.actions <= high).all()
        expected = torch.clamp(far, low, high)
        assert torch.allclose(res.actions, expected, atol=0.15), (type(opt).__name__, res.actions)


def test_mppi_weights_match_formula():
    costs = torch.tensor([3.0, 1.0, 2.5, 10.0, 1.2], dtype=torch.float64)
    lam = 0.7
    w = mppi_weights(costs, lam)
    ref = np.exp(-(costs.numpy() - costs.numpy().min()) / lam)
    ref = ref / ref.sum()
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12)
    # lambda -> 0 puts all weight on the best sample; lambda -> inf gives the plain average
    assert mppi_weights(costs, 1e-4).argmax() == 1 and math.isclose(float(mppi_weights(costs, 1e-4).max()), 1.0)
    np.testing.assert_allclose(mppi_weights(costs, 1e8).numpy(), np.full(5, 0.2), rtol=1e-6)


def test_same_seed_same_plan_different_seed_differs():
    def run(seed, cls, cfg):
        return cls(cfg(horizon=4, samples=32, iterations=3, seed=seed), BOUNDS).optimize(quadratic).actions

    for cls, cfg in ((CEM, CEMConfig), (MPPI, MPPIConfig)):
        assert torch.equal(run(3, cls, cfg), run(3, cls, cfg))
        assert not torch.equal(run(3, cls, cfg), run(4, cls, cfg))


def test_every_scored_sample_is_inside_the_limits():
    low, high = BOUNDS.tensors()
    seen = []

    def spy(a):
        seen.append(a.clone())
        return -a.abs().sum(dim=(1, 2))  # pushes towards the corners

    CEM(CEMConfig(horizon=4, samples=32, iterations=3, init_std=3.0), BOUNDS).optimize(spy)
    MPPI(MPPIConfig(horizon=4, samples=32, iterations=3, noise_std=3.0), BOUNDS).optimize(spy)
    allv = torch.cat(seen)
    assert (allv >= low).all() and (allv <= high).all()


def test_bad_bounds_and_costs_are_clear_errors():
    with pytest.raises(PlanningError, match="empty"):
        ActionBounds(low=(0.0, 1.0), high=(1.0, 1.0))
    with pytest.raises(PlanningError, match="non-empty"):
        ActionBounds(low=(), high=())
    cem = CEM(CEMConfig(horizon=4, samples=8, iterations=1), BOUNDS)
    with pytest.raises(PlanningError, match="one value per sample"):
        cem.optimize(lambda a: a.sum(dim=2))
    with pytest.raises(PlanningError, match="non-finite"):
        cem.optimize(lambda a: torch.full((a.shape[0],), float("nan")))
    with pytest.raises(PlanningError, match="temperature"):
        mppi_weights(torch.zeros(3), 0.0)


def _two_lanes(a: torch.Tensor) -> torch.Tensor:
    """An obstacle at 0 and a lane on either side at +-1: elites split between the lanes."""
    x = a[..., 0]
    return (5 * torch.exp(-(x / 0.3) ** 2) + 0.1 * (x.abs() - 1) ** 2).sum(1)


def test_cem_return_best_never_returns_the_unscored_mean_between_two_modes():
    bounds = ActionBounds(low=(-2.0,), high=(2.0,))
    cfg = dict(horizon=2, samples=32, elites=8, iterations=3, init_std=0.8, seed=1)
    plain = CEM(CEMConfig(**cfg), bounds).optimize(_two_lanes)
    # V-JEPA 2-AC's rule returns the refitted mean: here it averages the two lanes into the obstacle,
    # while its reported cost is that of the best sample, which avoided it.
    assert float(_two_lanes(plain.actions[None])) > 1.0 > 0.01 > plain.cost
    best = CEM(CEMConfig(**cfg, return_best=True), bounds).optimize(_two_lanes)
    true_cost = float(_two_lanes(best.actions[None]))
    assert true_cost == pytest.approx(best.cost) and true_cost < 0.01
    assert best.samples_scored == plain.samples_scored + 1  # the final mean is scored once
    assert bool((best.actions >= -2.0).all() and (best.actions <= 2.0).all())
