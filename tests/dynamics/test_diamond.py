"""DIAMOND as a world model: seeded rollouts, bad input, overfitting a few clips, training on simulator video
against copy-last, the continuous BEV variant's embedding, and the reward / end heads on synthetic targets."""

from __future__ import annotations

import pytest
import torch

from drivewm.baselines.camera import CopyLastCamera
from drivewm.dynamics.diamond import DiamondBEV, DiamondBEVConfig, DiamondCamera, DiamondConfig
from drivewm.dynamics.rew_end import RewardEndConfig
from drivewm.errors import DrivewmError
from drivewm.forecaster import split_window

torch.set_num_threads(1)
HW = (8, 16)


def camera_model(**over) -> DiamondCamera:
    torch.manual_seed(0)
    cfg = dict(image_size=list(HW), cond_channels=32, depths=[1, 1], channels=[16, 32])
    return DiamondCamera(DiamondConfig(**{**cfg, **over}))


def psnr(pred: torch.Tensor, truth: torch.Tensor) -> float:
    mse = (pred.double() - truth.double()).pow(2).mean()
    return (10 * torch.log10(255.0**2 / mse)).item()


def train(model, batch: dict, steps: int, lr: float = 3e-3) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


def moving_clips(contexts: int = 2) -> dict:
    """A bright bar on a gradient background moving right by 1 or 2 pixels a frame, as the action says
    (speed - 1.5); each context comes twice, with either action at its last frame, so only the action tells
    the two next frames apart."""
    g = torch.Generator().manual_seed(0)
    speed = torch.randint(1, 3, (contexts, 5), generator=g).repeat_interleave(2, 0)
    speed[:, 3] = torch.tensor([1, 2]).repeat(contexts)
    cam = torch.zeros(2 * contexts, 5, *HW, 3, dtype=torch.uint8)
    cam[..., 1] = torch.linspace(20, 120, HW[1]).round().to(torch.uint8)
    for b in range(2 * contexts):
        x = b // 2
        for t in range(5):
            cam[b, t, HW[0] // 4:3 * HW[0] // 4, x:x + 2, 0] = 230
            x += int(speed[b, t])
    return {"camera": cam, "action": torch.stack([speed.float() - 1.5, torch.zeros_like(speed.float())], -1)}


def test_rollouts_are_deterministic_for_a_seed_and_differ_across_seeds():
    model = camera_model().eval()
    batch = moving_clips()
    context, _ = split_window(batch, 4)
    a = model.forecast(context, 2, generator=torch.Generator().manual_seed(3))
    b = model.forecast(context, 2, generator=torch.Generator().manual_seed(3))
    c = model.forecast(context, 2, generator=torch.Generator().manual_seed(4))
    assert a.shape == (4, 2, *HW, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_input_raises_one_clear_error_each():
    model = camera_model().eval()
    good = moving_clips()
    context, _ = split_window(good, 4)
    cases = {
        "wrong size": ({**context, "camera": torch.zeros(4, 4, 8, 32, 3, dtype=torch.uint8)}, "8, 16, 3"),
        "wrong channels": ({**context, "camera": torch.zeros(4, 4, *HW, 4, dtype=torch.uint8)}, "8, 16, 3"),
        "float frames": ({**context, "camera": context["camera"].float()}, "uint8"),
        "short context": ({**context, "camera": context["camera"][:, 1:]}, "last 4 frames"),
        "action width": ({**context, "action": torch.zeros(4, 6, 3)}, "action_dim"),
        "no action": ({"camera": context["camera"]}, "action-conditioned"),
        "too few actions": ({**context, "action": context["action"][:, :4]}, ">= 5"),
    }
    for name, (ctx, words) in cases.items():
        with pytest.raises(DrivewmError, match=words):
            model.forecast(ctx, 2)
    with pytest.raises(DrivewmError, match="training windows of >= 5"):
        model.loss({k: v[:, :4] for k, v in good.items()})
    bev = DiamondBEV(DiamondBEVConfig(grid="micro", cond_channels=8, depths=[1], channels=[8]))
    with pytest.raises(DrivewmError, match="32, 32, 4"):
        bev.forecast({"occ": torch.zeros(1, 4, 32, 32, 5, dtype=torch.uint8), "action": torch.zeros(1, 5, 2)}, 1)


def test_overfitting_a_few_clips_reaches_a_psnr_bound_and_uses_the_action():
    batch = moving_clips()
    model = camera_model(channels=[8, 16], cond_channels=16)
    train(model, batch, 200)
    context, future = split_window(batch, 4)
    pred = model.forecast(context, 1, generator=torch.Generator().manual_seed(0))
    copy = CopyLastCamera().forecast(context, 1)
    ours, base = psnr(pred, future["camera"]), psnr(copy, future["camera"])
    assert ours > 24.0 and ours > base + 8, (ours, base)
    # Each context's two next frames differ only by the action: the other action's frame is the wrong one.
    swapped = {**context, "action": -context["action"]}  # speed 1 <-> 2
    other = psnr(model.forecast(swapped, 1, generator=torch.Generator().manual_seed(0)), future["camera"])
    assert other < ours - 3, (ours, other)


def test_bev_embedding_round_trips_and_a_forecast_is_class_ids():
    for embedding, channels in (("binary", 5), ("onehot", 18)):
        model = DiamondBEV(DiamondBEVConfig(grid="micro", embedding=embedding, cond_channels=8, depths=[1],
                                            channels=[8])).eval()
        assert model.table.shape == (18, channels) and len(set(map(tuple, model.table.tolist()))) == 18
        occ = torch.randint(0, 18, (2, 5, 32, 32, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        x = model.encode(occ)
        assert x.shape == (2, 5, channels * 4, 32, 32) and x.abs().max() == 1
        assert torch.equal(model.decode(x), occ.long())
        assert torch.equal(model.decode(x + 0.4 * (torch.rand_like(x) * 2 - 1)), occ.long())  # nearest code
    out = model.forecast({"occ": occ[:, :4], "action": torch.zeros(2, 5, 2)}, 1, generator=torch.Generator())
    assert out.shape == (2, 1, 32, 32, 4) and out.min() >= 0 and out.max() < 18


def test_bev_model_learns_a_static_scene_beyond_the_untrained_one():
    occ = torch.full((2, 5, 32, 32, 4), 17, dtype=torch.uint8)
    occ[..., 0] = 11
    occ[:, :, 10:20, 12:18, 1:3] = torch.tensor([3, 7], dtype=torch.uint8)[:, None, None, None, None]
    batch = {"occ": occ, "action": torch.zeros(2, 5, 2)}
    torch.manual_seed(0)
    model = DiamondBEV(DiamondBEVConfig(grid="micro", cond_channels=16, depths=[1, 1], channels=[8, 16]))
    context, future = split_window(batch, 4)

    def accuracy() -> float:
        model.eval()
        pred = model.forecast(context, 1, generator=torch.Generator().manual_seed(0))
        return (pred == future["occ"].long()).float().mean().item()

    before = accuracy()
    train(model, batch, 50)
    after = accuracy()
    assert after > 0.95 and after > before + 0.3, (before, after)


def test_reward_end_heads_learn_synthetic_targets_and_train_only_with_their_keys():
    # end[t] = 1 when frame t is bright; reward[t] = sign of the mean brightness change into frame t.
    g = torch.Generator().manual_seed(0)
    level = torch.randint(0, 2, (8, 5), generator=g).float() * 180 + 30
    cam = (level[..., None, None, None] + torch.zeros(8, 5, *HW, 3)).to(torch.uint8)
    reward = torch.cat([torch.zeros(8, 1), (level[:, 1:] - level[:, :-1]).sign()], 1)
    batch = {"camera": cam, "action": torch.zeros(8, 5, 2), "collision": level > 100, "reward": reward}
    heads = RewardEndConfig(enabled=True, lstm_dim=16, cond_channels=8, depths=[1, 1], channels=[4, 4])
    model = camera_model(reward_end=heads)
    out = model.loss(batch)
    assert {"loss_reward", "loss_end", "loss_denoising"} <= set(out)
    torch.testing.assert_close(out["loss"], out["loss_denoising"] + out["loss_reward"] + out["loss_end"])
    x = model.encode(cam)
    opt = torch.optim.AdamW(model.reward_end.parameters(), lr=1e-2)
    for _ in range(60):  # the heads alone: the denoiser's loss does not reach them
        opt.zero_grad()
        sum(model.reward_end.loss(x, batch["action"], reward, batch["collision"]).values()).backward()
        opt.step()
    rew, end = model.predict_reward_end(x[:, :4], batch["action"], x[:, 4:])
    assert rew.shape == (8, 1, 3) and end.shape == (8, 1, 2)
    logits_rew, logits_end, _ = model.reward_end(x[:, :-1], batch["action"][:, :-1], x[:, 1:])
    assert torch.equal(logits_end.argmax(-1), batch["collision"][:, 1:].long())
    assert torch.equal(logits_rew.argmax(-1) - 1, reward[:, 1:].long())
    with pytest.raises(DrivewmError, match="reward_end.enabled needs"):
        model.loss({"camera": cam, "action": batch["action"]})
    assert "loss_end" not in camera_model().loss(batch)  # off by default
