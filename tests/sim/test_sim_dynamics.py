"""Ego kinematics and IDM car following against closed forms and safety invariants."""

from __future__ import annotations

import numpy as np
import pytest

from drivewm.sim.config import EGO_WHEELBASE
from drivewm.sim.ego import EgoState, bicycle_step
from drivewm.sim.traffic import IDMParams, idm_accel


@pytest.mark.parametrize("steer", [0.05, -0.2, 0.4])
def test_bicycle_constant_steer_is_a_circle(steer):
    v, T, n = 6.0, 7.3, 73
    st = EgoState(x=1.0, y=-2.0, yaw=0.3, v=v)
    for _ in range(n):
        st = bicycle_step(st, 0.0, steer, T / n, v_max=30.0)
    r = EGO_WHEELBASE / np.tan(steer)  # signed turning radius
    w = v / r
    # Closed form: a circle of radius r through the start, tangent to the initial heading.
    x = 1.0 + r * (np.sin(0.3 + w * T) - np.sin(0.3))
    y = -2.0 - r * (np.cos(0.3 + w * T) - np.cos(0.3))
    np.testing.assert_allclose([st.x, st.y], [x, y], atol=1e-9)
    assert abs(((st.yaw - (0.3 + w * T)) + np.pi) % (2 * np.pi) - np.pi) < 1e-9
    assert st.v == pytest.approx(v)


def test_bicycle_constant_accel_and_braking_to_a_stop():
    st = EgoState(x=0.0, y=0.0, yaw=np.pi / 2, v=2.0)
    one = bicycle_step(st, 1.5, 0.0, 4.0, v_max=50.0)
    many = st
    for _ in range(40):
        many = bicycle_step(many, 1.5, 0.0, 0.1, v_max=50.0)
    s = 2.0 * 4.0 + 0.5 * 1.5 * 16.0  # v0 t + a t^2 / 2
    for out in (one, many):
        np.testing.assert_allclose([out.x, out.y, out.v], [0.0, s, 2.0 + 6.0], atol=1e-9)
    stop = bicycle_step(EgoState(x=0.0, y=0.0, yaw=0.0, v=10.0), -4.0, 0.0, 5.0, v_max=50.0)
    assert stop.v == 0.0 and stop.x == pytest.approx(10.0**2 / (2 * 4.0))  # never reverses
    capped = bicycle_step(EgoState(x=0.0, y=0.0, yaw=0.0, v=9.0), 2.0, 0.0, 2.0, v_max=10.0)
    assert capped.v == 10.0 and capped.x == pytest.approx(9.0 * 0.5 + 0.5 * 2.0 * 0.25 + 10.0 * 1.5)


def test_idm_known_values():
    p = IDMParams()
    # Free road: a = a_max (1 - (v/v0)^4).
    assert idm_accel(np.array([5.0]), np.array([10.0]), np.array([np.inf]), np.array([0.0]), p)[0] == pytest.approx(
        p.a_max * (1 - 0.5**4))
    # Equilibrium gap at v = v0 / 2 gives zero acceleration.
    v, v0 = 5.0, 10.0
    s_star = p.s0 + v * p.headway
    gap = s_star / np.sqrt(1 - (v / v0) ** 4)
    assert abs(idm_accel(np.array([v]), np.array([v0]), np.array([gap]), np.array([0.0]), p)[0]) < 1e-9


@pytest.mark.parametrize("leader_brake", [2.0, 4.0, 8.0])
def test_idm_follower_never_hits_a_braking_leader(leader_brake):
    p, dt = IDMParams(), 0.05
    xl, vl, xf, vf, length = 30.0, 12.0, 0.0, 12.0, 4.5
    gaps = []
    for step in range(int(30 / dt)):
        al = -leader_brake if step * dt > 2.0 else 0.0
        af = float(np.clip(idm_accel(np.array([vf]), np.array([14.0]), np.array([xl - xf - length]),
                                     np.array([vf - vl]), p)[0], -9.0, p.a_max))
        vl_new, vf_new = max(vl + al * dt, 0.0), max(vf + af * dt, 0.0)
        xl, xf = xl + 0.5 * (vl + vl_new) * dt, xf + 0.5 * (vf + vf_new) * dt
        vl, vf = vl_new, vf_new
        gaps.append(xl - xf - length)
    assert min(gaps) > 0.5  # never touches the leader
    assert vf < 0.05 and gaps[-1] == pytest.approx(p.s0, abs=0.3)  # and settles at the jam distance
