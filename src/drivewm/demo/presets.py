"""Demo presets: how much data, which configs and how many steps, for a 10-minute budget.

Step counts are for the default budget (`--minutes 10`) on the 2-core reference machine; a
different budget scales every training stage's steps in proportion (at least 2 steps each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivewm.errors import DrivewmError


@dataclass(kw_only=True)
class DemoPreset:
    sim: str
    """Simulator / grid preset of the generated data."""
    episodes: int
    frames: int
    tokenizer: str
    """Tokenizer config (relative to the configs directory)."""
    steps: dict[str, int]
    """Training steps per stage at the 10-minute budget."""
    overrides: dict[str, list[str]] = field(default_factory=dict)
    """Extra config overrides per stage group ('world', 'jepa', ...) or per stage name ('world_gpt')."""
    eval_windows: int = 24
    """Validation windows scored in the forecast table."""
    plan_seeds: list[int] = field(default_factory=lambda: [101, 102])
    drive_seconds: float = 12.0
    # Every preset trains the same model configs; the grid-specific sizes come in through `overrides`.
    worlds: dict[str, str] = field(default_factory=lambda: {
        "world_gpt": "world/gpt_tiny.yaml", "world_occworld": "world/occworld_tiny.yaml",
        "world_maskgit": "world/maskgit_tiny.yaml"})
    """Stage name -> token world-model config (trained on the demo's tokenizer)."""
    direct: dict[str, str] = field(default_factory=lambda: {"world_voxel_unet": "world/voxel_unet_tiny.yaml"})
    """Stage name -> config of a world model without tokens (the direct voxel forecaster, the learned reference)."""
    jepa: str = "jepa/jepa_bev_ema.yaml"
    jepa_ac: str = "jepa/jepa_ac.yaml"


# One token world model (OccWorld, the best of them on these grids) beside the direct voxel forecaster keeps
# "tokens or not" in one table; the time the GPT and MaskGIT stages took goes to the direct model.
ONE_TOKEN_MODEL = {"world_occworld": "world/occworld_tiny.yaml"}

PRESETS: dict[str, DemoPreset] = {
    "tiny": DemoPreset(
        sim="tiny",
        episodes=16,
        frames=32,
        tokenizer="tokenizer/occ_tiny.yaml",
        # Idle 2-core rates: tokenizer 1.7 steps/s, OccWorld 0.69, voxel U-Net 1.7, JEPA 7.5, V-JEPA 2-AC 6;
        # forecast + planning + report ~80 s: about 8 minutes of stages, 9.6 with the checkpoint, validation and
        # tokenizing overhead the three-token-model demo showed (its 10-minute estimate ran 12-13).
        steps={"tokenizer": 200, "world_occworld": 60, "world_voxel_unet": 200, "jepa": 150, "jepa_ac": 150},
        worlds=dict(ONE_TOKEN_MODEL),
        eval_windows=16,
    ),
    "micro": DemoPreset(
        sim="micro",
        episodes=4,
        frames=16,
        tokenizer="tokenizer/occ_micro.yaml",
        steps={"tokenizer": 20, "world_occworld": 10, "world_voxel_unet": 10, "jepa": 10, "jepa_ac": 10},
        worlds=dict(ONE_TOKEN_MODEL),
        overrides={
            "world": ["model.dim=32", "train.batch_size=4"],
            "direct": ["model.grid=micro", "model.width=16", "train.batch_size=4"],
            "jepa": ["model.encoder.grid_shape=[32,32,4]", "model.encoder.dim=32", "train.batch_size=4"],
            "jepa_ac": ["model.width=32", "train.batch_size=4"],
        },
        eval_windows=4,
        plan_seeds=[101],
        drive_seconds=3.0,
    ),
}


def demo_preset(name: str) -> DemoPreset:
    if name not in PRESETS:
        raise DrivewmError(f"--preset: unknown demo preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]
