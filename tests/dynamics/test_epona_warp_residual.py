"""drivewm's ego-warp residual of the Epona-style model (`residual_base`): the base of each frame is the frame warped
into the next by the ego motion, exactly as the ego-warp baseline warps it (decode, `EgoWarpCamera`, encode; or
the latent grid with the intrinsics scaled to it); a zero change forecasts the chain of bases; the latent cache
serves the same bases the model warps itself; one error per missing key; older residual configs keep their meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from drivewm.baselines.camera import EgoWarpCamera
from drivewm.data.config import DataConfig
from drivewm.data.manifest import StoreError
from drivewm.data.windows import WindowDataset
from drivewm.dynamics.epona import EponaConfig, EponaWorldModel
from drivewm.dynamics.epona_net import patchify
from drivewm.dynamics.latent_cache import LatentWindows
from drivewm.errors import DrivewmError
from drivewm.hub import check_current, config_from_dict

CAMERA = (16, 32)
LATENT = (4, 8)  # the KL autoencoder below downsamples 4x
KL = dict(name="camera_kl_autoencoder", image_size=list(CAMERA), z_channels=4, embed_dim=4,
          cnn=dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False),
          gan=dict(disc_channels=4, disc_layers=2))
# A forward-looking pinhole camera 1.5 m above a flat road, pitched 0.2 rad down (camera-to-ego).
K = torch.tensor([[16.0, 0.0, 15.5], [0.0, 16.0, 7.5], [0.0, 0.0, 1.0]])
PITCH = 0.2


def extrinsics() -> torch.Tensor:
    c, s = torch.cos(torch.tensor(PITCH)), torch.sin(torch.tensor(PITCH))
    forward, right, down = torch.tensor([c, 0.0, -s]), torch.tensor([0.0, -1.0, 0.0]), torch.tensor([-s, 0.0, -c])
    E = torch.eye(4)
    E[:3, 0], E[:3, 1], E[:3, 2], E[2, 3] = right, down, forward, 1.5  # columns: camera x, y, z in ego axes
    return E


def tiny_epona(**over) -> EponaWorldModel:
    cfg = dict(tokenizer=KL, context_frames=3, forward_iter=2, dim=16, depth=1, heads=2, head_dim=16, head_depth=1,
               head_heads=2, sampling_steps=3, residual=True, residual_base="ego_warp")
    cfg.update(over)
    torch.manual_seed(0)
    return EponaWorldModel(EponaConfig(**cfg))


def window(batch: int = 2, frames: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random frames, 2 m of straight driving per frame (pure translation on a flat road), the calibration."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * frames, 3, 4, 8, generator=g)
    camera = torch.nn.functional.interpolate(coarse, size=CAMERA, mode="bilinear", align_corners=False)
    camera = (255 * camera).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(batch, frames, *CAMERA, 3)
    steps = torch.arange(frames, dtype=torch.float32)
    pose = torch.stack([2.0 * steps, torch.zeros(frames), torch.zeros(frames)], -1)
    return {"camera": camera, "action": torch.randn(batch, frames, 2, generator=g),
            "ego_pose": (pose + torch.tensor([10.0, -3.0, 0.0])).expand(batch, frames, 3).clone(),
            "camera_intrinsics": K.expand(batch, 3, 3).clone(), "camera_extrinsics": extrinsics().expand(batch, 4, 4).clone()}


def ego_warp_one_step(images: torch.Tensor, batch: dict, dx: float = 2.0, **calibration) -> torch.Tensor:
    """The ego-warp baseline's next frame of each image [B, H, W, C]: `EgoWarpCamera` on a 1-frame context."""
    b = images.shape[0]
    rel_pose = torch.zeros(b, 2, 3)
    rel_pose[:, 1, 0] = dx
    context = {"camera": images[:, None], "rel_pose": rel_pose, "camera_intrinsics": batch["camera_intrinsics"],
               "camera_extrinsics": batch["camera_extrinsics"], **calibration}
    baseline = EgoWarpCamera()
    return baseline.forecast(context, 1)[:, 0] if images.dtype == torch.uint8 else baseline.warp(context, 1)[:, 0]


def test_pixel_base_is_the_encoded_ego_warp_of_the_decoded_frame():
    model = tiny_epona().eval()
    batch = window()
    z = model.batch_latents(batch)
    base = model.residual_bases(z[:, :3], model.ego_warp_inputs(batch, 6).frames(0, 3))
    images = model.decode(z[:, :3])  # uint8 [B, 3, H, W, 3]
    warped = torch.stack([ego_warp_one_step(images[:, f], batch) for f in range(3)], 1)
    assert torch.allclose(base, model.normalize(model.encode_raw(warped)), atol=1e-6)
    assert not torch.allclose(base, z[:, :3], atol=1e-2)  # the warp moved the frames


