"""Ego planning scored beside the occupancy forecast, for world models that also predict the ego's path.

A forecaster plans when it has `forecast_plan(context, horizon, generator=...) -> (occupancy, waypoints
[B, H, 2])` (OccWorld as published, `occworld_published`); the evaluation loop then takes both from that one
call. Waypoints follow OccWorld's evaluation (wzzheng/OccWorld `model/TransVQVAE.py`,
`autoreg_for_stp3_metric`, commit 1ee7f77): the cumulative sum of per-step displacements (dx, dy), each
step in the ego frame of the frame it leaves, the truth made the same way from the logged poses. Beside
the planners, a constant-velocity row repeats the last observed step.

Scores: `drivewm.metrics.PlanningMetric` (ST-P3 / UniAD collision rule) per step: L2 (m) and, when the
windows carry `agents`, the collision rate (%) against the future frames' boxes moved into the current
frame. Both conventions are kept under their names: `uniad` = the value at the step (OccWorld's
published 0.43 / 1.08 / 1.99 m are these, per its own evaluation logs), `stp3` = the mean up to it.
"""

from __future__ import annotations

import torch

from drivewm.conditions import relative_motion
from drivewm.geometry import ego_to_world
from drivewm.metrics import PlanningMetric

CONSTANT_VELOCITY = "constant_velocity"


def true_steps(batch: dict[str, torch.Tensor], first: int, horizon: int) -> torch.Tensor:
    """Logged steps [B, H, 2]: (dx, dy) of frame t+1 in frame t for t = first .. first + horizon - 1."""
    steps = relative_motion(batch["ego_pose"].float())[..., :2]
    if steps.shape[1] < first + horizon + 1:
        raise ValueError(f"windows of {steps.shape[1]} frames have no {horizon} steps after frame {first}")
    return steps[:, first : first + horizon]


def constant_velocity_plan(context: dict[str, torch.Tensor], past: int, horizon: int) -> torch.Tensor:
    """Waypoints [B, H, 2] of the last observed step (frame past-2 -> past-1) repeated."""
    if past < 2:
        raise ValueError("a constant-velocity plan needs two observed frames (past >= 2)")
    last = true_steps(context, past - 2, 1)  # [B, 1, 2]
    return last.expand(-1, horizon, -1).cumsum(1)


def future_boxes(batch: dict[str, torch.Tensor], past: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Road users of the future frames as boxes [B, H, K, 5] (x, y, length, width, yaw) in the current frame's
    ego frame (each frame's `agents` moved by its `rel_pose`), with their validity [B, H, K]."""
    agents = batch["agents"][:, past : past + horizon].float()  # [B, H, K, 8] in each frame's ego frame
    pose = batch["rel_pose"][:, past : past + horizon, None].float()  # [B, H, 1, 3] in the current frame
    xy = ego_to_world(agents[..., :2], pose)
    yaw = agents[..., 6] + pose[..., 2]
    boxes = torch.stack([xy[..., 0], xy[..., 1], agents[..., 3], agents[..., 4], yaw], -1)
    return boxes, batch["agents_valid"][:, past : past + horizon].bool()


class PlanScoring:
    """Truth and metric of the ego plans in one evaluation (`evaluate_forecasters(..., planning=...)`)."""

    def __init__(self, hz: float = 2.0) -> None:
        self.hz = hz

    def metric(self) -> PlanningMetric:
        return PlanningMetric(hz=self.hz)

    def truth(self, batch: dict[str, torch.Tensor], past: int, horizon: int) -> dict[str, torch.Tensor]:
        if "ego_pose" not in batch:
            raise KeyError("planning scores need 'ego_pose' in the batches (add it to data.keys)")
        truth = {"waypoints": true_steps(batch, past - 1, horizon).cumsum(1)}
        if "agents" in batch and "rel_pose" in batch:
            truth["boxes"], truth["valid"] = future_boxes(batch, past, horizon)
        return truth

    def update(self, metric: PlanningMetric, name: str, waypoints: torch.Tensor, truth: dict) -> None:
        if waypoints.shape != truth["waypoints"].shape:
            raise ValueError(f"{name}: plan of shape {tuple(waypoints.shape)}, the logged path has "
                             f"{tuple(truth['waypoints'].shape)}")
        metric.update(waypoints.float(), truth["waypoints"], obstacles=truth.get("boxes"),
                      obstacle_valid=truth.get("valid"))


def plan_table_rows(plans: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of the planning table: L2 (m) at each reported second, at the step (UniAD's and
    OccWorld's reported convention) and averaged up to it (ST-P3's), then the collision rate (%) at the step."""
    first = next(iter(plans.values()))
    secs = [s for s in first["l2_uniad"] if s != "avg"]
    columns = (["planner"] + [f"L2 {s} (at step)" for s in secs] + [f"L2 {s} (mean to step)" for s in secs])
    with_coll = any(r["collision_uniad"] and r["collision_per_step"][0] == r["collision_per_step"][0]
                    for r in plans.values())
    if with_coll:
        columns += [f"collision {s} (at step, %)" for s in secs]
    rows = []
    for name, r in plans.items():
        row = [name] + [round(r["l2_uniad"][s], 3) for s in secs] + [round(r["l2_stp3"][s], 3) for s in secs]
        if with_coll:
            row += [round(r["collision_uniad"][s], 2) for s in secs]
        rows.append(row)
    return columns, rows
