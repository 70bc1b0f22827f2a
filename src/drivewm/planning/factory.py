"""Build planners by name: CEM / MPPI through the simulator or a trained run, and the simple baselines.

A planning preset (a YAML file, or a packaged preset under drivewm/configs/planning/) fills `PlanConfig`; dotted overrides change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivewm.planning.baselines import ConstantVelocityPlanner, ExpertPlanner, RandomPlanner
from drivewm.planning.config import CEMConfig, MPPIConfig, PlanningError
from drivewm.planning.costs import CostWeights, EmbeddingGoalCost, ObservedSafety, OccupancyCost, SimulatorCost
from drivewm.planning.gpt_planner import ActionTokenPlanner
from drivewm.planning.learned import JepaPlanningModel, TokenPlanningModel
from drivewm.planning.mpc import RecedingHorizonPlanner
from drivewm.planning.optimizers import build_optimizer
from drivewm.planning.sim_model import SimulatorModel, bounds_of
from drivewm.sim.config import SimConfig

PLANNERS = ("cem", "mppi", "gpt", "expert", "constant-velocity", "random")


@dataclass(kw_only=True)
class PlanConfig:
    """A planning preset: optimiser settings, cost weights, how the simulator serves as a model."""

    cem: CEMConfig = field(default_factory=CEMConfig)
    """CEM settings (V-JEPA 2-AC's, scaled down for a CPU)."""
    mppi: MPPIConfig = field(default_factory=MPPIConfig)
    """MPPI settings (Williams et al. 2017)."""
    weights: CostWeights = field(default_factory=CostWeights)
    """Cost weights (collision, off-road, progress, comfort, embedding energy)."""
    sim_mode: str = "replay"
    """Simulator as the model: 'exact' (a clone per candidate) or 'replay' (traffic replayed once per scoring)."""
    context_frames: int = 2
    """Past frames a learned model sees."""
    shaping: bool = True
    """Embedding-space planning: add route progress and comfort to the L1 energy."""
    goal_every_step: bool = False
    """Embedding-space planning in closed loop: the goal is the expert's observation after each planned step
    (scored with weights.goal_l1_intermediate), not only the last one."""
    observed_safety_steps: int = 0
    """Embedding-space planning: score the first N planned steps for collision, clearance and off-road
    against the last observation held still (weights.collision / near / offroad; costs.ObservedSafety).
    0 = off: the planner sees obstacles only through the predicted embeddings."""
    observed_safety_agents: bool = False
    """With observed_safety_steps: take the tracked road users (PlanningObservation.agents) out of the held
    scene and move them at constant velocity instead, as NAVSIM's time-to-collision check does."""


def load_plan_config(path: str | None, overrides: list[str] | None = None) -> PlanConfig:
    """PlanConfig from a YAML preset plus dotted overrides (`cem.samples=128`); unknown keys are errors."""
    from drivewm.config import merge_into, read_yaml

    sources: list[tuple[str, Any]] = []
    if path:
        sources.append((str(path), read_yaml(path)))
    if overrides:
        sources.append(("overrides", list(overrides)))
    return merge_into(PlanConfig(), sources)


def load_planning_model(run_dir: str, cfg: PlanConfig, sim: SimConfig, device: str = "cpu") -> tuple[str, Any]:
    """('jepa' | 'token', planning model) for a trained run directory."""
    from drivewm.hub import from_pretrained
    from drivewm.registry import model_entry

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"RUN_DIR: no run directory {run_dir}")
    model = from_pretrained(run_dir, device)
    kind = model_entry(model.cfg.name).kind
    if kind == "jepa":
        return "jepa", JepaPlanningModel(model, cfg.context_frames, sim.hz, sim.max_speed)
    if kind == "world":
        ctx = max(cfg.context_frames, 1)
        return "token", TokenPlanningModel(model, ctx, sim.hz, sim.max_speed, seed=cfg.cem.seed)
    raise PlanningError(f"{run_dir}: a {kind} model ({model.cfg.name}) cannot plan; give a jepa_ac or a token world model run")


def build_planner(name: str, sim: SimConfig, cfg: PlanConfig, model: Any = None, model_kind: str = "sim",
                  label: str | None = None) -> Any:
    """A planner by name; CEM / MPPI plan through `model` (the simulator when None) with the matching cost; 'gpt'
    is a token world model run's own predicted actions (`gpt_planner.ActionTokenPlanner`)."""
    if name not in PLANNERS:
        raise PlanningError(f"unknown planner {name!r}; valid: {', '.join(PLANNERS)}")
    bounds = bounds_of(sim)
    horizon = cfg.cem.horizon if name != "mppi" else cfg.mppi.horizon
    if name == "expert":
        return ExpertPlanner(bounds, horizon)
    if name == "constant-velocity":
        return ConstantVelocityPlanner(bounds, horizon)
    if name == "random":
        return RandomPlanner(bounds, horizon, seed=cfg.cem.seed)
    if name == "gpt":  # DrivingGPT: the GPT's own next action tokens, no search
        if model_kind != "token" or not isinstance(model, TokenPlanningModel):
            raise PlanningError("planner 'gpt' plans with a gpt_world run with action tokens "
                                "(model.actions=drivinggpt or drivingworld); give its run directory")
        return ActionTokenPlanner(model.model, bounds, horizon, context_frames=max(cfg.context_frames, 1), hz=sim.hz,
                                  seed=cfg.cem.seed, name=label or "gpt")
    dt = 1.0 / sim.hz
    if model is None:
        model, model_kind = SimulatorModel(cfg.sim_mode), "sim"
    cost = {
        "sim": lambda: SimulatorCost(cfg.weights, dt),
        "jepa": lambda: EmbeddingGoalCost(cfg.weights, dt, shaping=cfg.shaping, safety=(
            ObservedSafety(sim.grid_spec, cfg.weights, cfg.observed_safety_steps, dt, cfg.observed_safety_agents)
            if cfg.observed_safety_steps else None)),
        "token": lambda: OccupancyCost(sim.grid_spec, cfg.weights, dt),
    }[model_kind]()
    opt = build_optimizer(cfg.cem if name == "cem" else cfg.mppi, bounds)
    return RecedingHorizonPlanner(model, opt, cost, label or f"{name}-{model_kind}")
