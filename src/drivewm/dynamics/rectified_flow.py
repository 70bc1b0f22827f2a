"""Epona's rectified flow (arXiv 2506.24113), as its official code writes it (Kevin-thu/Epona at commit
651a7c77f65bdfec1ef48b50a4c6be5e8fea7e25):

- ``models/flux_dit.py`` FluxDiT.training_losses: t ~ U(0, 1) per sample, ``x_t = t * x + (1 - t) * noise``
  (t = 1 is the data, t = 0 pure noise), velocity target ``v = x - noise``, loss the mean squared error of
  the predicted velocity, and the one-step estimate of the clean sample ``x_t + v_pred * (1 - t)`` (what
  chain-of-forward training feeds back, ``return_predict=True``);
- ``models/flux_dit.py`` FluxDiT.sample + ``models/modules/sampling.py`` get_schedule: Euler steps
  ``x <- x + (t_next - t_cur) * v(x, t_cur)`` from t = 0 to t = 1 over FLUX's shifted schedule
  (``time_shift(mu, 1, t) = e^mu / (e^mu + (1/t - 1))`` with mu linear in the token count, 0.5 at 256 tokens
  and 1.15 at 4096).

The same interpolation written with s = 1 - t reads ``x_s = (1 - s) x + s * noise`` with velocity
``noise - x``: one path, the other direction of time; drivewm keeps Epona's.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

# FLUX's linear map from image tokens to the schedule shift mu (sampling.get_lin_function defaults).
_SHIFT_TOKENS = (256.0, 4096.0)
_SHIFT_MU = (0.5, 1.15)


def interpolate(x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """The point at time t of the straight path from noise (t = 0) to the data x (t = 1); t broadcasts."""
    return t * x + (1.0 - t) * noise


def velocity_target(x: Tensor, noise: Tensor) -> Tensor:
    """d x_t / dt of `interpolate`: the regression target of the velocity network."""
    return x - noise


def one_step_estimate(x_t: Tensor, velocity: Tensor, t: Tensor) -> Tensor:
    """The clean sample one Euler step from x_t to t = 1 reaches: x_t + v * (1 - t)."""
    return x_t + velocity * (1.0 - t)


def time_shift(mu: float, t: Tensor) -> Tensor:
    """FLUX's resolution-dependent shift of a time grid (sigma = 1): e^mu / (e^mu + 1/t - 1); 0 stays 0."""
    return math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))


def sampling_times(steps: int, tokens: int, shift: bool = True) -> list[float]:
    """The steps + 1 times, 0 (noise) to 1 (data), an Euler sampler visits (Epona's get_schedule)."""
    if steps < 1:
        raise ValueError(f"sampling steps must be >= 1, got {steps}")
    times = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    if shift:
        slope = (_SHIFT_MU[1] - _SHIFT_MU[0]) / (_SHIFT_TOKENS[1] - _SHIFT_TOKENS[0])
        mu = _SHIFT_MU[0] + slope * (tokens - _SHIFT_TOKENS[0])
        times = time_shift(mu, times)
    return (1.0 - times).tolist()


def euler_sample(velocity: Callable[[Tensor, Tensor], Tensor], noise: Tensor, times: list[float]) -> Tensor:
    """Integrate dx/dt = velocity(x, t [N]) from `noise` along `times` (increasing, 0 first) with Euler steps."""
    x = noise
    for t_cur, t_next in zip(times[:-1], times[1:]):
        t = torch.full((x.shape[0],), t_cur, dtype=x.dtype, device=x.device)
        x = x + (t_next - t_cur) * velocity(x, t)
    return x
