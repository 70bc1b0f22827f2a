"""Planning with world models: CEM (V-JEPA 2-AC, arXiv 2506.09985) and MPPI (Williams et al. 2017) in
embedding space (JEPA) and token/occupancy space (token world models), or through the simulator itself;
open-loop (`evaluate_open_loop`) and closed-loop (`drive_closed_loop`) evaluation.

Imports are lazy so `import drivewm.planning` stays light; the names below are the public API.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

WORLD_MODEL_GYM_ID = "drivewm/WorldModel-v0"
"""`gymnasium.make(WORLD_MODEL_GYM_ID, model=TokenPlanningModel(...), context=obs)` builds a `WorldModelEnv`."""
if WORLD_MODEL_GYM_ID not in gymnasium.registry:
    gymnasium.register(id=WORLD_MODEL_GYM_ID, entry_point="drivewm.planning.env:WorldModelEnv")

_EXPORTS = {
    "ActionBounds": "drivewm.planning.config",
    "CEMConfig": "drivewm.planning.config",
    "MPPIConfig": "drivewm.planning.config",
    "PlanningError": "drivewm.planning.config",
    "CEM": "drivewm.planning.optimizers",
    "MPPI": "drivewm.planning.optimizers",
    "mppi_weights": "drivewm.planning.optimizers",
    "Rollout": "drivewm.planning.mpc",
    "RecedingHorizonPlanner": "drivewm.planning.mpc",
    "PlanningObservation": "drivewm.planning.observation",
    "CostWeights": "drivewm.planning.costs",
    "EmbeddingGoal": "drivewm.planning.costs",
    "EmbeddingGoalCost": "drivewm.planning.costs",
    "OccupancyCost": "drivewm.planning.costs",
    "SimulatorCost": "drivewm.planning.costs",
    "SimulatorModel": "drivewm.planning.sim_model",
    "JepaPlanningModel": "drivewm.planning.learned",
    "TokenPlanningModel": "drivewm.planning.learned",
    "ActionTokenPlanner": "drivewm.planning.gpt_planner",
    "WorldModelEnv": "drivewm.planning.env",
    "PlanConfig": "drivewm.planning.factory",
    "build_planner": "drivewm.planning.factory",
    "load_plan_config": "drivewm.planning.factory",
    "load_planning_model": "drivewm.planning.factory",
    "evaluate_open_loop": "drivewm.planning.open_loop",
    "simulated_episodes": "drivewm.planning.open_loop",
    "store_episodes": "drivewm.planning.open_loop",
    "drive_closed_loop": "drivewm.planning.closed_loop",
    "save_drive_gif": "drivewm.planning.gif",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drivewm.planning' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
