"""Differentiable volume rendering of depth along LiDAR rays through a voxel grid, as Copilot4D's
tokenizer decoder does (Zhang et al., arXiv 2311.01017, after NeRF, Mildenhall et al., arXiv 2003.08934).

Along a ray with samples at depths t_1 < ... < t_S and densities sigma_i:
alpha_i = 1 - exp(-sigma_i * delta_i), w_i = alpha_i * prod_{j<i} (1 - alpha_j),
depth = sum_i w_i t_i + (1 - sum_i w_i) * t_far (the ray's leftover transmittance ends at t_far).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from drivewm.data.spec import GridSpec


def ray_samples(num_rays: tuple[int, int], n_samples: int, near: float, far: float,
                jitter: bool, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sample depths [B, R, S]: bin centres of S equal bins of [near, far], uniformly jittered within each bin when ``jitter``."""
    b, r = num_rays
    edges = torch.linspace(near, far, n_samples + 1, device=device)
    lo, width = edges[:-1], edges[1:] - edges[:-1]
    u = torch.rand(b, r, n_samples, device=device) if jitter else torch.full((b, r, n_samples), 0.5, device=device)
    return lo + u * width


def grid_coords(points: torch.Tensor, grid: GridSpec) -> torch.Tensor:
    """Metric points [..., 3] -> grid_sample coordinates in [-1, 1] ordered (z, y, x) for a [.., X, Y, Z] volume."""
    lower = torch.tensor(grid.lower, device=points.device, dtype=points.dtype)
    upper = torch.tensor(grid.upper, device=points.device, dtype=points.dtype)
    n = (points - lower) / (upper - lower) * 2 - 1  # [..., 3] (x, y, z) in [-1, 1]
    return n.flip(-1)


def sample_volume(volume: torch.Tensor, points: torch.Tensor, grid: GridSpec, mode: str = "bilinear") -> torch.Tensor:
    """Trilinear (or nearest) lookup of ``volume`` [B, C, X, Y, Z] at metric ``points`` [B, R, S, 3] -> [B, C, R, S].

    Points outside the grid read zeros.
    """
    coords = grid_coords(points, grid)  # [B, R, S, 3]
    out = F.grid_sample(volume, coords[:, None], mode=mode, padding_mode="zeros", align_corners=False)  # [B, C, 1, R, S]
    return out[:, :, 0]


def volume_render(sigma: torch.Tensor, t: torch.Tensor, t_far: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Densities ``sigma`` [..., S] (>= 0) at depths ``t`` [..., S] -> (depth [...], weights [..., S])."""
    delta = torch.diff(t, dim=-1, append=torch.full_like(t[..., :1], t_far))  # [..., S]
    delta = delta.clamp_min(0.0)
    alpha = 1.0 - torch.exp(-sigma * delta)
    # transmittance before sample i: exp(-sum_{j<i} sigma_j delta_j), computed in log space for stability
    log_trans = torch.cumsum(-sigma * delta, dim=-1)
    trans = torch.exp(torch.cat([torch.zeros_like(log_trans[..., :1]), log_trans[..., :-1]], -1))
    weights = alpha * trans
    depth = (weights * t).sum(-1) + (1.0 - weights.sum(-1)) * t_far
    return depth, weights


def surface_concentration(weights: torch.Tensor, t: torch.Tensor, depth_gt: torch.Tensor, margin: float) -> torch.Tensor:
    """Rendering weight away from the true return, per ray: sum_i 1(|t_i - D_gt| > margin) w_i, weights and
    sample depths [..., S], depth_gt [...] -> [...] (Copilot4D's surface term, after UniSim arXiv 2308.01898)."""
    return (weights * ((t - depth_gt[..., None]).abs() > margin)).sum(-1)


def render_grid_depth(density: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, grid: GridSpec,
                      n_samples: int, near: float, far: float, jitter: bool = False) -> torch.Tensor:
    """Depth [B, R] along unit rays (``origins`` [B, 3], ``dirs`` [B, R, 3]) through a density grid [B, 1, X, Y, Z]."""
    t = ray_samples(dirs.shape[:2], n_samples, near, far, jitter, dirs.device)  # [B, R, S]
    pts = origins[:, None, None, :] + t[..., None] * dirs[:, :, None, :]  # [B, R, S, 3]
    sigma = sample_volume(density, pts, grid)[:, 0]  # [B, R, S]
    return volume_render(sigma, t, far)[0]
