"""Pretrained directories (`drivewm.hub`): every registered model round-trips through save_pretrained /
from_pretrained bit for bit, a world model with its nested tokenizer included; loading is strict and names
every tensor that does not fit."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from drivewm.errors import CheckpointError
from drivewm.hub import config_to_dict, from_pretrained, save_pretrained
from drivewm.registry import build_model, registered_models

torch.set_num_threads(1)

# Registered defaults that are large on a CPU, made small (the round trip does not depend on size).
SMALL = {
    "occworld": dict(dim=16, depth=1, heads=2, dim_mult=[1], vocab_size=16, token_shape=[4, 4]),
    "occworld_published": dict(dim=16, depth=1, heads=2, dim_mult=[1], vocab_size=16, token_shape=[4, 4]),
    "maskgit_world": dict(dim=16, depth=1, heads=2, dim_mult=[1], vocab_size=16, token_shape=[4, 4]),
    "occ_vqvae": dict(grid="micro", class_dim=4, z_channels=8),
    "occ_vqvae_published": dict(grid="micro", expansion=4, ch=8, ch_mult=[1, 2], num_res_blocks=1,
                                attn_resolutions=[16], z_channels=8, n_e=32, e_dim=8),
    "gpt_world": dict(vocab_size=16, token_shape=[4, 4]),  # without a tokenizer, a world model states its tokens
    # Epona has no token fields to state instead: it always nests its (frozen) KL autoencoder.
    "epona_world": dict(tokenizer=dict(name="camera_kl_autoencoder", image_size=[16, 32], z_channels=4, embed_dim=2,
                                       cnn=dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)),
                        context_frames=2, dim=16, depth=1, heads=2, head_dim=16, head_depth=1, head_heads=2),
}


def _small_config(name: str):
    cfg = registered_models()[name].config_cls()
    return dataclasses.replace(cfg, **SMALL.get(name, {}))


def _micro_tokenizer_config() -> dict:
    from drivewm.tokenizers.occ import OccTokenizerConfig

    cfg = OccTokenizerConfig(grid="micro", class_dim=4, z_channels=16)
    cfg.cnn.channels, cfg.cnn.channel_mult, cfg.cnn.attention = 8, [1, 2, 2], False
    cfg.quantizer.codebook_size = 64
    return config_to_dict(cfg)


@pytest.mark.parametrize("name", sorted(registered_models()))
def test_every_registered_model_round_trips_bit_for_bit(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(_small_config(name))
    with torch.no_grad():  # weights away from their init, so a rebuilt-but-unloaded model would differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    metrics = {"OccWorld mIoU 3s (%)": 12.5}
    out = save_pretrained(model, tmp_path / "pre", metrics=metrics)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == name and config == config_to_dict(model.cfg)
    assert "| OccWorld mIoU 3s (%) | 12.5 |" in (out / "README.md").read_text()
    loaded = from_pretrained(out)
    assert type(loaded) is type(model) and loaded.cfg == model.cfg and not loaded.training
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_a_world_model_carries_its_tokenizer(tmp_path):
    from drivewm.dynamics import SpatioTemporalWorldConfig

    torch.manual_seed(0)
    cfg = SpatioTemporalWorldConfig(vocab_size=64, token_shape=[8, 8], dim=16, depth=1, heads=2, dim_mult=[1],
                                    tokenizer=_micro_tokenizer_config())
    model = build_model(cfg).eval()
    save_pretrained(model, tmp_path / "wm")
    loaded = from_pretrained(tmp_path / "wm")
    assert json.loads((tmp_path / "wm" / "config.json").read_text())["tokenizer"]["name"] == "occ_vqvae"
    occ = torch.randint(0, 18, (2, 3, 32, 32, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.decode(loaded.encode(occ)), model.decode(model.encode(occ)))
    assert not any(p.requires_grad for p in loaded.tokenizer.parameters())


def test_loading_is_strict_and_names_every_bad_tensor(tmp_path):
    torch.manual_seed(0)
    model = build_model(_small_config("toy_forecaster"))
    save_pretrained(model, tmp_path / "pre")
    weights = load_file(str(tmp_path / "pre" / "model.safetensors"))
    names = sorted(weights)
    del weights[names[0]]
    weights[names[1]] = torch.zeros(3)
    weights["extra.bias"] = torch.zeros(2)
    save_file(weights, str(tmp_path / "pre" / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        from_pretrained(tmp_path / "pre")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"missing tensors: {names[0]}" in msg and "unexpected tensors: extra.bias" in msg
    assert f"{names[1]}: file (3,) vs model" in msg


def test_bad_directories_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        from_pretrained(tmp_path / "nothing")
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="config.json: file missing"):
        from_pretrained(tmp_path / "pre")
    (tmp_path / "pre" / "config.json").write_text(json.dumps({"name": "no_such_model"}))
    with pytest.raises(CheckpointError, match="unknown model 'no_such_model'"):
        from_pretrained(tmp_path / "pre")
    with pytest.raises(TypeError, match="no config"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "lin")


def test_a_predictor_loads_without_the_run_its_encoder_came_from(tmp_path):
    import shutil

    from drivewm.config import to_yaml
    from drivewm.train.config import RunConfig
    from drivewm.jepa.ac import JepaACConfig
    from drivewm.train.checkpoint import CheckpointManager, build_model_from_sources

    torch.manual_seed(0)
    src = build_model(_small_config("jepa_bev"))
    CheckpointManager(tmp_path / "jepa").save(1, config_yaml=to_yaml(RunConfig(model=src.cfg)),
                                             model_state=src.state_dict(), optim_state=None, state={"step": 1})
    ac = build_model_from_sources(JepaACConfig(encoder_run=str(tmp_path / "jepa"), width=32, depth=1, heads=2))
    save_pretrained(ac, tmp_path / "ac")
    shutil.rmtree(tmp_path / "jepa")
    loaded = from_pretrained(tmp_path / "ac")
    teacher = getattr(src, "target_encoder", None) or src.encoder
    for k, v in teacher.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[k], v)
    assert loaded.cfg.encoder == teacher.cfg
