"""The street roadside (rows that run on beyond the view), traffic lights, lane changes, and the checks of
impossible simulator settings."""

from __future__ import annotations

import numpy as np
import pytest

from drivewm.errors import ConfigError
from drivewm.sim import sim_preset


@pytest.mark.parametrize("key, value, words", [
    ("tree_spacing", -3.0, "tree_spacing"),
    ("parking_pitch", 2.0, "parking_pitch"),
    ("vehicle_density", 40.0, "vehicle_density"),
    ("pedestrian_density", 1000.0, "pedestrian_density"),
    ("parked_fraction", 1.5, "parked_fraction"),
    ("roadside", "forest", "roadside"),
    ("light_green", 0.0, "light_green"),
])
def test_impossible_settings_are_one_config_error_naming_the_key(key, value, words):
    with pytest.raises(ConfigError, match=f"SimConfig.{words}") as err:
        sim_preset("micro_street", **{key: value})
    assert "\n" not in str(err.value) and repr(value) in str(err.value)
