"""Discrete tokens for ego motion, so a sequence model can interleave them with scene tokens.

- ``ActionTokenizer`` (DrivingGPT, Chen et al., arXiv 2412.18607): the ego motion of each step as a
  relative (x, y, theta) in the previous frame, each component quantized uniformly into ``bins``
  (128) over its own range, and each component given its own vocabulary range appended after the
  scene vocabulary: token = scene_vocab + component * bins + bin.
- ``PoseTokenizer`` (DrivingWorld, Hu et al., arXiv 2412.19505): the relative orientation into
  ``alpha`` categories over [-pi, pi) and the relative position into ``beta`` x ``gamma`` bins
  (x by y), one position token per step.

Both decode to the bin centres, so a value inside the range comes back within half a bin width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from drivewm.geometry import relative_steps, wrap_angle

def _check_range(name: str, lo: float, hi: float, bins: int) -> None:
    if not hi > lo:
        raise ValueError(f"{name}: range must have max > min, got [{lo}, {hi}]")
    if bins < 1:
        raise ValueError(f"{name}: bins must be >= 1, got {bins}")


def _to_bins(v: torch.Tensor, lo: float, hi: float, bins: int, name: str, clamp: bool) -> torch.Tensor:
    if not torch.isfinite(v).all():
        raise ValueError(f"{name}: values must be finite")
    if not clamp and ((v < lo).any() or (v > hi).any()):
        raise ValueError(f"{name}: values outside [{lo}, {hi}] (got [{float(v.min()):.4g}, {float(v.max()):.4g}])")
    idx = torch.floor((v - lo) / (hi - lo) * bins).long()
    return idx.clamp(0, bins - 1)


def _from_bins(idx: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    return lo + (idx.float() + 0.5) * (hi - lo) / bins


@dataclass(kw_only=True)
class ActionTokenizerConfig:
    bins: int = 128
    """Bins per component (DrivingGPT: 128)."""
    x_range: list[float] = field(default_factory=lambda: [-2.0, 14.0])
    """Forward motion per step (m) covered by the bins (14 m at 2 Hz is 100 km/h)."""
    y_range: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    """Lateral motion per step (m)."""
    theta_range: list[float] = field(default_factory=lambda: [-0.6, 0.6])
    """Heading change per step (rad)."""
    clamp: bool = True
    """Clamp values outside the ranges to the edge bins (False: raise ValueError)."""


class ActionTokenizer:
    """(x, y, theta) per step <-> 3 tokens per step in [scene_vocab, scene_vocab + 3 * bins)."""

    def __init__(self, cfg: ActionTokenizerConfig, scene_vocab: int):
        for n, r in (("x_range", cfg.x_range), ("y_range", cfg.y_range), ("theta_range", cfg.theta_range)):
            _check_range(n, r[0], r[1], cfg.bins)
        self.cfg = cfg
        self.offset = scene_vocab
        self.ranges = [tuple(cfg.x_range), tuple(cfg.y_range), tuple(cfg.theta_range)]

    @property
    def vocab_size(self) -> int:
        """Tokens this tokenizer adds after the scene vocabulary."""
        return 3 * self.cfg.bins

    @property
    def bin_width(self) -> torch.Tensor:
        return torch.tensor([(hi - lo) / self.cfg.bins for lo, hi in self.ranges])

    def encode(self, steps: torch.Tensor) -> torch.Tensor:
        """Relative motion [..., 3] (x, y, theta) -> tokens [..., 3] (global ids after the scene vocabulary)."""
        if steps.shape[-1] != 3:
            raise ValueError(f"steps must be [..., 3] (x, y, theta), got {tuple(steps.shape)}")
        names = ("x", "y", "theta")
        toks = [
            self.offset + i * self.cfg.bins + _to_bins(steps[..., i], lo, hi, self.cfg.bins, names[i], self.cfg.clamp)
            for i, (lo, hi) in enumerate(self.ranges)
        ]
        return torch.stack(toks, -1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [..., 3] -> relative motion [..., 3] at the bin centres."""
        local = tokens.long() - self.offset - torch.arange(3) * self.cfg.bins
        if (local < 0).any() or (local >= self.cfg.bins).any():
            raise ValueError(f"action tokens must be in [{self.offset}, {self.offset + self.vocab_size}) with "
                             "component i in its own range of bins")
        return torch.stack([_from_bins(local[..., i], lo, hi, self.cfg.bins) for i, (lo, hi) in enumerate(self.ranges)], -1)

    def encode_poses(self, ego_pose: torch.Tensor) -> torch.Tensor:
        """World poses [..., T, 3] -> tokens [..., T-1, 3] of the motion between consecutive frames."""
        return self.encode(relative_steps(ego_pose))

    def roundtrip_error(self, steps: torch.Tensor) -> torch.Tensor:
        """Max absolute error [3] of decode(encode(steps)) per component (<= half a bin inside the ranges)."""
        return (self.decode(self.encode(steps)) - steps).abs().reshape(-1, 3).amax(0)


