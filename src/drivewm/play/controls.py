"""Keys to driving actions: the ego's pedal and steering wheel, moved by key presses, clipped to the store's limits.

An action of the data contract is (acceleration m/s^2, front-wheel steering rad), applied from frame t to t + 1.
DIAMOND's play (eloialonso/diamond `src/game/keymap.py`) maps held keys to one of Atari's discrete actions per
frame; a terminal reports key presses, not held keys, and driving needs steering held through a curve, so here
each press moves a lever by one increment and advances one frame: the pedal (accelerate / brake) and the wheel
(left / right) stay where the last press left them, as a driver's foot and hands do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from drivewm.config import ConfigError
from drivewm.sim.config import SimConfig

# One frame each: the key changes a lever, then the world model steps. Arrows are the same keys.
STEER_KEYS = {"w": (1, 0), "s": (-1, 0), "a": (0, 1), "d": (0, -1), ".": (0, 0)}
ARROWS = {"up": "w", "down": "s", "left": "a", "right": "d"}
RESET, QUIT = "r", "q"
KEY_HELP = "w/up accelerate, s/down brake, a/left steer left, d/right steer right, . hold, r reset, q quit"
# What a run's store records of the simulator that wrote it and that moves the ego.
_EGO_SETTINGS = ("max_accel", "max_brake", "max_steer", "max_speed", "physics_dt")


def key_name(key: str) -> str | None:
    """The key of the key map a pressed key stands for ('up' -> 'w', 'W' -> 'w'), None when it has none."""
    key = ARROWS.get(key, key)
    key = key.lower() if len(key) == 1 else key
    return key if key in STEER_KEYS or key in (RESET, QUIT) else None


def parse_script(script: str) -> list[str]:
    """The keys of a replayed key string ("wwad.r"), each checked; an unknown one is a ConfigError naming it."""
    keys = []
    for i, ch in enumerate(script):
        name = key_name(ch)
        if name is None:
            raise ConfigError(f"script: unknown key {ch!r} at position {i}; keys: {KEY_HELP}")
        keys.append(name)
    return keys


def ego_sim_config(manifest: dict) -> SimConfig:
    """The simulator settings that limit and move the ego of a store: the action limits, speed cap and physics
    step of the simulator that wrote it (its manifest's generator settings), the simulator's defaults for a store
    of other data, and the store's frame rate."""
    generator = manifest.get("generator") or {}
    settings = (generator.get("settings") or {}) if generator.get("name") == "drivewm.sim" else {}
    known = {k: float(settings[k]) for k in _EGO_SETTINGS if k in settings}
    return dataclasses.replace(SimConfig(), hz=float(manifest["hz"]), **known)


@dataclass(kw_only=True)
class Controls:
    """The ego's levers: pedal (acceleration, m/s^2; negative brakes) and wheel (steering, rad; positive left)."""

    limits: SimConfig
    accel_step: float = 1.0
    """m/s^2 one accelerate / brake press moves the pedal."""
    steer_step: float = 0.1
    """rad one steer press turns the wheel."""
    accel: float = 0.0
    steer: float = 0.0

    def __post_init__(self) -> None:
        if not (self.accel_step > 0 and self.steer_step > 0):
            raise ConfigError(f"accel_step and steer_step must be > 0, got {self.accel_step}, {self.steer_step}")

    @property
    def action(self) -> tuple[float, float]:
        return self.accel, self.steer

    def clip(self, accel: float, steer: float) -> tuple[float, float]:
        """An action inside the limits: acceleration in [-max_brake, max_accel], steering in [-max_steer, max_steer]."""
        lim = self.limits
        return (min(max(float(accel), -lim.max_brake), lim.max_accel),
                min(max(float(steer), -lim.max_steer), lim.max_steer))

    def press(self, key: str) -> tuple[float, float]:
        """Move the levers by one press of a driving key; returns the action to apply."""
        pedal, wheel = STEER_KEYS[key]
        self.accel, self.steer = self.clip(self.accel + pedal * self.accel_step, self.steer + wheel * self.steer_step)
        return self.action

    def release(self) -> None:
        self.accel = self.steer = 0.0
