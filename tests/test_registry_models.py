"""Tests generated from the model registry (timm style): every registered model, built from a small config,
trains one step on a synthetic batch of the data contract (finite loss, a finite gradient for every trainable
parameter) and survives a hub save/load round trip bit for bit.

A newly registered model fails here until SMALL gets an entry for it."""

from __future__ import annotations

import pytest
import torch

from drivewm.config import merge_into
from drivewm.registry import build_model, config_class, registered_models

MICRO_GRID = (32, 32, 4)  # grid_preset("micro")
FRAMES = 4  # window length of the synthetic batches
TOKENS, VOCAB = (4, 4), 16  # token grid and vocabulary of the token world models (batches carry token ids)

# Small config overrides per registered model (nested dicts for nested configs): CPU-sized in milliseconds.
_WORLD = dict(tokenizer_run="", vocab_size=VOCAB, token_shape=list(TOKENS), dim=16, depth=1, heads=2, max_frames=FRAMES)
_ENCODER = dict(grid_shape=list(MICRO_GRID), patch=8, dim=16, depth=1, heads=2, pillar_dim=8, class_dim=4)
_CNN = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)
CAMERA = (16, 32)  # image size of the synthetic camera frames
_CAMERA = dict(image_size=list(CAMERA), cnn=_CNN, gan=dict(disc_channels=4, disc_layers=2))
SMALL: dict[str, dict] = {
    "toy_forecaster": dict(dim=4, past=3, hidden=16),
    "occ_vqvae": dict(grid="micro", class_dim=4, z_channels=8, cnn=_CNN, quantizer=dict(codebook_size=32)),
    "occ_vqvae_published": dict(grid="micro", expansion=4, ch=8, ch_mult=[1, 2], num_res_blocks=1,
                                attn_resolutions=[16], z_channels=8, n_e=32, e_dim=8),
    "lidar_vqvae": dict(grid="micro", point_channels=8, z_channels=8, cnn=_CNN, quantizer=dict(codebook_size=32),
                        rays_per_sweep=32, samples_per_ray=8),
    "gpt_world": _WORLD,
    "occworld": dict(_WORLD, dim_mult=[1, 2]),
    "occworld_published": dict(_WORLD, dim_mult=[1, 2], pose_layers=1),
    "maskgit_world": dict(_WORLD, dim_mult=[1, 2], steps=2),
    "voxel_unet": dict(grid="micro", width=8, levels=2, observed=2, max_horizon=2),
    "diamond": dict(image_size=list(CAMERA), conditioning_frames=2, cond_channels=8, depths=[1, 1], channels=[4, 8]),
    "diamond_bev": dict(grid="micro", conditioning_frames=2, cond_channels=8, depths=[1, 1], channels=[4, 8]),
    "jepa_bev": dict(encoder=_ENCODER, predictor_width=16, predictor_depth=1, predictor_heads=2, min_keep=2),
    "jepa_ac": dict(encoder=_ENCODER, width=16, depth=1, heads=2, rollout_steps=1),
    "lejepa": dict(encoder=_ENCODER, global_views=2, local_views=2, proj_hidden=16, proj_dim=8, num_slices=16),
    "adl_jepa": dict(encoder=dict(grid_shape=list(MICRO_GRID), channels=[4, 8, 8, 8], blocks=1, out_channels=8)),
    "occupancy_mae": dict(encoder=dict(grid_shape=list(MICRO_GRID), channels=[4, 8, 8, 8], blocks=1, out_channels=8),
                          decoder_channels=[8, 4]),
    "mae_bev": dict(encoder=_ENCODER, decoder_width=16, decoder_depth=1, decoder_heads=2),
    "contrastive_bev": dict(encoder=_ENCODER, proj_dim=16),
    "camera_vqgan": dict(_CAMERA, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=16)),
    "camera_temporal_vq": dict(_CAMERA, z_channels=8, embed_dim=4, heads=2, quantizer=dict(codebook_size=16)),
    "camera_kl_autoencoder": dict(_CAMERA, z_channels=4, embed_dim=2),
    "vjepa_camera": dict(image_size=list(CAMERA), frames=FRAMES, patch=4, dim=16, depth=1, heads=2, predictor_width=16,
                         predictor_depth=1, predictor_heads=2),
    "epona_world": dict(tokenizer=dict(_CAMERA, name="camera_kl_autoencoder", z_channels=4, embed_dim=2), context_frames=2,
                        forward_iter=2, dim=16, depth=1, heads=2, head_dim=16, head_depth=1, head_heads=2, sampling_steps=2),
    "camera_vqvae2": dict(image_size=list(CAMERA), bottom=_CNN, top=dict(_CNN, channel_mult=[1, 1]), hidden_channels=8,
                          embed_dim=4, top_quantizer=dict(codebook_size=16), bottom_quantizer=dict(codebook_size=16)),
}