@dataclass(kw_only=True)
class PoseTokenizerConfig:
    alpha: int = 72
    """Orientation categories over [-pi, pi) (5 degrees each)."""
    beta: int = 64
    """Bins of the forward position x."""
    gamma: int = 32
    """Bins of the lateral position y."""
    x_range: list[float] = field(default_factory=lambda: [-2.0, 14.0])
    """Forward position range (m) of the beta bins."""
    y_range: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    """Lateral position range (m) of the gamma bins."""
    clamp: bool = True
    """Clamp positions outside the ranges to the edge bins (False: raise ValueError)."""


class PoseTokenizer:
    """Relative pose [..., 3] <-> (orientation token in [0, alpha), position token in [0, beta * gamma))."""

    def __init__(self, cfg: PoseTokenizerConfig):
        _check_range("x_range", cfg.x_range[0], cfg.x_range[1], cfg.beta)
        _check_range("y_range", cfg.y_range[0], cfg.y_range[1], cfg.gamma)
        if cfg.alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {cfg.alpha}")
        self.cfg = cfg

    @property
    def bin_width(self) -> torch.Tensor:
        c = self.cfg
        return torch.tensor([(c.x_range[1] - c.x_range[0]) / c.beta, (c.y_range[1] - c.y_range[0]) / c.gamma,
                             2 * math.pi / c.alpha])

    def encode(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pose [..., 3] (x, y, yaw) -> (orientation [...], position [...]) long tokens."""
        if pose.shape[-1] != 3:
            raise ValueError(f"pose must be [..., 3] (x, y, yaw), got {tuple(pose.shape)}")
        c = self.cfg
        ix = _to_bins(pose[..., 0], c.x_range[0], c.x_range[1], c.beta, "x", c.clamp)
        iy = _to_bins(pose[..., 1], c.y_range[0], c.y_range[1], c.gamma, "y", c.clamp)
        yaw = wrap_angle(pose[..., 2])
        iyaw = _to_bins(yaw, -math.pi, math.pi, c.alpha, "yaw", True)
        return iyaw, ix * c.gamma + iy

    def decode(self, orientation: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Tokens -> pose [..., 3] at the bin centres."""
        c = self.cfg
        if (orientation < 0).any() or (orientation >= c.alpha).any():
            raise ValueError(f"orientation tokens must be in [0, {c.alpha})")
        if (position < 0).any() or (position >= c.beta * c.gamma).any():
            raise ValueError(f"position tokens must be in [0, {c.beta * c.gamma})")
        x = _from_bins(position // c.gamma, c.x_range[0], c.x_range[1], c.beta)
        y = _from_bins(position % c.gamma, c.y_range[0], c.y_range[1], c.gamma)
        yaw = _from_bins(orientation, -math.pi, math.pi, c.alpha)
        return torch.stack([x, y, yaw], -1)
