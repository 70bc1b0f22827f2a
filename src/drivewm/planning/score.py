"""Closed-loop driving statistics and a combined score in the spirit of NAVSIM's PDMS.

NAVSIM (Dauner et al., arXiv 2406.15349) scores a drive as
``PDMS = NC * DAC * (5 * EP + 5 * TTC + 2 * C) / 12``: multiplicative penalties for collisions (NC)
and leaving the drivable area (DAC), and a weighted mean of ego progress (EP), time-to-collision
(TTC) and comfort (C). drivewm's closed-loop score keeps that shape on whole simulated drives:

- NC  = 1 without a collision, else 0;
- DAC = the fraction of steps with the ego footprint on the road (NAVSIM: 0/1 per 4 s clip);
- EP  = min(1, route progress / the expert's route progress from the same start state);
- TTC = the fraction of steps with no other road user within 1.5 s at the current speed
        (a straight-line stand-in for NAVSIM's forward-simulated TTC), 1 when not reported;
- C   = 1 when the largest |jerk| <= 4.13 m/s^3 and |steering rate| <= 0.95 rad/s (NAVSIM's jerk
        and yaw-rate bounds), else 0.

``score = NC * DAC * (5 * EP + 5 * TTC + 2 * C) / 12``, in [0, 1], averaged over seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MAX_JERK = 4.13  # m/s^3, NAVSIM comfort bound
MAX_STEER_RATE = 0.95  # rad/s, NAVSIM yaw-rate bound (applied to the steering angle rate)


@dataclass
class DriveStats:
    """Statistics of one closed-loop drive."""

    planner: str
    seed: int
    steps: int
    seconds: float
    distance_m: float
    route_completion: float
    """Fraction of the route driven, in [0, 1]."""
    progress_m: float
    """Metres of progress along the route."""
    collisions: int
    offroad_steps: int
    ttc_violations: int
    max_jerk: float
    max_steer_rate: float
    plan_time_s: float
    """Mean wall time of one action choice (one replanning step)."""
    ep: float = float("nan")
    score: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def comfort_extremes(actions: np.ndarray, dt: float) -> tuple[float, float]:
    """Largest |jerk| (m/s^3) and |steering rate| (rad/s) of executed actions [T, 2]."""
    if len(actions) < 2:
        return 0.0, 0.0
    d = np.abs(np.diff(actions, axis=0)) / dt
    return float(d[:, 0].max()), float(d[:, 1].max())


def pdm_score(stats: DriveStats, expert_progress_m: float) -> DriveStats:
    """Fill in EP and the combined score of a drive, against the expert's progress from the same start."""
    nc = 1.0 if stats.collisions == 0 else 0.0
    dac = 1.0 - stats.offroad_steps / max(stats.steps, 1)
    ep = min(1.0, max(0.0, stats.progress_m) / expert_progress_m) if expert_progress_m > 1e-6 else 1.0
    ttc = 1.0 - stats.ttc_violations / max(stats.steps, 1)
    comfort = 1.0 if (stats.max_jerk <= MAX_JERK and stats.max_steer_rate <= MAX_STEER_RATE) else 0.0
    stats.ep = ep
    stats.score = nc * dac * (5 * ep + 5 * ttc + 2 * comfort) / 12
    return stats


def summarize(drives: list[DriveStats]) -> dict:
    """Aggregate drives of one planner: means, collisions per km, off-road rate, the combined score."""
    if not drives:
        raise ValueError("summarize: no drives given")
    km = sum(d.distance_m for d in drives) / 1000.0
    steps = sum(d.steps for d in drives)
    return {
        "planner": drives[0].planner,
        "drives": len(drives),
        "route_completion": float(np.mean([d.route_completion for d in drives])),
        "progress_m": float(np.mean([d.progress_m for d in drives])),
        "distance_km": km,
        "collisions": int(sum(d.collisions for d in drives)),
        "collision_rate": float(np.mean([d.collisions > 0 for d in drives])),
        "collisions_per_km": float(sum(d.collisions for d in drives) / km) if km > 0 else float("nan"),
        "offroad_rate": float(sum(d.offroad_steps for d in drives) / max(steps, 1)),
        "max_jerk": float(np.mean([d.max_jerk for d in drives])),
        "max_steer_rate": float(np.mean([d.max_steer_rate for d in drives])),
        "ep": float(np.mean([d.ep for d in drives])),
        "score": float(np.mean([d.score for d in drives])),
        "plan_time_s": float(np.mean([d.plan_time_s for d in drives])),
    }