def test_latent_grid_base_is_the_ego_warp_of_the_latents_with_scaled_intrinsics():
    model = tiny_epona(residual_base="ego_warp_latent").eval()
    batch = window()
    z = model.batch_latents(batch)
    base = model.residual_bases(z[:, :3], model.ego_warp_inputs(batch, 6).frames(0, 3))
    f = CAMERA[0] // LATENT[0]  # pixel centre u of the image is (u + 0.5) / f - 0.5 on the latent grid
    K_latent = torch.tensor([[K[0, 0] / f, 0, (K[0, 2] + 0.5) / f - 0.5], [0, K[1, 1] / f, (K[1, 2] + 0.5) / f - 0.5],
                             [0, 0, 1]])
    for i in range(3):
        latents = z[:, i].permute(0, 2, 3, 1)  # channels last: the baseline warps any channel count
        reference = ego_warp_one_step(latents, batch, camera_intrinsics=K_latent.expand(2, 3, 3))
        assert torch.allclose(base[:, i], reference.permute(0, 3, 1, 2).float(), atol=1e-5)


class ZeroChange(torch.nn.Module):
    """The exact velocity of a flow whose data is one point, the zero change: (0 - x_t) / (1 - t)."""

    def forward(self, x_t, t, cond, ego):
        return -x_t / (1 - t[:, None, None])


def test_zero_generated_change_forecasts_the_chain_of_ego_warped_frames():
    model = tiny_epona(sampling_steps=1).eval()
    model.head = ZeroChange()
    batch = window()
    context = {k: (v[:, :3] if k == "camera" else v) for k, v in batch.items()}
    pred = model.forecast(context, 2, generator=torch.Generator().manual_seed(0))
    # By hand: encode the last frame; decode, warp as the baseline, encode; twice.
    z = model.encode_raw(context["camera"])[:, -1]
    expected = []
    for _ in range(2):
        z = model.encode_raw(ego_warp_one_step(model.decode(model.normalize(z)[:, None])[:, 0], batch))
        expected.append(z)
    assert torch.equal(pred, model.decode(model.normalize(torch.stack(expected, 1))))


def test_forecasts_are_deterministic_for_a_seed():
    model = tiny_epona().eval()
    batch = window()
    context = {k: (v[:, :3] if k == "camera" else v) for k, v in batch.items()}
    first = model.forecast(context, 3, generator=torch.Generator().manual_seed(5))
    again = model.forecast(context, 3, generator=torch.Generator().manual_seed(5))
    other = model.forecast(context, 3, generator=torch.Generator().manual_seed(6))
    assert first.shape == (2, 3, *CAMERA, 3) and torch.equal(first, again) and not torch.equal(first, other)