NAMES = sorted(registered_models())


def small_model(name: str) -> torch.nn.Module:
    assert name in SMALL, f"registered model {name!r} has no small config in SMALL: add one"
    torch.manual_seed(0)
    return build_model(merge_into(config_class(name)(), [("SMALL", SMALL[name])]))


def synthetic_batch(name: str, model: torch.nn.Module, batch: int = 2) -> dict[str, torch.Tensor]:
    """A seeded batch with the keys of the data contract (models read the ones they need)."""
    g = torch.Generator().manual_seed(1)
    if registered_models()[name].kind == "toy":
        return {"seq": torch.randn(batch, model.cfg.past + 1, model.cfg.dim, generator=g)}
    occ = torch.full((batch, FRAMES, *MICRO_GRID), 17, dtype=torch.uint8)  # free
    occ[..., 0] = 11  # road
    occ[:, :, 10:20, 12:18, 1:3] = torch.randint(1, 11, (batch, FRAMES, 1, 1, 1), generator=g, dtype=torch.uint8)
    steps = torch.arange(FRAMES, dtype=torch.float32)
    pose = torch.stack([3.0 * steps, 0.2 * steps, 0.05 * steps], -1).expand(batch, FRAMES, 3).clone()  # ego frame of frame 0
    points = torch.randn(batch, FRAMES, 64, 4, generator=g) * torch.tensor([8.0, 8.0, 1.0, 0.0])
    points[..., 3] = 1.0  # intensity
    return {
        "occ": occ,
        "action": torch.randn(batch, FRAMES, 2, generator=g) * torch.tensor([1.0, 0.1]),
        "ego_pose": pose,
        "rel_pose": pose - pose[:, -1:],
        "lidar": points,
        "lidar_count": torch.full((batch, FRAMES), 48),
        "tokens": torch.randint(0, VOCAB, (batch, FRAMES, *TOKENS), generator=g),
        "camera": torch.randint(0, 256, (batch, FRAMES, *CAMERA, 3), generator=g, dtype=torch.uint8),
        "command": torch.eye(3)[torch.randint(0, 3, (batch, FRAMES), generator=g)],
    }


def test_every_registered_model_has_a_small_config():
    assert sorted(SMALL) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_gives_every_trainable_parameter_a_finite_gradient(name):
    model = small_model(name).train()
    batch = synthetic_batch(name, model)
    torch.manual_seed(0)
    out = model.loss(batch)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]), out
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values()), out
    out["loss"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, f"{name} has no trainable parameters"
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"{name}: no gradient reaches {missing}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(dict(model.named_parameters())[n].grad is None for n in frozen)


@pytest.mark.parametrize("name", NAMES)
def test_hub_round_trip_gives_bitwise_equal_outputs(name, tmp_path):
    from drivewm.hub import from_pretrained, save_pretrained

    model = small_model(name).eval()
    batch = synthetic_batch(name, model)
    save_pretrained(model, tmp_path / name)
    loaded = from_pretrained(tmp_path / name).eval()
    assert type(loaded) is type(model) and loaded.cfg == model.cfg
    with torch.no_grad():
        torch.manual_seed(0)
        want = model.loss(batch)
        torch.manual_seed(0)
        got = loaded.loss(batch)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(torch.as_tensor(want[key]), torch.as_tensor(got[key])), (name, key)
