import math

from drivewm.demo.pipeline import forecast_headline

BASE = {"copy_last": 52.0, "ego_warp_copy_last_border": 59.0, "constant_velocity_agents": 62.5}
BASE_DYN = {"copy_last": 10.0, "ego_warp_copy_last_border": 12.0, "constant_velocity_agents": 24.0}


def test_headline_names_the_winner_the_best_baseline_and_the_relative_gain():
    text = forecast_headline(BASE, {"voxel_unet (a)": 68.75, "occworld (b)": 60.0}, BASE_DYN,
                             {"voxel_unet (a)": 20.0, "occworld (b)": 5.0})
    assert text.startswith("voxel_unet (a) beats all 3 baselines on mIoU at 3 s: 68.8, +10.0 % against the best of "
                           "them, constant_velocity_agents (62.5)")
    assert "occworld (b) (60.0, -4.0 %) did not within this budget" in text
    assert text.endswith("voxel_unet (a) 20.0 against the best baseline there, constant_velocity_agents (24.0)")


def test_headline_says_when_no_model_wins_and_by_how_much_the_best_trails():
    text = forecast_headline(BASE, {"occworld (b)": 56.25}, BASE_DYN, {"occworld (b)": math.nan})
    assert text == ("no world model beats the baselines on mIoU at 3 s within this budget: the best of them, "
                    "constant_velocity_agents, scores 62.5; the best model, occworld (b), 56.2, -10.0 % (train longer: "
                    "--minutes)")


def test_headline_lists_every_model_that_wins():
    text = forecast_headline(BASE, {"a": 65.625, "b": 75.0}, {}, {})
    assert text == ("b beats all 3 baselines on mIoU at 3 s: 75.0, +20.0 % against the best of them, "
                    "constant_velocity_agents (62.5); so do a (65.6, +5.0 %)")