def test_training_flow_generates_the_change_from_the_warped_frame():
    """loss on camera windows: the first pass's data is next latents - ego-warped inputs; chain-of-forward warps
    the model's own estimates for the later passes."""
    model = tiny_epona(multifw_perstep=1).train()
    batch = window(frames=5)
    z = model.batch_latents(batch)
    warp = model.ego_warp_inputs(batch, 5)
    torch.manual_seed(4)
    losses, seen = model.chain_of_forward(z, model.conditions(batch, 5), 2, warp=warp)
    torch.manual_seed(4)  # each pass draws t per frame, then the noise
    for j, targets in enumerate((z[:, 1:4], torch.cat([seen[1][:, 1:], z[:, 4:5]], 1))):
        change = patchify(targets - model.residual_bases(seen[j], warp.frames(j, j + 3)), 2).flatten(0, 1)
        torch.rand(change.shape[0], 1, 1)
        noise = torch.randn_like(change)
        assert torch.allclose(losses[j], (change - noise).pow(2).mean(), atol=1e-5)  # untrained head: velocity 0
    assert torch.equal(seen[0], z[:, :3]) and int(model.loss(batch)["passes"]) == 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two micro episodes of 8 frames with the calibration recorded."""
    from drivewm.data.store import write_episode
    from drivewm.sim.config import sim_preset
    from drivewm.sim.episode import simulate_episode

    path = tmp_path_factory.mktemp("warpstore") / "data"
    cfg = sim_preset("micro", camera_calibration=True)
    for seed in range(2):
        ep = simulate_episode(cfg, seed, 8)
        write_episode(path, {k: ep[k] for k in ("occ", "ego_pose", "action", "camera", "camera_intrinsics",
                                                "camera_extrinsics")}, grid=cfg.grid_spec)
    return path


def test_the_latent_cache_serves_the_bases_the_model_warps(store):
    model = tiny_epona()
    keys = ["camera", "action", "ego_pose", "camera_intrinsics", "camera_extrinsics"]
    windows = WindowDataset(DataConfig(path=str(store), past=3, future=2, keys=keys, val_fraction=0.0), "train")
    cached = model.prepare_dataset(windows, progress=False)
    item, plain = cached[3], windows[3]
    batch = {k: v[None] for k, v in plain.items()}
    z = model.batch_latents(batch)
    on_the_fly = model.residual_bases(z[:, :4], model.ego_warp_inputs(batch, 5).frames(0, 4))
    assert torch.allclose(model.normalize(item["base_latents"][None, :4]), on_the_fly, atol=1e-4)
    torch.manual_seed(1)
    cached_loss = model.loss({k: v[None] for k, v in item.items()})["loss"]
    torch.manual_seed(1)
    assert torch.allclose(cached_loss, model.loss(batch)["loss"], atol=1e-4)

    bare = WindowDataset(DataConfig(path=str(store), past=3, future=2, keys=["camera", "action", "ego_pose"],
                                    val_fraction=0.0), "train")
    with pytest.raises(DrivewmError, match="data.keys has no 'camera_intrinsics'"):
        model.prepare_dataset(bare, progress=False)


def test_a_missing_pose_or_calibration_is_one_error_naming_the_key():
    model = tiny_epona().eval()
    batch = window()
    context = {k: (v[:, :3] if k == "camera" else v) for k, v in batch.items()}
    for key in ("camera_intrinsics", "camera_extrinsics"):
        with pytest.raises(DrivewmError, match=f"no '{key}'.*data.keys: add camera_intrinsics, camera_extrinsics"):
            model.forecast({k: v for k, v in context.items() if k != key}, 1)
        with pytest.raises(DrivewmError, match=f"no '{key}'"):
            model.loss({k: v for k, v in batch.items() if k != key})
    with pytest.raises(DrivewmError, match="no 'ego_pose'"):
        model.ego_warp_inputs({k: v for k, v in batch.items() if k != "ego_pose"}, 6)
    with pytest.raises(DrivewmError, match=r"'camera_intrinsics' / 'camera_extrinsics' must be \[2, 3, 3\]"):
        model.forecast({**context, "camera_intrinsics": K}, 1)
    with pytest.raises(DrivewmError, match="model.residual=true"):
        tiny_epona(residual=False)
    with pytest.raises(DrivewmError, match="residual_base='warp' unknown"):
        tiny_epona(residual_base="warp")


def test_older_residual_configs_load_and_keep_their_meaning():
    """A run written before `residual_base` existed (`residual: true`) loads as is and still adds the change to
    the last frame; the published preset (no residual) is untouched."""
    old = {"name": "epona_world", "tokenizer": KL, "residual": True, "context_frames": 3, "dim": 16, "depth": 1,
           "heads": 2, "head_dim": 16, "head_depth": 1, "head_heads": 2, "sampling_steps": 1}
    check_current(old, Path("run"))  # no conversion asked for
    cfg = config_from_dict(old, "old run")
    assert cfg.residual and cfg.residual_base == "last"
    torch.manual_seed(0)
    model = EponaWorldModel(cfg).eval()
    batch = window()
    z = model.batch_latents(batch)
    assert model.ego_warp_inputs({}, 6) is None and torch.equal(model.residual_bases(z, None), z)
    with torch.no_grad():
        new = model.next_latent(z[:, :3], model.conditions(batch, 6)[:, :3], generator=torch.Generator().manual_seed(3))
        alone = model.next_latent(z[:, :3], model.conditions(batch, 6)[:, :3], generator=torch.Generator().manual_seed(3),
                                  base=torch.zeros_like(z[:, 2]))
    assert torch.allclose(new - alone, z[:, 2], atol=1e-5)  # the base is the last frame
    assert config_from_dict({"name": "epona_world"}, "preset").residual is False


def test_the_warp_preset_reads_the_calibration_and_the_published_preset_is_unchanged():
    from drivewm.train.config import load_run_config

    warp = load_run_config("world/epona_camera_tiny_warp.yaml")
    assert warp.model.residual and warp.model.residual_base == "ego_warp"
    assert {"ego_pose", "camera_intrinsics", "camera_extrinsics"} <= set(warp.data.keys)
    published = load_run_config("world/epona_camera_tiny.yaml")
    assert not published.model.residual and published.model.residual_base == "last"
