"""Every planning preset loads into PlanConfig (a mistyped key is an error), and holds what it says."""

import pytest

from drivewm.config import preset_path
from drivewm.planning.factory import load_plan_config

PRESETS = sorted(preset_path("planning").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_planning_presets_load(path):
    cfg = load_plan_config(str(path))
    assert cfg.cem.horizon >= 1 and cfg.cem.elites <= cfg.cem.samples


def test_jepa_preset_scores_every_step_with_light_shaping():
    cfg = load_plan_config("planning/jepa_tiny.yaml")
    assert cfg.goal_every_step and cfg.shaping
    assert cfg.weights.goal_l1_intermediate == 1.0 and cfg.weights.progress == 0.02
    with pytest.raises(Exception, match="goal_every_stp"):
        load_plan_config(None, ["goal_every_stp=true"])
