"""Sampling-based trajectory optimisers over action sequences: CEM and MPPI, batched over samples.

Both minimise an objective ``cost(actions [S, H, A]) -> [S]`` that scores a whole batch of action
sequences at once (one batched world-model rollout per iteration), on the objective's device.

- CEM as V-JEPA 2-AC plans (Assran et al., arXiv 2506.09985; ``cem`` in facebookresearch/vjepa2
  notebooks/utils/mpc_utils.py, commit c2963a4): from zero mean and a std of the action range, draw
  each planned step's samples in turn, clip them to the action limits, keep the top-k (lowest energy),
  refit mean and unbiased std from them with momentum (``new = m * old + (1 - m) * elite``), repeat;
  the plan is the mean. drivewm's additions, each a `CEMConfig` field: a std floor, the current mean
  scored among the samples, warm start, one [S, H, A] draw, population std, best-plan return.
- MPPI (Williams et al., "Information Theoretic MPC for Model-Based Reinforcement Learning",
  ICRA 2017, Algorithm 2): perturb the nominal sequence u with Gaussian noise eps ~ N(0, Sigma), score
  each sample by its cost plus the control cost ``lambda * sum_t u_t^T Sigma^-1 eps_t``, weight it by
  ``exp(-(S_k - min S) / lambda)`` normalised to sum to one, move the nominal by the weighted average
  of the perturbations; the plan is the nominal. ``form="simplified"`` drops the control cost.

Every sample is clipped into the action box before scoring, and every returned plan lies inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from drivewm.planning.config import ActionBounds, CEMConfig, MPPIConfig, PlanningError

Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PlanResult:
    """Outcome of one optimisation: the plan, its cost and the history of the best cost per iteration."""

    actions: torch.Tensor
    """[H, A] the planned sequence, inside the action limits."""
    cost: float
    """Cost of the best sequence scored in the last iteration (with cem.return_best: of the returned plan)."""
    costs: list[float]
    """Lowest cost seen in each iteration."""
    samples_scored: int
    """How many sequences the objective scored in total."""


def _check_costs(costs: torch.Tensor, n: int) -> torch.Tensor:
    if costs.shape != (n,):
        raise PlanningError(f"the cost must return one value per sample, shape ({n},), got {tuple(costs.shape)}")
    if not torch.isfinite(costs).all():
        raise PlanningError("the cost returned non-finite values; check the world model and the goal")
    return costs.float()


class _SamplingOptimizer:
    """Shared state: bounds, horizon, a seeded generator on the planner's device."""

    def __init__(self, horizon: int, samples: int, iterations: int, seed: int, device: str, bounds: ActionBounds):
        if horizon < 1 or samples < 2 or iterations < 1:
            raise PlanningError(
                f"need horizon >= 1, samples >= 2, iterations >= 1; got {horizon}, {samples}, {iterations}"
            )
        self.horizon, self.samples, self.iterations = horizon, samples, iterations
        self.bounds = bounds
        if device not in ("cpu", "cuda"):
            raise PlanningError(f"the planner's device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise PlanningError("the planner's device is 'cuda' (cem.device / mppi.device) but no CUDA device is available")
        self.device = torch.device(device)
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.low, self.high = bounds.tensors(self.device)
        self.half_range = (self.high - self.low) / 2  # [A]

    def reseed(self, seed: int | None = None) -> None:
        """Restart the sampler: from the configured seed, or from it combined with an episode's `seed`, so
        each drive replays its own plans and a different configured seed gives different ones."""
        self.generator.manual_seed(self.seed if seed is None else self.seed * 1_000_003 + seed)

    def initial_mean(self, init: torch.Tensor | None) -> torch.Tensor:
        """[H, A] warm start: the given sequence, or zero action, clipped into the box."""
        a = self.bounds.dim
        if init is None:
            init = torch.zeros(self.horizon, a, device=self.device)
        init = torch.as_tensor(init, dtype=torch.float32, device=self.device)
        if init.shape != (self.horizon, a):
            raise PlanningError(f"warm-start plan must be [{self.horizon}, {a}], got {tuple(init.shape)}")
        return self.bounds.clip(init)

    def noise(self, std: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """[S, H, A] Gaussian noise scaled by std [H, A]; ``per_step``: drawn [S, A] at a time, step by step."""
        s, h, a = self.samples, self.horizon, self.bounds.dim
        if per_step:
            eps = torch.stack([torch.randn(s, a, generator=self.generator, device=self.device) for _ in range(h)], 1)
        else:
            eps = torch.randn(s, h, a, generator=self.generator, device=self.device)
        return eps * std

    @property
    def warm_start(self) -> bool:
        """Whether a receding-horizon planner should pass the previous plan, shifted, as the next start."""
        return True


class CEM(_SamplingOptimizer):
    """Cross-entropy method with momentum, as V-JEPA 2-AC's planner (arXiv 2506.09985), plus drivewm's options."""

    def __init__(self, cfg: CEMConfig, bounds: ActionBounds):
        super().__init__(cfg.horizon, cfg.samples, cfg.iterations, cfg.seed, cfg.device, bounds)
        low = 2 if cfg.unbiased_std else 1  # the unbiased std of one elite is undefined
        if not low <= cfg.elites <= cfg.samples:
            raise PlanningError(f"cem.elites must be in [{low}, samples={cfg.samples}], got {cfg.elites}")
        if not 0.0 <= cfg.momentum < 1.0:
            raise PlanningError(f"cem.momentum must be in [0, 1), got {cfg.momentum}")
        if cfg.min_std < 0 or cfg.init_std <= 0:
            raise PlanningError(f"cem.init_std must be > 0 and cem.min_std >= 0, got {cfg.init_std}, {cfg.min_std}")
        self.cfg = cfg

    @property
    def warm_start(self) -> bool:
        return self.cfg.warm_start

    def optimize(self, objective: Objective, init: torch.Tensor | None = None) -> PlanResult:
        cfg = self.cfg
        mean = self.initial_mean(init)  # [H, A]
        std = (cfg.init_std * self.half_range).expand_as(mean).clone()  # [H, A]
        std_floor = cfg.min_std * self.half_range
        history: list[float] = []
        best = float("inf")
        best_ever, best_seq = float("inf"), mean
        for _ in range(self.iterations):
            cand = self.bounds.clip(mean + self.noise(std, cfg.draw_per_step))  # [S, H, A]
            if cfg.include_mean:
                cand[0] = mean
            costs = _check_costs(objective(cand), self.samples)  # [S]
            top = torch.topk(costs, cfg.elites, largest=False).indices
            elite = cand[top]  # [k, H, A]
            if cfg.elites > 1:
                elite_std = elite.std(dim=0, unbiased=cfg.unbiased_std)
            else:
                elite_std = torch.zeros_like(mean)
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elite.mean(dim=0)
            std = cfg.momentum * std + (1 - cfg.momentum) * elite_std
            if cfg.min_std > 0:
                std = torch.maximum(std, std_floor)
            mean = self.bounds.clip(mean)  # a convex combination of clipped samples: only rounding can leave the box
            best = float(costs[top[0]])
            if best < best_ever:
                best_ever, best_seq = best, cand[top[0]].clone()
            history.append(best)
        if not cfg.return_best:
            return PlanResult(mean, best, history, self.samples * self.iterations)
        mean_cost = float(_check_costs(objective(mean[None]), 1)[0])
        plan, cost = (mean, mean_cost) if mean_cost <= best_ever else (best_seq, best_ever)
        return PlanResult(plan, cost, history, self.samples * self.iterations + 1)


def mppi_weights(costs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Williams et al. 2017: w_k = exp(-(S_k - rho) / lambda) / eta, rho = min_k S_k, eta = sum of the numerators."""
    if temperature <= 0:
        raise PlanningError(f"mppi temperature (lambda) must be > 0, got {temperature}")
    num = torch.exp(-(costs - costs.min()) / temperature)  # subtracting rho keeps exp from underflowing
    return num / num.sum()


def mppi_control_cost(nominal: torch.Tensor, eps: torch.Tensor, std: torch.Tensor, temperature: float) -> torch.Tensor:
    """[S] Williams et al. 2017 (Algorithm 2): lambda * sum_t u_t^T Sigma^-1 eps_t, with Sigma = diag(std^2).

    nominal u [H, A], perturbations eps [S, H, A], std [H, A] of the sampling noise.
    """
    return temperature * torch.einsum("ha,sha->s", nominal / std.square(), eps)


MPPI_FORMS = ("control-cost", "simplified")


class MPPI(_SamplingOptimizer):
    """Model predictive path integral control (Williams et al., ICRA 2017, Algorithm 2), iterated a few times per step."""

    def __init__(self, cfg: MPPIConfig, bounds: ActionBounds):
        super().__init__(cfg.horizon, cfg.samples, cfg.iterations, cfg.seed, cfg.device, bounds)
        if cfg.temperature <= 0:
            raise PlanningError(f"mppi.temperature must be > 0, got {cfg.temperature}")
        if cfg.noise_std <= 0:
            raise PlanningError(f"mppi.noise_std must be > 0, got {cfg.noise_std}")
        if cfg.form not in MPPI_FORMS:
            raise PlanningError(f"mppi.form must be one of {', '.join(MPPI_FORMS)}, got {cfg.form!r}")
        self.cfg = cfg

    def optimize(self, objective: Objective, init: torch.Tensor | None = None) -> PlanResult:
        cfg = self.cfg
        nominal = self.initial_mean(init)  # [H, A]
        std = cfg.noise_std * self.half_range.expand_as(nominal)  # [H, A]
        history: list[float] = []
        best = float("inf")
        for _ in range(self.iterations):
            cand = self.bounds.clip(nominal + self.noise(std))  # [S, H, A]
            cand[0] = nominal  # the zero perturbation: the nominal itself is always scored
            costs = _check_costs(objective(cand), self.samples)  # [S]
            # Perturbations after clipping, so the update is a convex combination of feasible sequences;
            # the control cost prices the same perturbations the update applies.
            eps = cand - nominal  # [S, H, A]
            total = costs + mppi_control_cost(nominal, eps, std, cfg.temperature) if cfg.form == "control-cost" else costs
            w = mppi_weights(total, cfg.temperature)  # [S]
            nominal = self.bounds.clip(nominal + torch.einsum("s,sha->ha", w, eps))
            best = float(costs.min())
            history.append(best)
        return PlanResult(nominal, best, history, self.samples * self.iterations)


def build_optimizer(cfg: CEMConfig | MPPIConfig, bounds: ActionBounds) -> CEM | MPPI:
    """The optimiser a config names."""
    if isinstance(cfg, CEMConfig):
        return CEM(cfg, bounds)
    if isinstance(cfg, MPPIConfig):
        return MPPI(cfg, bounds)
    raise PlanningError(f"unknown planner config {type(cfg).__name__}; use CEMConfig or MPPIConfig")
