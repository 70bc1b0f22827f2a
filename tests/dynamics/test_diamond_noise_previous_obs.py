"""The csgo branch's noise_previous_obs (eloialonso/diamond @ 851cefb, src/models/diffusion/denoiser.py and
diffusion_sampler.py): conditioning frames noised in training at a level the network is told, and the sampler's
s_cond noise added before every step."""

from __future__ import annotations

import pytest
import torch

from drivewm.dynamics.diamond import DiamondCamera, DiamondConfig
from drivewm.dynamics.edm import SamplerConfig, edm_sample
from drivewm.tokenizers.camera import to_pixels

torch.set_num_threads(1)


def random_model(**over) -> DiamondCamera:
    torch.manual_seed(0)
    cfg = dict(image_size=[16, 32], cond_channels=16, depths=[1, 1, 1], channels=[8, 16, 64],
               noise_previous_obs=True)
    model = DiamondCamera(DiamondConfig(**{**cfg, **over}))
    for p in model.parameters():  # the zero-initialised convs would hide most of the network
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def frames_and_actions(model: DiamondCamera, batch: int, frames: int):
    g = torch.Generator().manual_seed(1)
    h, w = model.image_hw
    x = to_pixels(torch.randint(0, 256, (batch, frames, h, w, 3), generator=g, dtype=torch.uint8))
    return x, torch.randn(batch, frames, model.cfg.action_dim, generator=g)


def test_sampler_noises_the_frames_before_every_step_and_tells_the_network_their_level():
    s_cond = 0.05
    model = random_model(sampler=SamplerConfig(num_steps=3, s_cond=s_cond))
    obs, act = frames_and_actions(model, 2, 4)
    fast = model.edm.rollout(obs, act, 1, torch.Generator().manual_seed(3))[:, 0]
    # The official loop: prev_obs = apply_noise(prev_obs, s_cond, 0) before each denoising, cumulatively, and
    # denoise(x, sigma, sigma_cond=s_cond, prev_obs, act).
    g = torch.Generator().manual_seed(3)
    x = torch.randn(obs[:, 0].shape, generator=g)
    state = {"obs": obs.flatten(1, 2)}
    sigma_cond = torch.full((2,), s_cond)

    def before_step():
        state["obs"] = state["obs"] + s_cond * torch.randn(state["obs"].shape, generator=g)

    plain = edm_sample(lambda x_, s: model.edm.denoise(x_, s, state["obs"].view_as(obs), act, sigma_cond), x,
                       model.cfg.sampler, g, before_step)
    diff = (fast - plain).abs()
    assert diff.max() <= 2 / 255 + 1e-6 and (diff > 1e-6).float().mean() < 1e-3
    # The level reaches the network: told the frames are clean, it denoises otherwise.
    told_clean = model.edm.denoise(x, torch.full((2,), 0.3), obs, act)
    told_noisy = model.edm.denoise(x, torch.full((2,), 0.3), obs, act, sigma_cond)
    assert (told_clean - told_noisy).abs().mean() > 1e-2


def test_training_noises_the_conditioning_frames_at_the_level_it_passes(monkeypatch):
    model = random_model(sigma_offset_noise=0.0, image_size=[64, 64])
    frames, act = frames_and_actions(model, 6, 5)
    seen = []
    real = model.edm.model_output

    def spy(noisy, sigma, obs, act_, sigma_cond=None):
        seen.append((obs.clone(), sigma_cond))
        return real(noisy, sigma, obs, act_, sigma_cond)

    monkeypatch.setattr(model.edm, "model_output", spy)
    model.edm.loss(frames, act)
    (obs, sigma_cond), = seen
    noise_std = (obs - frames[:, :4]).flatten(1).std(dim=1)
    torch.testing.assert_close(noise_std, sigma_cond, rtol=0.03, atol=0)
    assert sigma_cond.min() < sigma_cond.max()  # one log-normal draw per sample


def test_clean_conditioning_without_the_option():
    model = random_model(noise_previous_obs=False)
    assert model.edm.noise_cond_emb is None
    frames, act = frames_and_actions(model, 2, 5)
    seen = []
    real = model.edm.model_output
    model.edm.model_output = lambda n, s, o, a, c=None: seen.append((o.clone(), c)) or real(n, s, o, a, c)
    model.edm.loss(frames, act)
    torch.testing.assert_close(seen[0][0], frames[:, :4], rtol=0, atol=0)
    assert seen[0][1] is None


def test_s_cond_without_noise_previous_obs_is_refused():
    with pytest.raises(ValueError, match="noise_previous_obs"):
        random_model(noise_previous_obs=False, sampler=SamplerConfig(s_cond=0.005))
    with pytest.raises(ValueError, match="s_cond"):
        random_model(sampler=SamplerConfig(s_cond=-1.0))
