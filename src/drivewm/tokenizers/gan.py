"""The adversarial and perceptual parts of the VQ-GAN loss (Esser et al., "Taming Transformers for
High-Resolution Image Synthesis", arXiv 2012.09841), ported line by line from the official code,
CompVis/taming-transformers at commit 3ba01b241669f5ade541ce990f7650a3b8f65318:

- ``taming/modules/losses/vqperceptual.py``: ``adopt_weight``, ``hinge_d_loss``, ``vanilla_d_loss`` and
  ``VQLPIPSWithDiscriminator.calculate_adaptive_weight``:
  lambda = ||grad_L nll|| / (||grad_L g_loss|| + 1e-4), clamped to [0, 1e4], detached, times disc_weight,
  with L the decoder's last layer and g_loss = -mean(D(x_rec));
- ``taming/modules/discriminator/model.py``: ``NLayerDiscriminator``, the patch-GAN of pix2pix
  (Isola et al., arXiv 1611.07004) with BatchNorm, and its ``weights_init``.

One optimizer steps both players. Taming alternates two Adam optimizers on each batch; here the
model's ``loss`` returns the sum of the generator's loss and the discriminator's loss, with gradients
kept apart: the generator's adversarial term sees the discriminator through detached parameters (so
it moves only the autoencoder), and the discriminator's hinge loss sees detached reconstructions (so
it moves only the discriminator). One backward pass then gives each player exactly the gradient of
its own loss, and the engine's single AdamW performs a simultaneous update of both.

The perceptual term takes a feature network the user supplies as a TorchScript file (for example an
exported LPIPS-VGG trunk); nothing is downloaded. Its distance is LPIPS's with unit channel weights
(Zhang et al., arXiv 1801.03924, the "baseline" variant): per returned feature map, channel-normalised
features, squared difference summed over channels, averaged over positions; summed over maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from drivewm.errors import DrivewmError

ADAPTIVE_EPS = 1e-4
"""Added to the adversarial gradient's norm in the adaptive weight (taming's 1e-4)."""
ADAPTIVE_MAX = 1e4
"""Upper clamp of the adaptive weight (taming's 1e4)."""


@dataclass(kw_only=True)
class GanConfig:
    enabled: bool = True
    """Train with the patch-GAN discriminator; False gives a plain autoencoder (no discriminator at all)."""
    disc_start: int = 0
    """Optimizer step from which the adversarial terms count (taming's disc_start; before it disc_factor is 0)."""
    disc_factor: float = 1.0
    """Factor on both adversarial losses once started (taming's disc_factor)."""
    disc_weight: float = 1.0
    """Multiplier of the adaptive weight (taming's disc_weight)."""
    disc_layers: int = 3
    """Strided conv layers of the patch-GAN (taming's disc_num_layers)."""
    disc_channels: int = 64
    """Width of the discriminator's first layer (taming's disc_ndf)."""
    disc_loss: str = "hinge"
    """'hinge' or 'vanilla' (softplus) discriminator loss."""


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """``weight`` from step ``threshold`` on, ``value`` before (taming's adopt_weight)."""
    if global_step < threshold:
        weight = value
    return weight


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_rec)))."""
    loss_real = torch.mean(F.relu(1.0 - logits_real))
    loss_fake = torch.mean(F.relu(1.0 + logits_fake))
    return 0.5 * (loss_real + loss_fake)


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean softplus(-D(x)) + mean softplus(D(x_rec)))."""
    return 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))


_D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, disc_weight: float) -> torch.Tensor:
    """Taming's calculate_adaptive_weight: balances the adversarial gradient against the reconstruction's at ``last_layer``."""
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    d_weight = torch.norm(nll_grads) / (torch.norm(g_grads) + ADAPTIVE_EPS)
    d_weight = torch.clamp(d_weight, 0.0, ADAPTIVE_MAX).detach()
    return d_weight * disc_weight


