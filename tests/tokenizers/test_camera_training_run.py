"""A camera tokenizer trains end to end from a simulator store through `run_training`: windows carry the
camera frames, the perceptual network file named in the config is loaded, and a resumed run continues the
GAN schedule step for step (the step count is part of the checkpoint)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from drivewm.config import merge_into
from drivewm.data.config import DataConfig
from drivewm.registry import config_class
from drivewm.train.checkpoint import find_checkpoint
from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.run import run_training


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from drivewm.sim.generate import generate_store

    root = tmp_path_factory.mktemp("camera_store")
    generate_store(root / "data", preset="micro", episodes=2, frames=8, seed=0)  # camera 16 x 32
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU()))
    net.save(str(root / "features.pt"))
    return root


def _config(store, run_dir: str, steps: int) -> RunConfig:
    model = merge_into(config_class("camera_vqgan")(), [("test", dict(
        image_size=[16, 32], cnn=dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False),
        z_channels=8, embed_dim=4, quantizer=dict(codebook_size=16), perceptual_network=str(store / "features.pt"),
        gan=dict(disc_channels=4, disc_layers=2, disc_start=2)))])
    return RunConfig(
        model=model,
        data=DataConfig(path=str(store / "data"), past=2, future=0, keys=["camera"], val_fraction=0.0),
        train=TrainConfig(steps=steps, batch_size=2, lr=1e-3, warmup_steps=0, min_lr_ratio=1.0, log_every=1, ckpt_every=2, progress=False,
                          device="cpu"),
        run_dir=run_dir,
    )


def test_vqgan_trains_from_a_store_and_resumes_its_gan_schedule(store, tmp_path):
    run_training(_config(store, str(tmp_path / "full"), 4))
    logs = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["disc_factor"] for r in logs if "disc_factor" in r] == [0.0, 0.0, 1.0, 1.0]
    assert all(r["p_loss"] > 0 for r in logs if "p_loss" in r)  # the perceptual network was loaded

    # A constant learning rate, so the 2-step run's schedule is the 4-step run's first half.
    run_training(_config(store, str(tmp_path / "split"), 2))
    run_training(_config(store, str(tmp_path / "split"), 4), resume=True, allow_change=("train.steps",))
    full = load_file(str(find_checkpoint(tmp_path / "full", "latest") / "model.safetensors"))
    split = load_file(str(find_checkpoint(tmp_path / "split", "latest") / "model.safetensors"))
    assert int(full["global_step"]) == 4 and full.keys() == split.keys()
    for key in full:
        assert torch.equal(full[key], split[key]), key
