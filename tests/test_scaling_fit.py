import numpy as np
import pytest

from drivewm.scaling import fit_power_law, power_law


def test_recovers_known_power_law():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6])
    y = power_law(n, 40.0, 0.35, 1.2)
    fit = fit_power_law(n, y)
    assert fit.b == pytest.approx(0.35, rel=1e-3)
    assert fit.c == pytest.approx(1.2, rel=1e-3)
    np.testing.assert_allclose(power_law(n, fit.a, fit.b, fit.c), y, rtol=1e-4)
    assert fit.b_err < 1e-3


def test_noisy_fit_reports_uncertainty_covering_truth():
    rng = np.random.default_rng(0)
    n = np.geomspace(1e4, 1e7, 8)
    y = power_law(n, 30.0, 0.3, 1.0) * (1 + 0.01 * rng.standard_normal(8))
    fit = fit_power_law(n, y)
    assert abs(fit.b - 0.3) < 4 * fit.b_err + 0.02
    assert fit.b_err > 0


def test_bad_input():
    with pytest.raises(ValueError, match=">= 3"):
        fit_power_law(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        fit_power_law(np.array([1.0, 2.0, 3.0]), np.array([1.0, np.nan, 2.0]))
