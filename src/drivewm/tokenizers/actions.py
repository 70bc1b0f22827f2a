"""Discrete tokens for ego motion, so a sequence model can interleave them with scene tokens and predict them.

Both tokenizers turn the ego motion of one step (frame t+1 in frame t's ego frame: forward x, lateral y,
heading change theta; `drivewm.geometry.relative_steps`) into 3 tokens, each component quantized
uniformly over its own range and given its own vocabulary, appended after the scene vocabulary: slot k's
tokens are scene_vocab + offset_k + bin. Both decode to the bin centres, so a value inside the ranges
comes back within half a bin width.

- ``ActionTokenizer`` (DrivingGPT, Chen et al., arXiv 2412.18607; no official code is published, this
  follows the paper's text): slots (x, y, theta), ``bins`` (128) each. DrivingGPT takes each range from
  percentiles of its training actions; here the ranges are config values covering the simulator's motion.
- ``PoseTokenizer`` (DrivingWorld, Hu et al., arXiv 2412.19505; official code YvanYin/DrivingWorld,
  ``modules/tokenizers/pose_tokenizer.py``): slots (yaw, x, y) in the order its sequence places them, with
  its vocabularies (512 yaw, 128 x, 128 y) and ranges: x in [0, 8) m, y over 1 m and yaw over 16 degrees,
  the y and yaw bins shifted up by half a bin as its ``y_min`` / ``yaw_min`` place them. It always clips
  values to the edge bins, as the official ``clip``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from drivewm.geometry import relative_steps

# Which component of a step (x, y, theta) each name stands for.
_COMPONENT = {"x": 0, "y": 1, "theta": 2}


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


@dataclass(frozen=True)
class _Slot:
    name: str  # "x", "y" or "theta"
    lo: float
    hi: float
    bins: int


class _BinnedMotionTokenizer:
    """Steps [..., 3] (x, y, theta) <-> tokens [..., 3] in slot order, each slot in its own id range."""

    def __init__(self, slots: list[_Slot], scene_vocab: int, clamp: bool):
        for s in slots:
            _check_range(f"{s.name}_range", s.lo, s.hi, s.bins)
        self.slots, self.offset, self.clamp = slots, scene_vocab, clamp
        starts = [scene_vocab + sum(s.bins for s in slots[:k]) for k in range(len(slots))]
        self.slot_ranges = [(a, a + s.bins) for a, s in zip(starts, slots)]
        """[(first id, last id + 1)] of each slot, in sequence order."""

    @property
    def vocab_size(self) -> int:
        """Tokens this tokenizer adds after the scene vocabulary."""
        return sum(s.bins for s in self.slots)

    @property
    def bin_width(self) -> torch.Tensor:
        """[3] bin width of x, y, theta."""
        width = {s.name: (s.hi - s.lo) / s.bins for s in self.slots}
        return torch.tensor([width["x"], width["y"], width["theta"]])

    def encode(self, steps: torch.Tensor) -> torch.Tensor:
        """Relative motion [..., 3] (x, y, theta) -> tokens [..., 3] (global ids, slot order)."""
        if steps.shape[-1] != 3:
            raise ValueError(f"steps must be [..., 3] (x, y, theta), got {tuple(steps.shape)}")
        toks = [a + _to_bins(steps[..., _COMPONENT[s.name]], s.lo, s.hi, s.bins, s.name, self.clamp)
                for (a, _), s in zip(self.slot_ranges, self.slots)]
        return torch.stack(toks, -1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [..., 3] (slot order) -> relative motion [..., 3] (x, y, theta) at the bin centres."""
        out: list[torch.Tensor | None] = [None, None, None]
        for k, ((a, b), s) in enumerate(zip(self.slot_ranges, self.slots)):
            t = tokens[..., k].long()
            if (t < a).any() or (t >= b).any():
                raise ValueError(f"action tokens: slot {k} ({s.name}) must lie in [{a}, {b}), got "
                                 f"[{int(t.min())}, {int(t.max())}]")
            out[_COMPONENT[s.name]] = _from_bins(t - a, s.lo, s.hi, s.bins)
        return torch.stack(out, -1)

    def encode_poses(self, ego_pose: torch.Tensor) -> torch.Tensor:
        """World poses [..., T, 3] -> tokens [..., T-1, 3] of the motion between consecutive frames."""
        return self.encode(relative_steps(ego_pose))

    def roundtrip_error(self, steps: torch.Tensor) -> torch.Tensor:
        """Max absolute error [3] of decode(encode(steps)) per component (<= half a bin inside the ranges)."""
        return (self.decode(self.encode(steps)) - steps).abs().reshape(-1, 3).amax(0)


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


class ActionTokenizer(_BinnedMotionTokenizer):
    """DrivingGPT: (x, y, theta) per step <-> 3 tokens in [scene_vocab, scene_vocab + 3 * bins)."""

    def __init__(self, cfg: ActionTokenizerConfig, scene_vocab: int):
        slots = [_Slot(n, float(r[0]), float(r[1]), cfg.bins)
                 for n, r in (("x", cfg.x_range), ("y", cfg.y_range), ("theta", cfg.theta_range))]
        super().__init__(slots, scene_vocab, cfg.clamp)
        self.cfg = cfg


def _shifted(half_range: float, bins: int) -> list[float]:
    """[-r, r) moved up by half a bin, as DrivingWorld's `y_min = -r + step / 2` places its bins."""
    step = 2 * half_range / bins
    return [-half_range + step / 2, half_range + step / 2]


@dataclass(kw_only=True)
class PoseTokenizerConfig:
    yaw_bins: int = 512
    """Bins of the heading change (DrivingWorld: yaw_vocab_size 512)."""
    x_bins: int = 128
    """Bins of the forward motion (DrivingWorld: pose_x_vocab_size 128)."""
    y_bins: int = 128
    """Bins of the lateral motion (DrivingWorld: pose_y_vocab_size 128)."""
    yaw_range: list[float] = field(default_factory=lambda: [math.radians(v) for v in _shifted(8.0, 512)])
    """Heading change per step (rad) of the bins: DrivingWorld's 16 degrees, shifted by half a bin."""
    x_range: list[float] = field(default_factory=lambda: [0.0, 8.0])
    """Forward motion per step (m) of the bins (DrivingWorld: [0, 8))."""
    y_range: list[float] = field(default_factory=lambda: _shifted(0.5, 128))
    """Lateral motion per step (m) of the bins: DrivingWorld's 1 m, shifted by half a bin."""


class PoseTokenizer(_BinnedMotionTokenizer):
    """DrivingWorld: (x, y, theta) per step <-> 3 tokens (yaw, x, y), each slot its own vocabulary."""

    def __init__(self, cfg: PoseTokenizerConfig, scene_vocab: int):
        slots = [_Slot("theta", *map(float, cfg.yaw_range), cfg.yaw_bins),
                 _Slot("x", *map(float, cfg.x_range), cfg.x_bins),
                 _Slot("y", *map(float, cfg.y_range), cfg.y_bins)]
        super().__init__(slots, scene_vocab, clamp=True)
        self.cfg = cfg
