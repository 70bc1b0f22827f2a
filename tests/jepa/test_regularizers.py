"""Collapse control against hand/numpy references: EMA, VICReg, AD-L-JEPA variance, SIGReg."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from drivewm.jepa.regularizers import (
    RegularizerError,
    adl_variance,
    ema_momentum,
    ema_update,
    random_directions,
    sigreg,
    vicreg_covariance,
    vicreg_variance,
)


def test_ema_update_matches_formula():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for b, t, o in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)


def test_ema_momentum_schedule():
    assert ema_momentum(0, 100) == pytest.approx(0.996)
    assert ema_momentum(50, 100) == pytest.approx(0.998)
    assert ema_momentum(100, 100) == pytest.approx(1.0)


def test_vicreg_terms_hand_computed():
    z = torch.tensor([[0.0, 0.0], [2.0, 1.0], [4.0, 2.0]])
    # Var (unbiased): dim0 = 4, dim1 = 1 -> std sqrt(4.0001), sqrt(1.0001)
    std = np.sqrt(np.array([4.0, 1.0]) + 1e-4)
    assert float(vicreg_variance(z, gamma=1.0)) == pytest.approx(np.maximum(0, 1 - std).mean())
    assert float(vicreg_variance(z, gamma=3.0)) == pytest.approx(np.maximum(0, 3 - std).mean(), rel=1e-5)
    # Cov off-diagonal = 2 (both entries) -> (4 + 4) / 2 = 4
    assert float(vicreg_covariance(z)) == pytest.approx(4.0)


def test_adl_variance_hand_computed():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    # normalised already; Var (unbiased) per dim = 1/3 -> std sqrt(1/3 + 1e-4) > 1/sqrt(2)? 0.577 < 0.707
    expected = max(0.0, 1 / math.sqrt(2) - math.sqrt(1 / 3 + 1e-4))
    assert float(adl_variance(z)) == pytest.approx(expected, rel=1e-5)
    collapsed = torch.ones(8, 4)
    assert float(adl_variance(collapsed)) == pytest.approx(0.5 - 0.01, rel=1e-4)


def _numpy_sigreg(z: np.ndarray, a: np.ndarray) -> float:
    """Direct Epps-Pulley: N * int_{-3}^{3} |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt, trapezoid, 33 symmetric nodes."""
    x = z @ a  # [N, K]
    t = np.linspace(-3, 3, 33)
    ecf = np.exp(1j * x[:, :, None] * t).mean(0)  # [K, P]
    f = np.abs(ecf - np.exp(-t**2 / 2)) ** 2 * np.exp(-t**2 / 2)
    stat = np.trapezoid(f, t, axis=1) * x.shape[0]
    return float(stat.mean())


def test_sigreg_matches_numpy_and_separates_gaussian_from_collapse():
    rng = np.random.default_rng(0)
    z_gauss = rng.standard_normal((512, 16)).astype(np.float32)
    z_collapsed = np.tile(rng.standard_normal((1, 16)), (512, 1)).astype(np.float32) * 0.01
    z_uniform = rng.uniform(0, 1, (512, 16)).astype(np.float32)
    a = random_directions(16, 64, seed=1, step=5).numpy()
    for z in (z_gauss, z_collapsed, z_uniform):
        ours = float(sigreg(torch.from_numpy(z), step=5, num_slices=64, seed=1))
        assert ours == pytest.approx(_numpy_sigreg(z, a), rel=1e-3)
    g = float(sigreg(torch.from_numpy(z_gauss), step=0, num_slices=64))
    c = float(sigreg(torch.from_numpy(z_collapsed), step=0, num_slices=64))
    u = float(sigreg(torch.from_numpy(z_uniform), step=0, num_slices=64))
    # For Gaussian samples E[N |ecf - phi|^2] = 1 - exp(-t^2): the statistic stays O(1) whatever N,
    # int (1 - e^{-t^2}) e^{-t^2/2} dt ~ 1.06 on [-3, 3]; a collapsed or skewed batch grows like N.
    assert 0.3 < g < 2.0
    assert c > 100 * g and u > 10 * g


def test_sigreg_slices_step_synchronised():
    a0 = random_directions(8, 4, seed=0, step=3)
    assert torch.equal(a0, random_directions(8, 4, seed=0, step=3))
    assert not torch.equal(a0, random_directions(8, 4, seed=0, step=4))
    torch.testing.assert_close(a0.norm(dim=0), torch.ones(4))


def test_sigreg_gradient_reduces_statistic():
    torch.manual_seed(0)
    z = (torch.rand(128, 8) * 3).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.05)
    first = None
    for step in range(40):
        loss = sigreg(z, step=step, num_slices=32)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(sigreg(z.detach(), step=999, num_slices=32)) < 0.1 * first


def test_bad_inputs_raise():
    with pytest.raises(RegularizerError, match="batch of 1"):
        vicreg_variance(torch.randn(1, 8))
    with pytest.raises(RegularizerError, match="dimension"):
        vicreg_covariance(torch.randn(8, 1))
    with pytest.raises(RegularizerError, match="dimension"):
        adl_variance(torch.randn(8, 1))
    with pytest.raises(RegularizerError, match="batch of 1"):
        sigreg(torch.randn(1, 4), step=0)
    with pytest.raises(RegularizerError, match="num_slices"):
        sigreg(torch.randn(4, 4), step=0, num_slices=0)


def _official_vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """``VICReg.forward`` of facebookresearch/vicreg main_vicreg.py (4e12602fd495af83efd1631fbe82523e6db092e0),
    after the projector, on one process (FullGatherLayer is the identity)."""

    def off_diagonal(x):
        n, m = x.shape
        assert n == m
        return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()

    batch_size, num_features = x.shape
    repr_loss = torch.nn.functional.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(torch.relu(1 - std_x)) / 2 + torch.mean(torch.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(num_features) + off_diagonal(cov_y).pow_(2).sum().div(num_features)
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def test_vicreg_collapse_terms_equal_the_official_loss():
    from drivewm.jepa.objectives import CollapseConfig, collapse_terms

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=g)
    x = 0.5 * torch.randn(32, 6, generator=g) @ mix  # correlated and under unit std: every term is active
    y = x + 0.3 * torch.randn(32, 6, generator=g) @ mix
    cfg = CollapseConfig(target="shared", stop_grad=False, vicreg_sim=25.0)
    out = collapse_terms(cfg, torch.nn.functional.mse_loss(x, y), x, y, x, step=0, seed=0)
    ref = _official_vicreg(x.clone(), y.clone())
    torch.testing.assert_close(out["loss"], ref, rtol=1e-5, atol=1e-6)
    assert float(out["vicreg_cov"]) > 0.1  # the covariance term matters at this size
