"""DIAMOND's EDM pieces against their formulas: Karras et al. 2022 Table 1's preconditioning (with DIAMOND's
offset-noise correction), the log-normal training sigma, the offset noise, Karras' sigma schedule, the Euler
sampler and AdaGroupNorm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drivewm.dynamics.diamond import DiamondCamera, DiamondConfig
from drivewm.dynamics.edm import (AdaGroupNorm, SamplerConfig, apply_noise, build_sigmas, compute_conditioners,
                                  edm_sample, quantize, sample_training_sigma)
from drivewm.tokenizers.camera import to_pixels, to_uint8

torch.set_num_threads(1)


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_conditioners_are_karras_table_1_at_the_offset_corrected_sigma(offset):
    sigmas = [2e-3, 0.1, 0.67, 1.0, 5.0, 20.0]
    cs = compute_conditioners(torch.tensor(sigmas, dtype=torch.float64), 0.5, offset)
    for i, s in enumerate(sigmas):
        s = math.sqrt(s**2 + offset**2)
        sd = 0.5
        assert cs.c_skip[i].item() == pytest.approx(sd**2 / (s**2 + sd**2), rel=1e-12)
        assert cs.c_out[i].item() == pytest.approx(s * sd / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert cs.c_in[i].item() == pytest.approx(1 / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert cs.c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    assert cs.c_skip.shape == (len(sigmas), 1, 1, 1) and cs.c_noise.shape == (len(sigmas),)
    # EDM's unit-variance conditions: c_in^2 (sigma^2 + sd^2) = 1 and c_skip^2 sd^2 + c_out^2 ... = sd^2 c_skip.
    s2 = torch.tensor(sigmas, dtype=torch.float64) ** 2 + offset**2
    torch.testing.assert_close(cs.c_in.flatten() ** 2 * (s2 + 0.25), torch.ones(len(sigmas), dtype=torch.float64))
    torch.testing.assert_close(cs.c_out.flatten() ** 2, 0.25 * s2 / (s2 + 0.25))


def test_conditioners_tend_to_identity_at_zero_noise_without_offset_and_not_with_it():
    cs = compute_conditioners(torch.tensor([1e-8]), 0.5, 0.0)
    assert cs.c_skip.item() == pytest.approx(1.0) and cs.c_out.item() == pytest.approx(0.0, abs=1e-7)
    # With the offset noise the network always sees at least sigma_offset: c_skip(0) = 0.25 / (0.09 + 0.25).
    assert compute_conditioners(torch.tensor([1e-8]), 0.5, 0.3).c_skip.item() == pytest.approx(0.25 / 0.34)


def _tiny_camera(offset: float) -> DiamondCamera:
    torch.manual_seed(0)
    model = DiamondCamera(DiamondConfig(image_size=[8, 16], channels=[8, 8], depths=[1, 1], attn_depths=[False, False],
                                        cond_channels=16, sigma_offset_noise=offset))
    for p in model.parameters():  # the zero-initialised output conv would make F = 0 trivially
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def test_denoiser_returns_the_clean_frame_at_sigma_to_zero():
    model = _tiny_camera(0.0)
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 256, (2, 8, 16, 3), generator=g, dtype=torch.uint8)
    obs = to_pixels(torch.randint(0, 256, (2, 4, 8, 16, 3), generator=g, dtype=torch.uint8))
    act = torch.randn(2, 4, 2, generator=g)
    x = to_pixels(clean)
    out, cs = model.edm.model_output(x, torch.full((2,), 1e-7), obs, act)
    assert out.abs().max() > 0.1  # F itself is far from zero: c_out kills it
    denoised = model.edm.denoise(x, torch.full((2,), 1e-7), obs, act)
    assert (to_uint8(denoised).int() - clean.int()).abs().max() <= 1  # the official 8-bit floor
    # With a real noise level the same network changes the frame.
    assert (to_uint8(model.edm.denoise(x, torch.full((2,), 1.0), obs, act)).int() - clean.int()).abs().max() > 10


def test_sampler_with_one_step_at_sigma_max_to_zero_returns_its_input():
    model = _tiny_camera(0.0)
    g = torch.Generator().manual_seed(2)
    x = to_pixels(torch.randint(0, 256, (2, 8, 16, 3), generator=g, dtype=torch.uint8))
    obs, act = torch.rand(2, 4, 3, 8, 16, generator=g) * 2 - 1, torch.randn(2, 4, 2, generator=g)
    cfg = SamplerConfig(num_steps=1, sigma_min=1e-7, sigma_max=1e-7)
    out = edm_sample(lambda x_, s: model.edm.denoise(x_, s, obs, act), x, cfg)
    assert (out - x).abs().max() <= 2 / 255 + 1e-6


def test_sigma_schedule_is_karras_rho_spacing_ending_at_zero():
    s = build_sigmas(3, 2e-3, 5.0, 7)
    lo, hi = 2e-3 ** (1 / 7), 5.0 ** (1 / 7)
    want = [(hi + i / 2 * (lo - hi)) ** 7 for i in range(3)] + [0.0]
    torch.testing.assert_close(s, torch.tensor(want), rtol=1e-5, atol=0)
    assert s[0].item() == pytest.approx(5.0, rel=1e-5) and s[2].item() == pytest.approx(2e-3, rel=1e-5)
    assert build_sigmas(1, 2e-3, 5.0, 7).tolist() == [pytest.approx(5.0, rel=1e-5), 0.0]


@pytest.mark.parametrize("order", [1, 2])
def test_euler_steps_move_along_the_ode_of_a_point_mass_to_it(order):
    # For data concentrated at c the ideal denoiser is D = c: each Euler step scales x - c by next_sigma / sigma,
    # and the last step (to 0) lands exactly on c (for Heun too: its last step is Euler).
    c = torch.tensor([[0.25, -0.5]])
    seen = []

    def denoise(x, sigma):
        seen.append((x.clone(), sigma[0].item()))
        return c.expand_as(x)

    x0 = torch.tensor([[3.0, 1.0]])
    cfg = SamplerConfig(num_steps=3, order=order)
    out = edm_sample(denoise, x0, cfg)
    torch.testing.assert_close(out, c.expand_as(out))
    sig = build_sigmas(3, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    firsts = [x for x, s in seen if s in sig[:-1]][: 3]
    torch.testing.assert_close(firsts[1], c + (x0 - c) * sig[1] / sig[0])
    assert len(seen) == (3 if order == 1 else 5)


def test_training_sigma_is_log_normal_with_the_official_loc_and_scale():
    torch.manual_seed(0)
    s = sample_training_sigma(200_000, loc=-0.4, scale=1.2, sigma_min=2e-3, sigma_max=20.0)
    assert s.min() >= 2e-3 and s.max() <= 20.0
    assert s.log().median().item() == pytest.approx(-0.4, abs=0.02)
    q = torch.quantile(s.log()[:100_000], torch.tensor([0.1587, 0.8413]))  # +-1 std of a normal
    assert q.tolist() == pytest.approx([-1.6, 0.8], abs=0.03)
    assert (s == 20.0).float().mean().item() == pytest.approx(0.0023, abs=0.001)  # P(z > (ln 20 + 0.4) / 1.2)


def test_offset_noise_is_one_draw_per_image_and_channel():
    torch.manual_seed(0)
    x = torch.zeros(4000, 3, 5, 6)
    noisy = apply_noise(x, torch.zeros(4000), 0.3)
    assert torch.equal(noisy, noisy[..., :1, :1].expand_as(noisy))  # constant over the image
    assert noisy[:, :, 0, 0].std().item() == pytest.approx(0.3, rel=0.05)
    plain = apply_noise(x, torch.full((4000,), 2.0), 0.0)
    assert plain.std().item() == pytest.approx(2.0, rel=0.01)


def test_quantize_floors_onto_the_8_bit_grid():
    d = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.5])
    want = torch.tensor([0, 0, 127, 254, 255]).float() / 255 * 2 - 1  # 127.5 floors to 127
    torch.testing.assert_close(quantize(d), want)


def test_ada_group_norm_scales_and_shifts_the_plain_group_norm():
    torch.manual_seed(0)
    norm = AdaGroupNorm(64, 8)
    x, cond = torch.randn(2, 64, 3, 4), torch.randn(2, 8)
    scale, shift = norm.linear(cond).chunk(2, dim=1)
    want = F.group_norm(x, 2, eps=1e-5) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    torch.testing.assert_close(norm(x, cond), want)
