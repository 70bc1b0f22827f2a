"""Typed configs of the planners: action bounds, CEM (V-JEPA 2-AC) and MPPI (Williams et al. 2017).

CEM's defaults are V-JEPA 2-AC's rules with a CPU budget (arXiv 2506.09985; their code: 400 samples,
top-k 10, 10 iterations, momentum 0.15 on mean and std, rollout 2), in full in the packaged preset
``planning/vjepa2ac.yaml``; MPPI's default is Williams et al.'s Algorithm 2 with its control cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from drivewm.errors import DrivewmError


class PlanningError(DrivewmError):
    """A planner, goal, cost or world model that cannot be used as asked."""


@dataclass(kw_only=True)
class ActionBounds:
    """Box limits of one action; drivewm's actions are [acceleration m/s^2, steering rad]."""

    low: tuple[float, ...] = (-8.0, -0.6)
    """Lower limit of each action component (the simulator's default max_brake, max_steer)."""
    high: tuple[float, ...] = (4.0, 0.6)
    """Upper limit of each action component."""

    def __post_init__(self) -> None:
        self.low = tuple(float(v) for v in self.low)
        self.high = tuple(float(v) for v in self.high)
        if len(self.low) == 0 or len(self.low) != len(self.high):
            raise PlanningError(
                f"action bounds: low {self.low} and high {self.high} must be non-empty and of equal length"
            )
        bad = [i for i, (lo, hi) in enumerate(zip(self.low, self.high)) if not lo < hi]
        if bad:
            raise PlanningError(
                f"action bounds are empty in component(s) {bad}: need low < high, got low {self.low}, high {self.high}"
            )

    @property
    def dim(self) -> int:
        return len(self.low)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(low [A], high [A]) as float32 tensors on a device."""
        return (
            torch.tensor(self.low, dtype=torch.float32, device=device),
            torch.tensor(self.high, dtype=torch.float32, device=device),
        )

    def clip(self, actions: torch.Tensor) -> torch.Tensor:
        """Clip [..., A] actions into the box."""
        low, high = self.tensors(actions.device)
        return torch.maximum(torch.minimum(actions, high.to(actions.dtype)), low.to(actions.dtype))

    @classmethod
    def from_space(cls, space) -> "ActionBounds":
        """Bounds of a gymnasium `Box` action space."""
        return cls(low=tuple(space.low.tolist()), high=tuple(space.high.tolist()))

    @classmethod
    def of(cls, low: Sequence[float], high: Sequence[float]) -> "ActionBounds":
        return cls(low=tuple(low), high=tuple(high))


@dataclass(kw_only=True)
class CEMConfig:
    """Cross-entropy method. The defaults follow V-JEPA 2-AC's ``cem`` (facebookresearch/vjepa2,
    notebooks/utils/mpc_utils.py, commit c2963a4) with a CPU budget; each of drivewm's additions is a
    field of its own, off by default (``planning/jepa_tiny.yaml`` turns them on)."""

    name: str = "cem"
    """Planner name."""
    horizon: int = 6
    """Steps planned ahead (6 steps = 3 s at 2 Hz; V-JEPA 2-AC's `rollout`: 2)."""
    samples: int = 64
    """Action sequences sampled per iteration (V-JEPA 2-AC: 400)."""
    elites: int = 8
    """Best sequences kept to refit the Gaussian (V-JEPA 2-AC: top-k 10)."""
    iterations: int = 4
    """Refits per replanning step (V-JEPA 2-AC: 10)."""
    momentum: float = 0.15
    """Weight of the previous mean and std when refitting (V-JEPA 2-AC: 0.15 on both)."""
    init_std: float = 1.0
    """Initial std of the sampling Gaussian, as a fraction of each action's half range (V-JEPA 2-AC: 1,
    the std is `maxnorm` for actions clipped to +-maxnorm)."""
    unbiased_std: bool = True
    """Refit the std with Bessel's correction, as ``torch.std`` by default (V-JEPA 2-AC); False: the
    population std (drivewm's)."""
    draw_per_step: bool = True
    """Draw the noise one planned step at a time, [S, A] per step, as V-JEPA 2-AC; False: [S, H, A] in
    one draw (drivewm's). Same distribution, different random numbers for a seed."""
    min_std: float = 0.0
    """drivewm: floor on the std (fraction of half range) so the search never freezes; 0 = none (V-JEPA 2-AC)."""
    include_mean: bool = False
    """drivewm: score the current mean as one of the samples, so a good warm start is never lost."""
    warm_start: bool = False
    """drivewm: start each replanning from the previous plan shifted by one step; V-JEPA 2-AC starts
    every plan from zero mean."""
    seed: int = 0
    """Seed of the sampling generator; the same seed gives the same plans."""
    device: str = "cpu"
    """Device on which samples are drawn and scored (the model's device)."""
    return_best: bool = False
    """drivewm: return the lowest-cost sequence scored, the final mean scored too, instead of the final mean
    (V-JEPA 2-AC returns the mean; iCEM, Pinneri et al., arXiv 2008.06389, the best). The mean of elites
    that pass an obstacle on either side runs into it, and is never scored."""


@dataclass(kw_only=True)
class MPPIConfig:
    """Model predictive path integral control (Williams et al., "Information Theoretic MPC for Model-Based
    Reinforcement Learning", ICRA 2017, Algorithm 2): exponentially weighted samples."""

    name: str = "mppi"
    """Planner name."""
    horizon: int = 6
    """Steps planned ahead (6 steps = 3 s at 2 Hz)."""
    samples: int = 64
    """Perturbed action sequences per iteration."""
    iterations: int = 4
    """Weighted-average updates per replanning step."""
    temperature: float = 1.0
    """lambda: weights are exp(-(cost - min cost) / lambda); small = greedy, large = plain average."""
    form: str = "control-cost"
    """"control-cost": each sample's cost adds lambda * sum_t u_t^T Sigma^-1 eps_t (Williams et al. 2017,
    Algorithm 2); "simplified": the state cost alone."""
    noise_std: float = 0.3
    """Std of the perturbations, as a fraction of each action's half range."""
    seed: int = 0
    """Seed of the sampling generator; the same seed gives the same plans."""
    device: str = "cpu"
    """Device on which samples are drawn and scored (the model's device)."""
