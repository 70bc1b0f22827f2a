"""Scores on a sparse class table (present-class mIoU, absent share) and the downsampling that keeps objects."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from drivewm.config import preset_path
from drivewm.evaluation.tables import occupancy_table_rows
from drivewm.metrics import OccupancyForecastMetric
from drivewm.registry import build_model
from drivewm.tokenizers.bev_cnn import largest_downsampling
from drivewm.tokenizers.evaluate import lost_classes
from drivewm.train.config import load_run_config

torch.set_num_threads(1)


def scored(protocol: str) -> dict:
    """4 classes (free = 3): class 0 predicted perfectly, class 1 half right, class 2 absent from the ground truth."""
    gt = torch.tensor([0, 0, 1, 1, 3, 3, 3, 3]).view(1, 1, 8)
    pred = torch.tensor([0, 0, 1, 3, 3, 3, 3, 3]).view(1, 1, 8)
    m = OccupancyForecastMetric(num_classes=4, free_id=3, protocol=protocol, report_steps=(1,), hz=2.0)
    m.update(pred, gt, torch.ones_like(gt, dtype=torch.bool) if protocol == "occ3d" else None)
    return m.compute()


@pytest.mark.parametrize("protocol", ["occworld", "occ3d"])
def test_present_class_miou_and_absent_share_beside_the_unchanged_protocol_miou(protocol):
    r = scored(protocol)
    assert math.isclose(r["miou_present"]["0.5s"], 100 * (1.0 + 0.5) / 2)
    assert math.isclose(r["classes_absent"]["0.5s"], 100 / 3)
    # The protocol's own mIoU: OccWorld scores the absent class 100, Occ3D leaves it out (NaN-mean).
    protocol_miou = (1.0 + 0.5 + 1.0) / 3 if protocol == "occworld" else (1.0 + 0.5) / 2
    assert math.isclose(r["miou"]["0.5s"], 100 * protocol_miou)
    assert r["miou_present"]["avg"] == r["miou_present"]["0.5s"]


def test_the_forecast_table_shows_them_at_the_last_horizon():
    r = scored("occworld")
    old = {k: v for k, v in r.items() if k not in ("miou_present", "classes_absent")}  # a result from before them
    columns, rows = occupancy_table_rows({"copy_last": r, "old result": old})
    assert columns[-2:] == ["mIoU present 0.5s", "classes absent 0.5s (%)"]
    assert rows[0][-2:] == [75.0, 33.33] and rows[1][-2:] == ["-", "-"]


@pytest.mark.parametrize("voxel, factor", [(0.4, 8), (0.8, 4), (1.6, 2), (2.0, 2), (3.0, 1), (4.0, 1)])
def test_downsampling_rule_keeps_a_car_in_a_token_cell(voxel, factor):
    assert largest_downsampling(voxel) == factor
    assert factor * voxel <= 4.5 < 2 * factor * voxel


@pytest.mark.parametrize("path", sorted(p for p in preset_path("tokenizer").glob("*.yaml") if "grid:" in p.read_text()),
                         ids=lambda p: p.stem)  # the voxel tokenizers (a camera tokenizer has no grid)
def test_tokenizer_presets_follow_the_rule_or_say_why_not(path):
    cfg = load_run_config(path)
    tok = build_model(cfg.model)
    if tok.grid.shape[0] // tok.token_shape[0] > largest_downsampling(tok.grid.voxel_size):
        assert "wrong for results" in path.read_text()  # the smoke-test preset says it loses cars
    else:
        assert "token cells" in path.read_text()


def test_a_class_present_but_lost_is_named_in_a_warning(caplog):
    cfg = load_run_config("tokenizer/occ_micro.yaml")
    tok = build_model(cfg.model)
    per_class = {"car": 0.4, "manmade": 0.0, "sidewalk": 80.0, "bus": 100.0}
    voxels = {"car": 120, "sidewalk": 4000}  # manmade is absent from the data: not lost, bus is not present either
    with caplog.at_level(logging.WARNING, logger="drivewm"):
        assert lost_classes(per_class, voxels, tok) == ["car"]
    (record,) = caplog.records
    msg = record.getMessage()
    assert "loses class 'car'" in msg and "120 voxels" in msg and "4x downsampling makes a token cell 6.4 m" in msg
    assert "takes at most 2x" in msg
