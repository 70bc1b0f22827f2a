"""Small untrained models of the micro configs (seeded) for the planning tests."""

import numpy as np
import pytest
import torch

from drivewm.config import merge_into, read_yaml
from drivewm.planning.observation import PlanningObservation
from drivewm.registry import build_model, config_class


def build_from_yaml(path: str, **model_overrides):
    model_cfg = read_yaml(path)["model"]
    cfg = merge_into(config_class(model_cfg["name"])(), [(path, model_cfg), ("test", model_overrides)])
    return build_model(cfg)


@pytest.fixture(scope="session")
def micro_jepa():
    torch.manual_seed(0)
    from drivewm.jepa.ac import JepaAC, JepaACConfig
    from drivewm.jepa.encoders import EncoderConfig

    enc = EncoderConfig(grid_shape=[32, 32, 4], patch=8, dim=16, depth=1, heads=2)
    return JepaAC(JepaACConfig(encoder=enc, width=16, depth=1, heads=2)).eval()


@pytest.fixture(scope="session")
def micro_token_world():
    torch.manual_seed(0)
    tok = build_from_yaml("tokenizer/occ_micro.yaml")
    world = build_from_yaml("world/gpt_tiny.yaml", tokenizer_run="", vocab_size=64, token_shape=[8, 8],
                            dim=32, depth=1, heads=2, warp_prior=False)
    world.tokenizer = tok.eval().requires_grad_(False)
    return world.eval()


@pytest.fixture
def micro_obs():
    rng = np.random.default_rng(0)
    occ = np.full((2, 32, 32, 4), 17, np.uint8)
    occ[:, :, :, 0] = 11  # road everywhere
    occ[:, 20:23, 14:17, 1] = rng.integers(1, 11)  # one obstacle ahead
    poses = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]], np.float32)
    acts = np.zeros((2, 2), np.float32)
    return PlanningObservation(occ=occ, ego_pose=poses, action=acts, speed=6.0,
                               route=np.array([[0.0, 0.0], [40.0, 0.0]], np.float32))
