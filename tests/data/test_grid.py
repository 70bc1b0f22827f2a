"""A model's grid: a preset, a grid written out, or the store's; checked against the store before a run starts.
A world model reads its vocabulary and token grid from its tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.config import ConfigError
from drivewm.data.spec import (
    FROM_STORE,
    GRID_PRESETS,
    OCC3D_CLASSES,
    GridError,
    GridMismatchError,
    GridSpec,
    bind_model_grids,
    grid_preset,
    resolve_grid,
)
from drivewm.errors import DrivewmError
from drivewm.registry import build_model
from drivewm.train.checkpoint import build_model_from_sources
from drivewm.train.config import load_run_config

torch.set_num_threads(1)

USER_GRID = {"shape": [32, 32, 2], "voxel_size": 2.0}
TOKENIZER = {"name": "occ_vqvae", "grid": "micro", "class_dim": 2, "z_channels": 8,
             "cnn": {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention": False},
             "quantizer": {"kind": "vq", "codebook_size": 16}}


def test_a_grid_written_out_takes_the_presets_defaults():
    g = resolve_grid(USER_GRID)
    assert g.shape == (32, 32, 2) and g.voxel_size == 2.0
    assert g.lower == (-32.0, -32.0, -1.0)  # x and y centred on the ego, the presets' floor
    assert g.classes == OCC3D_CLASSES and g.free_id == 17
    own = resolve_grid({"shape": [4, 4, 1], "voxel_size": 0.5, "lower": [0, -1, 0], "classes": ["road", "car", "free"]})
    assert own.lower == (0.0, -1.0, 0.0) and own.free_id == 2 and own.upper == (2.0, 1.0, 0.5)


@pytest.mark.parametrize("name", list(GRID_PRESETS))
def test_a_preset_name_and_its_spec_written_out_are_the_same_grid(name):
    assert resolve_grid(name).difference(resolve_grid(grid_preset(name).to_dict())) is None


@pytest.mark.parametrize("value, match", [
    ("bogus", "'bogus' is no grid; name a preset"),
    (FROM_STORE, "from_store is the grid of the episode store"),
    ({"shape": [32, 32, 2]}, "needs 'voxel_size'"),
    ({"shape": [32, 32], "voxel_size": 2.0}, r"shape must be \[X, Y, Z\]"),
    ({"shape": [32, 32, 2], "voxel_size": 2.0, "extent": 64}, "unknown key 'extent'"),
    ({"shape": [32, 32, 2], "voxel_size": 2.0, "classes": ["road", "car"]}, "has no 'free'"),
])
def test_a_grid_that_is_none_is_one_line_naming_it(value, match):
    with pytest.raises(GridError, match=match) as e:
        resolve_grid(value, "model.grid")
    assert isinstance(e.value, DrivewmError) and "\n" not in str(e.value) and str(e.value).startswith("model.grid")


@pytest.mark.parametrize("change, what", [
    ({"voxel_size": 1.0}, "voxel size"),                 # same array shape, another voxel size
    ({"shape": [32, 32, 4]}, "shape"),
    ({"lower": [-30.0, -32.0, -1.0]}, "extent"),
    ({"classes": list(OCC3D_CLASSES[:-1]) + ["empty"], "free_id": 17}, "class table"),
])
def test_every_difference_from_the_store_grid_is_named_with_both_grids(change, what):
    store = resolve_grid(USER_GRID)
    model = {"name": "occ_vqvae", "grid": {**USER_GRID, **change}}
    with pytest.raises(GridMismatchError) as e:
        bind_model_grids(model, store, "data/mine")
    msg = str(e.value)
    assert f"({what} differs)" in msg and "model.grid is " in msg and "data/mine holds " + store.describe() in msg
    assert resolve_grid(model["grid"]).describe() in msg and "\n" not in msg
    bind_model_grids(model, store, "data/mine", compare=False)  # a LiDAR model's grid is a range: not compared


def test_from_store_is_bound_everywhere_in_a_config_and_recorded_written_out():
    store = resolve_grid(USER_GRID)
    world = {"name": "gpt_world", "tokenizer": dict(TOKENIZER, grid=FROM_STORE)}
    bind_model_grids(world, store, "data/mine")
    assert world["tokenizer"]["grid"] == store.to_dict()
    bind_model_grids(world, store, "data/mine")  # bound once, it is the store's grid: no mismatch
    with pytest.raises(GridMismatchError, match=r"model.tokenizer.grid is 32x32x4 voxels of 1.6 m"):
        bind_model_grids({"tokenizer": dict(TOKENIZER)}, store, "data/mine")


def test_an_occupancy_encoder_is_checked_on_its_input_shape():
    store = grid_preset("micro")
    bind_model_grids({"encoder": {"modality": "occ", "grid_shape": [32, 32, 4], "num_classes": 18}}, store, "s")
    bind_model_grids({"encoder": {"modality": "camera", "grid_shape": [64, 128, 3], "num_classes": 18}}, store, "s")
    with pytest.raises(GridMismatchError, match=r"model.encoder reads occupancy of 64x64x8 voxels"):
        bind_model_grids({"encoder": {"modality": "occ", "grid_shape": [64, 64, 8], "num_classes": 18}}, store, "s")


def test_a_tokenizer_on_a_grid_written_out_in_yaml_reads_that_grid(tmp_path):
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text("model:\n  name: occ_vqvae\n  grid:\n    shape: [32, 32, 2]\n    voxel_size: 2.0\n"
                        "  cnn: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention: false}\n")
    cfg = load_run_config(cfg_file)
    tok = build_model(cfg.model)
    assert tok.grid.shape == (32, 32, 2) and tok.token_shape == (16, 16)
    occ = torch.randint(0, 18, (2, 32, 32, 2))
    assert tok.decode(tok.encode(occ)).shape == (2, 18, 32, 32, 2)
    cfg = load_run_config(cfg_file, ["model.grid=micro"])  # a preset name replaces the mapping
    assert build_model(cfg.model).grid.shape == (32, 32, 4)
    with pytest.raises(ConfigError, match="unknown key 'model.gird'"):
        load_run_config(cfg_file, ["model.gird=micro"])


def test_a_new_run_binds_from_store_before_building(tmp_path):
    cfg = load_run_config(None, ["model.name=voxel_unet", f"model.grid={FROM_STORE}", "model.width=8", "model.levels=2"])
    store = resolve_grid(USER_GRID)
    model = build_model_from_sources(cfg.model, store, "data/mine")
    assert model.grid.difference(store) is None and cfg.model.grid == store.to_dict()
    cfg = load_run_config(None, ["model.name=voxel_unet", "model.grid=micro", "model.width=8", "model.levels=2"])
    with pytest.raises(GridMismatchError, match="the store data/mine holds 32x32x2 voxels of 2 m"):
        build_model_from_sources(cfg.model, store, "data/mine")


def test_a_world_model_reads_vocab_and_token_grid_from_its_tokenizer():
    cfg = load_run_config(None, ["model.name=gpt_world", "model.dim=16", "model.depth=1", "model.heads=2"])
    cfg.model.tokenizer = dict(TOKENIZER)
    assert cfg.model.vocab_size is None and cfg.model.token_shape is None
    world = build_model_from_sources(cfg.model)
    assert (world.vocab_size, world.token_shape) == (16, (16, 16))
    assert (cfg.model.vocab_size, cfg.model.token_shape) == (16, [16, 16])  # recorded with the run
    tokens = torch.randint(0, 16, (1, 3, 16, 16))
    assert torch.isfinite(world.loss_tokens(tokens, torch.zeros(1, 3, world.action_dim), None)["loss"])


def test_a_world_model_setting_another_vocab_is_refused_naming_both():
    cfg = load_run_config(None, ["model.name=gpt_world", "model.vocab_size=512", "model.dim=16", "model.depth=1",
                                 "model.heads=2"])
    cfg.model.tokenizer = dict(TOKENIZER)
    with pytest.raises(DrivewmError, match=r"has vocab_size=16, token_shape=\[16, 16\] but the world model is "
                                           r"configured for vocab_size=512, token_shape=\[16, 16\]"):
        build_model_from_sources(cfg.model)


def test_a_world_model_without_a_tokenizer_must_state_its_vocab():
    cfg = load_run_config(None, ["model.name=gpt_world", "model.dim=16", "model.depth=1", "model.heads=2"])
    with pytest.raises(DrivewmError, match="model.vocab_size and model.token_shape are unset"):
        build_model_from_sources(cfg.model)


def test_describe_names_shape_voxel_extent_and_classes():
    g = GridSpec(shape=(32, 32, 2), lower=(-32.0, -32.0, -1.0), voxel_size=2.0)
    assert g.describe() == "32x32x2 voxels of 2 m from (-32, -32, -1) m, 18 classes (free = 'free')"
    assert g.difference(GridSpec.from_dict(g.to_dict())) is None
    assert np.allclose(g.upper, (32.0, 32.0, 3.0))
