"""The tokenizer presets load as RunConfigs, and the Occ3D preset matches OccWorld's tokenizer."""

import pytest

from drivewm.config import preset_path
from drivewm.train.config import load_run_config
from drivewm.registry import build_model

CONFIGS = sorted(preset_path("tokenizer").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_preset_loads_as_single_frame_run(path):
    cfg = load_run_config(path)
    expected_key = {"occ_vqvae": "occ", "occ_vqvae_published": "occ", "lidar_vqvae": "lidar"}.get(cfg.model.name, "camera")
    assert cfg.data.past == 1 or cfg.model.name == "camera_temporal_vq" or cfg.model.grid == "occ3d"
    assert cfg.data.future == 0 and cfg.data.keys[0] == expected_key
    assert set(cfg.data.keys[1:]) <= {"lidar_origin"}  # a LiDAR preset may read each sweep's sensor origin
    build_model(cfg.model)


def test_occ3d_preset_is_occworlds_tokenizer():
    cfg = load_run_config("tokenizer/occ_occ3d.yaml")
    m = build_model(cfg.model)
    assert m.token_shape == (50, 50) and m.vocab_size == 512
    assert m.class_embed.weight.shape == (18, 8)
    assert m.quantizer.dim == 128 and cfg.model.quantizer.beta == 1.0
    assert (cfg.model.ce_weight, cfg.model.lovasz_weight, cfg.model.vq_weight) == (10.0, 1.0, 1.0)
    assert cfg.train.lr == 1e-3 and cfg.train.weight_decay == 0.01 and cfg.train.grad_clip == 35.0
