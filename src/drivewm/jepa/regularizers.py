"""Collapse control of the JEPA family: EMA teacher, VICReg, AD-L-JEPA variance and LeJEPA SIGReg.

- EMA target encoder (I-JEPA, arXiv 2301.08243): theta_t <- m theta_t + (1 - m) theta_o, with m
  linear from 0.996 to 1.0 over training; the target branch gets no gradient.
- VICReg (Bardes et al., 2022, arXiv 2105.04906): variance term mean_j ReLU(gamma - sqrt(Var_j + eps)),
  covariance term sum of squared off-diagonal covariances / D; weights 25 / 25 / 1. Over two branches the
  variance terms are averaged and the covariance terms summed (``main_vicreg.py``; combined in
  ``drivewm.jepa.objectives.collapse_terms``).
- AD-L-JEPA (arXiv 2501.04969): mean_j ReLU(1/sqrt(D) - sqrt(Var_j + 1e-4)) on L2-normalised embeddings
  (a unit vector spread evenly over D dimensions has per-dimension std 1/sqrt(D)).
- SIGReg (Balestriero & LeCun, 2025, "LeJEPA", arXiv 2511.08544, Alg. 1 and the official
  ``lejepa.univariate.EppsPulley``): project the N x D embeddings on K random unit directions and
  compute for each the Epps-Pulley statistic against N(0, 1),
  ``N * integral |phi_hat(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt``, by the trapezoid rule on 17 points of
  [0, 3] with the weights doubled for the mirrored half, then average over the K slices. The
  directions come from a generator seeded by the training step so every DDP rank uses the same.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn


class RegularizerError(ValueError):
    """Embeddings a collapse regulariser cannot handle (too few samples or dimensions)."""


def _as_samples(z: torch.Tensor, name: str, min_dim: int = 1) -> torch.Tensor:
    """[..., D] -> [N, D]; a clear error for one sample or too few dimensions."""
    if z.dim() < 2:
        raise RegularizerError(f"{name}: embeddings must be [..., N, D], got shape {tuple(z.shape)}")
    z = z.reshape(-1, z.shape[-1])
    if z.shape[0] < 2:
        raise RegularizerError(f"{name}: a variance needs at least 2 samples, got a batch of {z.shape[0]}")
    if z.shape[1] < min_dim:
        raise RegularizerError(f"{name}: needs an embedding dimension >= {min_dim}, got D={z.shape[1]}")
    return z


# --- EMA teacher -----------------------------------------------------------------------------------


def ema_momentum(step: int, total_steps: int, start: float = 0.996, end: float = 1.0) -> float:
    """I-JEPA's momentum schedule: linear from ``start`` at step 0 to ``end`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    frac = min(max(step / total_steps, 0.0), 1.0)
    return start + (end - start) * frac


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_target <- m * theta_target + (1 - m) * theta_online, parameter by parameter."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("ema_update: target and online modules have different parameter lists")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)


# --- VICReg ----------------------------------------------------------------------------------------


def vicreg_variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """mean_j ReLU(gamma - sqrt(Var_j(z) + eps)) over the D dimensions of z [..., N, D] (unbiased Var)."""
    z = _as_samples(z, "vicreg_variance")
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(gamma - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} Cov(z)_ij^2 / D for z [..., N, D]."""
    z = _as_samples(z, "vicreg_covariance", min_dim=2)
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)  # [D, D]
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


# --- AD-L-JEPA -------------------------------------------------------------------------------------


def adl_variance(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """AD-L-JEPA: mean_j ReLU(1/sqrt(D) - sqrt(Var_j + eps)) of the L2-normalised embeddings z [..., N, D]."""
    z = _as_samples(z, "adl_variance", min_dim=2)
    zn = nn.functional.normalize(z, dim=-1)
    std = torch.sqrt(zn.var(dim=0) + eps)
    return torch.relu(1.0 / math.sqrt(z.shape[1]) - std).mean()


# --- SIGReg ----------------------------------------------------------------------------------------


def epps_pulley_nodes(t_max: float = 3.0, n_points: int = 17) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integration nodes t [P], Gaussian CF phi(t) [P] and trapezoid weights [P] (doubled, times phi)."""
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    t = torch.linspace(0.0, t_max, n_points)
    dt = t_max / (n_points - 1)
    # Trapezoid on [0, t_max] is dt at interior nodes and dt/2 at the ends; doubling covers [-t_max, 0].
    w = torch.full((n_points,), 2.0 * dt)
    w[0] = w[-1] = dt
    phi = torch.exp(-0.5 * t.square())
    return t, phi, w * phi


def _all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Differentiable mean over DDP ranks (the global empirical CF, as in the official code)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x) / dist.get_world_size()
    return x


def epps_pulley(x: torch.Tensor, t_max: float = 3.0, n_points: int = 17) -> torch.Tensor:
    """Epps-Pulley statistic of each column of x [N, K] against N(0, 1) -> [K] (scaled by the sample count)."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise RegularizerError(f"epps_pulley: needs [N >= 2, K] projected samples, got shape {tuple(x.shape)}")
    t, phi, weights = (a.to(x) for a in epps_pulley_nodes(t_max, n_points))
    n = x.shape[0]
    xt = x.unsqueeze(-1) * t  # [N, K, P]
    cos_mean = _all_reduce_mean(torch.cos(xt).mean(dim=0))  # [K, P]
    sin_mean = _all_reduce_mean(torch.sin(xt).mean(dim=0))
    err = (cos_mean - phi).square() + sin_mean.square()  # |phi_hat(t) - phi(t)|^2
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return (err @ weights) * n * world


def random_directions(dim: int, num_slices: int, seed: int, step: int, device=None, dtype=None) -> torch.Tensor:
    """[D, K] unit columns drawn from a CPU generator seeded by (seed, step): identical on every rank."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(step))
    a = torch.randn(dim, num_slices, generator=g)
    a = a / a.norm(dim=0, keepdim=True)
    return a.to(device=device, dtype=dtype)


def sigreg(
    z: torch.Tensor, step: int, num_slices: int = 256, seed: int = 0, t_max: float = 3.0, n_points: int = 17
) -> torch.Tensor:
    """LeJEPA SIGReg of embeddings z [..., N, D]: mean over random slices of the Epps-Pulley statistic."""
    z = _as_samples(z, "sigreg")
    if num_slices < 1:
        raise RegularizerError(f"sigreg: num_slices must be >= 1, got {num_slices}")
    a = random_directions(z.shape[1], num_slices, seed, step, device=z.device, dtype=z.dtype)
    return epps_pulley(z @ a, t_max, n_points).mean()
