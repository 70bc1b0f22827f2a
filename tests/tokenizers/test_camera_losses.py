"""The VQ-GAN and KL-autoencoder loss parts against hand-computed answers and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from drivewm.errors import DrivewmError
from drivewm.tokenizers.gan import (
    Adversary,
    GanConfig,
    NLayerDiscriminator,
    adaptive_weight,
    adopt_weight,
    feature_distance,
    hinge_d_loss,
    load_feature_network,
    vanilla_d_loss,
)
from drivewm.tokenizers.kl_autoencoder import DiagonalGaussianDistribution


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    nll = (w**2).sum()  # grad 2w = [2, 4], norm sqrt(20)
    g = 3.0 * w[0]  # grad [3, 0], norm 3
    got = adaptive_weight(nll, g, w, disc_weight=0.5)
    assert got.item() == pytest.approx(math.sqrt(20.0) / (3.0 + 1e-4) * 0.5, rel=1e-6)
    assert not got.requires_grad


def test_adaptive_weight_is_clamped_at_1e4():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    nll = (w**2).sum()
    g = 0.0 * w.sum()  # zero adversarial gradient: sqrt(20) / 1e-4 = 44721 -> 1e4
    assert adaptive_weight(nll, g, w, disc_weight=2.0).item() == pytest.approx(2.0e4)


def test_hinge_and_vanilla_losses_known_values():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    # real: mean(relu(1 - [2, .5])) = .25; fake: mean(relu(1 + [-2, .5])) = .75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    want = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-0.5)) + math.log1p(math.exp(-2.0)) + math.log1p(math.exp(0.5))) / 2
    assert vanilla_d_loss(real, fake).item() == pytest.approx(want, rel=1e-6)


def test_adopt_weight_switches_on_at_the_threshold():
    assert [adopt_weight(0.7, s, threshold=3) for s in range(5)] == [0.0, 0.0, 0.0, 0.7, 0.7]


def test_patch_gan_output_grid_matches_pix2pix():
    # pix2pix's 70x70 PatchGAN (3 layers) maps 256 x 256 to 30 x 30 logits.
    d = NLayerDiscriminator(3, ndf=8, n_layers=3)
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3


def test_each_player_gets_only_the_gradient_of_its_own_loss():
    torch.manual_seed(0)
    adv = Adversary(GanConfig(disc_channels=4, disc_layers=2))
    gen = torch.nn.Conv2d(3, 3, 1)
    x = torch.randn(2, 3, 16, 16)
    fake = gen(x)
    adv.generator_loss(fake).backward()
    assert all(p.grad is None for p in adv.parameters())  # the generator's term moves no D weight
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    gen.zero_grad()
    d_loss, _, _ = adv.discriminator_loss(x, gen(x))
    d_loss.backward()
    assert gen.weight.grad is None or gen.weight.grad.abs().sum() == 0  # D's loss moves no generator weight
    assert all(p.grad is not None for p in adv.parameters())


def test_feature_distance_of_unit_features_known_value():
    fx = torch.zeros(1, 2, 1, 2)
    fy = torch.zeros(1, 2, 1, 2)
    fx[0, 0] = 3.0  # normalised: (1, 0) at both positions
    fy[0, 1, 0, 0] = 5.0  # normalised: (0, 1) at position 0
    fy[0, 0, 0, 1] = 2.0  # (1, 0) at position 1
    # position 0: |(1,0) - (0,1)|^2 = 2; position 1: 0; mean 1; two maps (the same twice) sum to 2.
    assert feature_distance(fx, fy).item() == pytest.approx(1.0, rel=1e-6)
    assert feature_distance([fx, fx], [fy, fy]).item() == pytest.approx(2.0, rel=1e-6)


def test_missing_or_bad_feature_network_is_a_one_line_error(tmp_path):
    with pytest.raises(DrivewmError, match="not a file"):
        load_feature_network(tmp_path / "vgg.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(DrivewmError, match="not a TorchScript file") as e:
        load_feature_network(bad)
    assert "\n" not in str(e.value)


def test_kl_equals_the_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    moments = torch.randn(3, 4, 5, 6)  # [N, 2C, h, w]
    post = DiagonalGaussianDistribution(moments)
    mean, logvar = moments[:, :2], moments[:, 2:]
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean.double(), (0.5 * logvar.double()).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum([1, 2, 3])
    torch.testing.assert_close(post.kl().double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(post.mode(), mean)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    sample = post.sample(torch.Generator().manual_seed(1))
    torch.testing.assert_close(sample, mean + (0.5 * logvar).exp() * noise)
