"""What every camera tokenizer shares: the pixel convention, the batch's camera windows, and the
VQ-GAN style loss machinery (L1 + optional perceptual term + patch-GAN with the adaptive weight).

Pixels: the store holds ``camera`` as uint8 [T, H, W, 3] per episode, so a training batch carries
uint8 [B, T, H, W, 3]. Models work on float pixels [..., 3, H, W] in [-1, 1] (taming's and
latent-diffusion's convention): ``to_pixels`` and ``to_uint8`` convert.

Training step counting: the adversarial terms start after ``gan.disc_start`` optimizer steps. The model
keeps the count in a ``global_step`` buffer that the engine's ``on_step_end`` hook advances, so it is
saved in checkpoints and a resumed run continues the schedule step for step.

Weight average (drivewm's option, not taming's): with a ``WeightAverage`` the same hook keeps an
exponential moving average of the autoencoder's weights, and the last training step hands the average
to the model, so evaluation and the saved weights use it; training itself never sees it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from drivewm.errors import DrivewmError
from drivewm.tokenizers.gan import Adversary, GanConfig, PerceptualDistance, adaptive_weight, load_feature_network

CAMERA_KEY = "camera"


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    return images.movedim(-1, -3).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3] (rounded, clipped)."""
    return ((pixels.detach().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).movedim(-3, -1)


def psnr(pixels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of pixels in [-1, 1] (peak-to-peak 2, the same figure as on the 0..255 images)."""
    mse = (pixels.detach().float() - reference.detach().float()).pow(2).mean()
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


def check_image_size(image_size: list[int], factor: int) -> tuple[int, int]:
    """(H, W) of a config's image_size, both divisible by ``factor``."""
    if len(image_size) != 2 or min(image_size) < 1:
        raise DrivewmError(f"image_size must be [H, W] with positive sizes, got {image_size}")
    h, w = image_size
    if h % factor or w % factor:
        raise DrivewmError(f"image_size {h} x {w} must be divisible by the downsampling factor {factor}")
    return h, w


def check_images(images: torch.Tensor, image_hw: tuple[int, int], what: str = "camera") -> torch.Tensor:
    """Validate uint8 images [..., H, W, 3] of the configured size."""
    if images.dtype != torch.uint8:
        raise DrivewmError(f"{what} must be uint8 images [..., H, W, 3], got dtype {images.dtype}")
    if images.dim() < 4 or tuple(images.shape[-3:]) != (*image_hw, 3):
        raise DrivewmError(
            f"{what} must be [..., {image_hw[0]}, {image_hw[1]}, 3] (image_size {list(image_hw)}), got {tuple(images.shape)}"
        )
    return images


def camera_pixels(batch: dict[str, torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
    """batch['camera'] uint8 [B, T, H, W, 3] (a [B, H, W, 3] batch counts as T = 1) as pixels [B, T, 3, H, W]."""
    if CAMERA_KEY not in batch:
        raise DrivewmError(f"a camera tokenizer needs batch[{CAMERA_KEY!r}] (data.keys: [camera]); got keys {sorted(batch)}")
    cam = check_images(batch[CAMERA_KEY], image_hw, f"batch[{CAMERA_KEY!r}]")
    if cam.dim() == 4:
        cam = cam[:, None]
    if cam.dim() != 5:
        raise DrivewmError(f"batch[{CAMERA_KEY!r}] must be [B, T, H, W, 3], got {tuple(cam.shape)}")
    return to_pixels(cam)


class WeightAverage(nn.Module):
    """Exponential moving average of some parameters, held in buffers so checkpoints carry it and a resumed
    run continues it. The decay warms up as latent-diffusion's ``LitEma`` (``ldm/modules/ema.py``):
    the n-th update (n = 1, 2, ...) uses min(decay, (1 + n) / (10 + n)), so early weights fade fast."""

    def __init__(self, params: list[nn.Parameter], decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise DrivewmError(f"weight_ema must be in (0, 1) (0 turns it off), got {decay}")
        self.decay = decay
        self.register_buffer("updates", torch.tensor(0, dtype=torch.long))
        for i, p in enumerate(params):
            self.register_buffer(f"p{i}", p.detach().clone())

    def averages(self) -> list[torch.Tensor]:
        return [b for name, b in self.named_buffers() if name != "updates"]

    @torch.no_grad()
    def update(self, params: list[nn.Parameter]) -> None:
        self.updates.add_(1)
        n = int(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(self.averages(), [p.detach() for p in params], 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, params: list[nn.Parameter]) -> None:
        torch._foreach_copy_([p.data for p in params], self.averages())


class CameraAutoencoder(nn.Module):
    """Base of the camera tokenizers: image checks, the reconstruction and adversarial terms, the step count.

    A subclass sets ``self.cfg`` (with ``image_size``, ``perceptual_weight``, ``perceptual_network``, ``gan``),
    calls ``_build_loss_parts`` and has a ``decoder`` whose ``net`` ends in the output layer (``last_layer``).
    """

    adversary: Adversary | None
    weight_average: WeightAverage | None

    def _build_loss_parts(self, image_size: list[int], downsample: int, gan: GanConfig) -> None:
        self.image_hw = check_image_size(image_size, downsample)
        self.latent_hw = (self.image_hw[0] // downsample, self.image_hw[1] // downsample)
        self.adversary = Adversary(gan) if gan.enabled else None
        self.weight_average = None
        self.perceptual = PerceptualDistance()
        self.register_buffer("global_step", torch.tensor(0, dtype=torch.long))

    def averaged_parameters(self) -> list[nn.Parameter]:
        """The autoencoder's parameters (not the discriminator's): what ``weight_ema`` averages."""
        return [p for name, p in self.named_parameters() if not name.startswith("adversary.")]

    def _build_weight_average(self, decay: float) -> None:
        """Call after every parameter exists; decay 0 keeps no average (and no extra checkpoint entries)."""
        self.weight_average = WeightAverage(self.averaged_parameters(), decay) if decay else None

    def last_layer(self) -> torch.Tensor:
        """The decoder's final weight, where taming's adaptive weight compares the two gradients."""
        return self.decoder.net[-1].weight

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_images(images, self.image_hw)

    def batch_frames(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return camera_pixels(batch, self.image_hw)

    # ------------------------------------------------------------------ losses
    def load_external_files(self) -> None:
        """Read the files the config names (the perceptual feature network); the train layer calls this once."""
        if self.cfg.perceptual_network:
            self.perceptual.attach(load_feature_network(self.cfg.perceptual_network))

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.global_step.fill_(step + 1)
        if self.weight_average is not None:
            self.weight_average.update(self.averaged_parameters())
            if step + 1 == total_steps:
                self.weight_average.copy_to(self.averaged_parameters())

    def reconstruction_loss(self, x: torch.Tensor, xrec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-pixel |x - x_rec| + perceptual_weight * p [N, 3, H, W], mean p) on frames [N, 3, H, W]."""
        rec_loss = torch.abs(x.contiguous() - xrec.contiguous())
        if self.cfg.perceptual_weight > 0 and self.perceptual.active:
            p_loss = self.perceptual(x.contiguous(), xrec.contiguous())
            rec_loss = rec_loss + self.cfg.perceptual_weight * p_loss
            return rec_loss, p_loss.detach().mean()
        return rec_loss, x.new_zeros(())

    def adversarial_terms(
        self, x: torch.Tensor, xrec: torch.Tensor, nll_loss: torch.Tensor, adaptive: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(generator term d_weight * disc_factor * g_loss, discriminator loss disc_factor * L_D, logs) on frames [N, 3, H, W].

        ``adaptive=False`` keeps d_weight at 0 (latent-diffusion skips it when disc_factor is 0).
        The adaptive weight needs gradients: outside training or under no_grad it is 0, as in taming."""
        zero = nll_loss.new_zeros(())
        if self.adversary is None:
            return zero, zero, {}
        disc_factor = self.adversary.factor(int(self.global_step))
        if disc_factor == 0.0:
            # Taming evaluates both players and multiplies them by 0 before disc_start. Skipping the
            # discriminator's passes gives the same gradients for less compute per warm-up step:
            # its parameters still get (zero) gradients, so the optimizer counts its steps and holds its state
            # as taming's does. Only its BatchNorm running statistics (used in eval mode) start later.
            d_zero = 0.0 * sum(p.sum() for p in self.adversary.parameters())
            logs = dict.fromkeys(("g_loss", "d_weight", "disc_loss", "logits_real", "logits_fake"), zero)
            return zero, d_zero, {**logs, "disc_factor": torch.tensor(0.0)}
        g_loss = self.adversary.generator_loss(xrec)
        if adaptive and self.training and torch.is_grad_enabled():
            d_weight = adaptive_weight(nll_loss, g_loss, self.last_layer(), self.adversary.cfg.disc_weight)
        else:
            d_weight = zero
        d_raw, logit_real, logit_fake = self.adversary.discriminator_loss(x, xrec)
        d_loss = disc_factor * d_raw
        logs = {
            "g_loss": g_loss.detach(),
            "d_weight": d_weight.detach(),
            "disc_factor": torch.tensor(float(disc_factor)),
            "disc_loss": d_loss.detach(),
            "logits_real": logit_real,
            "logits_fake": logit_fake,
        }
        return d_weight * disc_factor * g_loss, d_loss, logs


def check_heads(width: int, heads: int, what: str) -> None:
    if heads < 1 or width % heads or (width // heads) % 2:
        raise DrivewmError(f"{what}: width {width} must split into {heads} heads of even size")


def frames_to_batch(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """[..., C, H, W] -> ([N, C, H, W], leading shape)."""
    lead = tuple(x.shape[:-3])
    return x.reshape(math.prod(lead), *x.shape[-3:]), lead
