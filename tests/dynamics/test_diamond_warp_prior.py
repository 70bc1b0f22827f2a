"""DIAMOND with the ego-warped prior (model.warp_prior, drivewm's variant): the prior is the homography-warped
copy of the frame it is made from, the option off leaves the published model as it was, missing keys are one
clear error each, rollouts are seeded and read the known future motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.baselines.camera import EgoWarpCamera
from drivewm.dynamics.diamond import DiamondBEV, DiamondBEVConfig, DiamondCamera, DiamondConfig
from drivewm.errors import DrivewmError
from drivewm.forecaster import split_window
from drivewm.tokenizers.camera import to_pixels

torch.set_num_threads(1)
H, W = 16, 32
K = torch.tensor([[20.0, 0, W / 2 - 0.5], [0, 20.0, H / 2 - 0.5], [0, 0, 1]], dtype=torch.float64)
# Camera 1.5 m ahead of the rear axle, 1.6 m up, looking forward, pitched down 4 degrees (camera-to-ego).
_pitch = np.deg2rad(4.0)
_rot = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float) @ np.array(
    [[1, 0, 0], [0, np.cos(_pitch), np.sin(_pitch)], [0, -np.sin(_pitch), np.cos(_pitch)]]).T
E = torch.eye(4, dtype=torch.float64)
E[:3, :3], E[:3, 3] = torch.tensor(_rot), torch.tensor([1.5, 0.0, 1.6])
PAST = 4
# The model without the option, before the option existed (drivewm at 1d8b99a): its loss on `window()` after
# torch.manual_seed(2), the sum of its seeded 2-frame forecast, its parameter count.
PINNED_LOSS, PINNED_FORECAST_SUM, PINNED_PARAMETERS = 1.37481689453125, 729352, 159443


def model(warp_prior: bool = True, **over) -> DiamondCamera:
    torch.manual_seed(0)
    cfg = dict(image_size=[H, W], cond_channels=32, depths=[1, 1], channels=[16, 32], warp_prior=warp_prior)
    return DiamondCamera(DiamondConfig(**{**cfg, **over})).eval()


def awake(m: DiamondCamera) -> DiamondCamera:
    """The output layer drawn at random (it starts at zero, which hides every conditioning input)."""
    torch.manual_seed(1)
    torch.nn.init.normal_(m.edm.conv_out.weight, std=0.05)
    return m


def window(batch: int = 2, frames: int = PAST + 2) -> dict:
    """Random frames driving straight ahead, speeding up from 1.5 and 3 m per frame by 0.4 m per frame each frame
    (no two transitions alike), along a heading of 0.3 rad in the world."""
    g = torch.Generator().manual_seed(0)
    cam = torch.randint(0, 256, (batch, frames, H, W, 3), generator=g, dtype=torch.uint8)
    t = torch.arange(frames, dtype=torch.float64)
    speed = torch.tensor([1.5, 3.0], dtype=torch.float64)[:batch, None] * t + 0.2 * t**2
    heading = torch.full_like(speed, 0.3)
    pose = torch.stack([5 + speed * heading.cos(), -2 + speed * heading.sin(), heading], -1)
    return {"camera": cam, "action": torch.randn(batch, frames, 2, generator=g), "ego_pose": pose.float(),
            "rel_pose": pose.float(), "camera_intrinsics": K.float().expand(batch, 3, 3),
            "camera_extrinsics": E.float().expand(batch, 4, 4)}


@pytest.mark.parametrize("pose_key", ["rel_pose", "ego_pose"])
def test_prior_of_a_straight_drive_is_the_homography_warped_copy(pose_key):
    batch = window()
    del batch["rel_pose" if pose_key == "ego_pose" else "ego_pose"]
    context, _ = split_window(batch, PAST)
    m = model()
    obs = to_pixels(context["camera"])  # [B, P, 3, H, W]
    cond = m.edm.conditioning(obs, m.frame_warp(context, PAST + 1, "context"), PAST - 1)
    assert cond.shape == (2, PAST + 1, 3, H, W) and torch.equal(cond[:, :PAST], obs)
    expect = EgoWarpCamera().warp(context, 1)[:, 0]  # float64 0..255 [B, H, W, 3]
    prior = (cond[:, -1].double() + 1) * 127.5
    assert (expect - context["camera"][:, -1].double()).abs().mean() > 10  # the frame really moves
    torch.testing.assert_close(prior.movedim(1, -1), expect, atol=2e-4, rtol=0)


def test_option_off_is_the_published_model():
    off, on = model(warp_prior=False), model(warp_prior=True)
    shapes_off = {k: tuple(v.shape) for k, v in off.state_dict().items()}
    shapes_on = {k: tuple(v.shape) for k, v in on.state_dict().items()}
    assert shapes_off.keys() == shapes_on.keys()
    assert [k for k in shapes_off if shapes_off[k] != shapes_on[k]] == ["edm.conv_in.weight"]
    assert shapes_off["edm.conv_in.weight"] == (16, (PAST + 1) * 3, 3, 3)  # conditioning frames + noisy frame
    assert shapes_on["edm.conv_in.weight"] == (16, (PAST + 2) * 3, 3, 3)
    assert sum(p.numel() for p in off.parameters()) == PINNED_PARAMETERS
    off = awake(off)
    batch = window()
    torch.manual_seed(2)
    assert off.loss(batch)["loss"].item() == pytest.approx(PINNED_LOSS, rel=1e-5)
    context, _ = split_window(batch, PAST)
    out = off.forecast({k: context[k] for k in ("camera", "action")}, 2, generator=torch.Generator().manual_seed(3))
    assert out.long().sum().item() == PINNED_FORECAST_SUM


def test_prior_weights_at_zero_give_the_model_without_it():
    off, on = awake(model(warp_prior=False)), awake(model(warp_prior=True))
    state = off.state_dict()
    w = torch.zeros_like(on.edm.conv_in.weight)
    published = state["edm.conv_in.weight"]
    w[:, :PAST * 3], w[:, (PAST + 1) * 3:] = published[:, :PAST * 3], published[:, PAST * 3:]
    on.load_state_dict({**state, "edm.conv_in.weight": w})
    context, _ = split_window(window(), PAST)
    a = off.forecast(context, 1, generator=torch.Generator().manual_seed(5)).int()
    b = on.forecast(context, 1, generator=torch.Generator().manual_seed(5)).int()
    # Equal but for the float rounding of a wider convolution, which may move a pixel across an 8-bit step.
    assert (a - b).abs().max() <= 1 and (a != b).float().mean() < 0.01


def test_rollouts_are_seeded_and_read_the_known_future_motion():
    m = awake(model())
    context, _ = split_window(window(frames=PAST + 3), PAST)
    a = m.forecast(context, 3, generator=torch.Generator().manual_seed(3))
    b = m.forecast(context, 3, generator=torch.Generator().manual_seed(3))
    c = m.forecast(context, 3, generator=torch.Generator().manual_seed(4))
    assert a.shape == (2, 3, H, W, 3) and torch.equal(a, b) and not torch.equal(a, c)
    # The first forecast frame's prior moves with the pose of that frame: a faster plan, another frame.
    faster = {**context, "rel_pose": context["rel_pose"] * torch.tensor([2.0, 2.0, 1.0])}
    d = m.forecast(faster, 1, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(a[:, :1], d)
    off = awake(model(warp_prior=False))  # the published model never reads poses
    e = off.forecast(context, 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(e, off.forecast(faster, 1, generator=torch.Generator().manual_seed(3)))


def test_missing_keys_are_one_clear_error_each():
    m = model()
    batch = window()
    context, _ = split_window(batch, PAST)
    for key in ("camera_intrinsics", "camera_extrinsics"):
        with pytest.raises(DrivewmError, match=key):
            m.forecast({k: v for k, v in context.items() if k != key}, 1)
        with pytest.raises(DrivewmError, match=key):
            m.loss({k: v for k, v in batch.items() if k != key})
    with pytest.raises(DrivewmError, match="'rel_pose'"):
        m.forecast({k: v for k, v in context.items() if k not in ("rel_pose", "ego_pose")}, 1)
    short = {k: v for k, v in context.items() if k != "ego_pose"}
    with pytest.raises(DrivewmError, match=r"'rel_pose'.*>= 7"):  # poses of past + horizon frames
        m.forecast(short, 3)
    with pytest.raises(ValueError, match="warp_prior"):
        DiamondBEV(DiamondBEVConfig(grid="micro", cond_channels=8, depths=[1], channels=[8], warp_prior=True))


def test_play_drives_a_warp_prior_model_and_refuses_a_store_without_calibration(tmp_path):
    from drivewm.data.store import write_episode
    from drivewm.play import Session
    from drivewm.sim import sim_preset, simulate_episode

    cfg = sim_preset("micro", camera_calibration=True, lidar=False, visibility=False)
    ep = simulate_episode(cfg, seed=3, frames=4)
    keys = ["camera", "ego_pose", "action", "ego_speed"]
    m = awake(model(image_size=list(ep["camera"].shape[1:3]), conditioning_frames=2))
    for name, stored in (("calibrated", keys + ["camera_intrinsics", "camera_extrinsics"]), ("bare", keys)):
        write_episode(tmp_path / name, {k: ep[k] for k in stored}, grid=cfg.grid_spec, hz=cfg.hz)
    session = Session(m, tmp_path / "calibrated", past=2)
    assert session.press("w").shape == ep["camera"].shape[1:] and session.steps == 1
    with pytest.raises(DrivewmError, match="'camera_intrinsics'"):
        Session(m, tmp_path / "bare", past=2).press("w")