def weights_init(m: nn.Module) -> None:
    """pix2pix / taming initialisation: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02), zero shifts."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class NLayerDiscriminator(nn.Module):
    """Patch-GAN: [N, in_ch, H, W] -> [N, 1, h, w] logits, one per receptive-field patch."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1 or ndf < 1:
            raise ValueError(f"gan.disc_layers and gan.disc_channels must be >= 1, got {n_layers}, {ndf}")
        kw, padw = 4, 1
        # BatchNorm has its own shift, so the convs before it carry no bias.
        sequence: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=False),
                nn.BatchNorm2d(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        sequence += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=False),
            nn.BatchNorm2d(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.main = nn.Sequential(*sequence)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Adversary(nn.Module):
    """The discriminator and both players' adversarial losses."""

    def __init__(self, cfg: GanConfig, in_channels: int = 3):
        super().__init__()
        if cfg.disc_loss not in _D_LOSSES:
            raise ValueError(f"gan.disc_loss must be one of {sorted(_D_LOSSES)}, got {cfg.disc_loss!r}")
        self.cfg = cfg
        self.discriminator = NLayerDiscriminator(in_channels, cfg.disc_channels, cfg.disc_layers)

    def factor(self, global_step: int) -> float:
        return adopt_weight(self.cfg.disc_factor, global_step, threshold=self.cfg.disc_start)

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """g_loss = -mean D(x_rec), through a detached copy of D's parameters (D's buffers still update)."""
        params = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        buffers = dict(self.discriminator.named_buffers())
        logits_fake = functional_call(self.discriminator, {**params, **buffers}, (fake.contiguous(),))
        return -torch.mean(logits_fake)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(D's loss before disc_factor, mean real logit, mean fake logit); both inputs are detached here."""
        logits_real = self.discriminator(real.contiguous().detach())
        logits_fake = self.discriminator(fake.contiguous().detach())
        return _D_LOSSES[self.cfg.disc_loss](logits_real, logits_fake), logits_real.detach().mean(), logits_fake.detach().mean()


def feature_distance(features_x: torch.Tensor | list | tuple, features_y: torch.Tensor | list | tuple) -> torch.Tensor:
    """LPIPS with unit weights between two feature pyramids: [N, 1, 1, 1]."""
    if isinstance(features_x, torch.Tensor):
        features_x, features_y = [features_x], [features_y]
    total = None
    for fx, fy in zip(features_x, features_y):
        nx = fx / (torch.sqrt(torch.sum(fx**2, dim=1, keepdim=True)) + 1e-10)
        ny = fy / (torch.sqrt(torch.sum(fy**2, dim=1, keepdim=True)) + 1e-10)
        d = ((nx - ny) ** 2).sum(1, keepdim=True).mean([2, 3], keepdim=True)  # [N, 1, 1, 1]
        total = d if total is None else total + d
    if total is None:
        raise ValueError("the perceptual feature network returned no feature maps")
    return total


class PerceptualDistance:
    """A frozen, user-supplied feature network and the distance on its features.

    Deliberately not an ``nn.Module`` attribute of the model: the network is no part of the
    tokenizer's weights (checkpoints and hub files do not hold it) and follows the input's device.
    """

    def __init__(self) -> None:
        self.network: nn.Module | None = None

    def attach(self, network: nn.Module) -> None:
        network.eval()
        for p in network.parameters():
            p.requires_grad_(False)
        self.network = network

    @property
    def active(self) -> bool:
        return self.network is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y [N, 3, H, W] in [-1, 1] -> [N, 1, 1, 1]; gradients flow to y (and x) only."""
        if self.network is None:
            raise RuntimeError("no perceptual feature network attached")
        self.network.to(x.device)
        return feature_distance(self.network(x), self.network(y))


def load_feature_network(path: str | Path) -> nn.Module:
    """Load the perceptual feature network, a TorchScript file (or a ``torch.export`` program, ``.pt2``)
    taking [N, 3, H, W] in [-1, 1] and returning one feature map [N, C, h, w] or a list of them.
    The user names the file; it is trusted like any program they run."""
    path = Path(path)
    if not path.is_file():
        raise DrivewmError(f"perceptual_network: {path} is not a file (a TorchScript feature network is needed; nothing is downloaded)")
    kind = "torch.export program" if path.suffix == ".pt2" else "TorchScript file"
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DrivewmError(f"perceptual_network: {path} is not a {kind} ({first})") from None
