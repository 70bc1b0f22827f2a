"""DIAMOND's fast sampling path gives the plain path's outputs: the split input conv, the actions embedded once
per frame, the channels-last U-Net and the fused AdaGroupNorm change only float rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drivewm.dynamics.diamond import DiamondCamera, DiamondConfig
from drivewm.dynamics.edm import AdaGroupNorm, edm_sample
from drivewm.tokenizers.camera import to_pixels

torch.set_num_threads(1)


def random_model(**over) -> DiamondCamera:
    torch.manual_seed(0)
    cfg = dict(image_size=[16, 32], cond_channels=16, depths=[1, 1, 1], channels=[8, 16, 64])
    model = DiamondCamera(DiamondConfig(**{**cfg, **over}))
    for p in model.parameters():  # the zero-initialised convs would hide most of the network
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def conditioning(model: DiamondCamera, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    n, (h, w) = model.cfg.conditioning_frames, model.image_hw
    obs = to_pixels(torch.randint(0, 256, (batch, n, h, w, 3), generator=g, dtype=torch.uint8))
    return obs, torch.randn(batch, n, model.cfg.action_dim, generator=g), torch.randn(batch, 3, h, w, generator=g)


@pytest.mark.parametrize("sigma", [5.0, 0.3, 2e-3])
def test_sampling_denoiser_equals_the_training_path_before_quantization(sigma):
    model = random_model()
    obs, act, x = conditioning(model)
    s = torch.full((x.shape[0],), sigma)
    with torch.no_grad():
        out, cs = model.edm.model_output(x, s, obs, act)
        plain = cs.c_skip * x + cs.c_out * out
        fast = model.edm.sampling_denoiser(obs, act)(x, s)
    assert out.std() > 0.05, out.std()  # a network far from zero, whose every layer counts
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_fast_rollout_equals_the_plain_sampler_loop():
    model = random_model()
    obs, act, _ = conditioning(model, batch=2)
    acts = torch.cat((act, torch.randn(2, 2, model.cfg.action_dim, generator=torch.Generator().manual_seed(2))), 1)
    fast = model.edm.rollout(obs, acts, 3, torch.Generator().manual_seed(5))
    # The loop as written before the fast path: the full denoiser, conv over the stacked frames, at every step.
    g, frames = torch.Generator().manual_seed(5), list(obs.unbind(1))
    plain = []
    for k in range(3):
        o, a = torch.stack(frames[-4:], 1), acts[:, k:k + 4]
        x = edm_sample(lambda x_, s: model.edm.denoise(x_, s, o, a), torch.randn(o[:, 0].shape, generator=g),
                       model.cfg.sampler, g)
        frames.append(x)
        plain.append(x)
    plain = torch.stack(plain, 1)
    # Both sit on the 8-bit grid: float rounding may move a value at a grid boundary by one level.
    diff = (fast - plain).abs()
    assert diff.max() <= 2 / 255 + 1e-6 and (diff > 1e-6).float().mean() < 1e-3


@pytest.mark.parametrize("channels_last", [False, True])
def test_ada_group_norm_forward_and_gradients_match_the_plain_group_norm(channels_last):
    torch.manual_seed(0)
    norm = AdaGroupNorm(64, 8)  # 2 groups
    x, cond = torch.randn(2, 64, 6, 10) * 3 + 1, torch.randn(2, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    scale, shift = norm.linear(cond).chunk(2, dim=1)
    want = F.group_norm(x, 2, eps=1e-5) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    got = norm(x, cond)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    w = torch.randn_like(want)
    g_want = torch.autograd.grad((want * w).sum(), (x, norm.linear.weight))
    g_got = torch.autograd.grad((got * w).sum(), (x, norm.linear.weight))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

