"""Continuous camera tokenizer: the KL-regularised autoencoder of latent diffusion (Rombach et al.,
"High-Resolution Image Synthesis with Latent Diffusion Models", arXiv 2112.10752), after the official
code CompVis/latent-diffusion at commit a506df5756472e2ebaf9078affdde2c4f1502cd4:

- ``ldm/models/autoencoder.py`` AutoencoderKL: encoder with doubled output (double_z) -> 1x1
  quant_conv to 2 * embed_dim moments -> DiagonalGaussianDistribution -> sample (training) or mode
  -> 1x1 post_quant_conv -> decoder;
- ``ldm/modules/distributions/distributions.py`` DiagonalGaussianDistribution (ported below);
- ``ldm/modules/losses/contperceptual.py`` LPIPSWithDiscriminator: rec = |x - x_rec| + perceptual_weight * p;
  nll = rec / exp(logvar) + logvar with a learned scalar logvar; loss = sum(nll) / N
  + kl_weight * sum(KL) / N + d_weight * disc_factor * g_loss (d_weight only when disc_factor > 0),
  plus the discriminator's disc_factor * hinge loss (see gan.py for how one optimizer steps both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import BevCnnConfig, Decoder2d, Encoder2d
from drivewm.tokenizers.camera import CameraAutoencoder, frames_to_batch, psnr, to_pixels, to_uint8
from drivewm.tokenizers.gan import GanConfig

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
"""Clamp of the posterior's log-variance (latent-diffusion's)."""


class DiagonalGaussianDistribution:
    """N(mean, diag(exp(logvar))) from moments [N, 2C, h, w] split along channels."""

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        self.parameters = parameters
        self.mean, self.logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(self.logvar, LOGVAR_MIN, LOGVAR_MAX)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if self.deterministic:
            self.var = self.std = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample [N]: 0.5 * sum(mean^2 + var - 1 - logvar)."""
        if self.deterministic:
            return self.mean.new_zeros(self.mean.shape[0])
        return 0.5 * torch.sum(torch.pow(self.mean, 2) + self.var - 1.0 - self.logvar, dim=[1, 2, 3])


@dataclass(kw_only=True)
class KLAutoencoderConfig:
    name: str = "camera_kl_autoencoder"
    """Registered model name."""
    image_size: list[int] = field(default_factory=lambda: [64, 128])
    """Camera image [H, W]; both divisible by the downsampling factor."""
    cnn: BevCnnConfig = field(default_factory=lambda: BevCnnConfig(channels=64, channel_mult=[1, 2, 2], num_res_blocks=2))
    """Encoder/decoder widths and levels (len(channel_mult) - 1 halvings: [1, 2, 2] is 4x)."""
    z_channels: int = 4
    """Latent channels of the decoder's input; the encoder outputs twice as many (mean and log-variance)."""
    embed_dim: int = 4
    """Channels of the continuous latent a world model sees (latent-diffusion's f4 models: 3; SD: 4)."""
    kl_weight: float = 1.0e-6
    """Weight of the KL term (latent-diffusion's kl_weight)."""
    logvar_init: float = 0.0
    """Initial value of the learned output log-variance."""
    sample_posterior: bool = True
    """Decode a posterior sample in training (else its mode); encode() always gives the mode."""
    perceptual_weight: float = 1.0
    """Weight of the perceptual term; it counts only when perceptual_network names a file."""
    perceptual_network: str = ""
    """TorchScript feature network for the perceptual term (empty: no perceptual term; nothing is downloaded)."""
    gan: GanConfig = field(default_factory=GanConfig)
    """The patch-GAN discriminator and its schedule."""


class KLAutoencoder(CameraAutoencoder):
    """Camera frames <-> continuous latents [..., embed_dim, H/f, W/f]."""

    def __init__(self, cfg: KLAutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self._build_loss_parts(cfg.image_size, cfg.cnn.downsample, cfg.gan)
        self.encoder = Encoder2d(cfg.cnn, 3, 2 * cfg.z_channels)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.decoder = Decoder2d(cfg.cnn, cfg.z_channels, 3)
        self.logvar = nn.Parameter(torch.ones(()) * cfg.logvar_init)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.cfg.embed_dim, *self.latent_hw)

    def encode_distribution(self, pixels: torch.Tensor) -> DiagonalGaussianDistribution:
        """Pixels [N, 3, H, W] -> the posterior over latents [N, embed_dim, h, w]."""
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(pixels)))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [..., embed_dim, h, w] -> pixels [..., 3, H, W]."""
        x, lead = frames_to_batch(z)
        out = self.decoder(self.post_quant_conv(x))
        return out.reshape(*lead, *out.shape[1:])

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, 3] -> posterior means [..., embed_dim, h, w]."""
        x, lead = frames_to_batch(to_pixels(self.check_images(images)))
        z = self.encode_distribution(x).mode()
        return z.reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [..., embed_dim, h, w] -> pixels [..., 3, H, W] in [-1, 1]."""
        return self.decode_latents(latents)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, 3] -> uint8 reconstructions through the posterior means."""
        return to_uint8(self.decode(self.encode(images)))

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch['camera'] uint8 [B, T, H, W, 3]; latent-diffusion's LPIPSWithDiscriminator on every frame."""
        x, _ = frames_to_batch(self.batch_frames(batch))  # [N, 3, H, W]
        posterior = self.encode_distribution(x)
        z = posterior.sample() if self.cfg.sample_posterior and self.training else posterior.mode()
        xrec = self.decode_latents(z)
        rec_loss, p_loss = self.reconstruction_loss(x, xrec)
        nll = rec_loss / torch.exp(self.logvar) + self.logvar
        nll_loss = torch.sum(nll) / nll.shape[0]
        kl_loss = torch.sum(posterior.kl()) / x.shape[0]
        use_adaptive = self.adversary is not None and self.adversary.cfg.disc_factor > 0.0
        gen_term, d_loss, adv_logs = self.adversarial_terms(x, xrec, nll_loss, adaptive=use_adaptive)
        ae_loss = nll_loss + self.cfg.kl_weight * kl_loss + gen_term
        return {
            "loss": ae_loss + d_loss,
            "ae_loss": ae_loss.detach(),
            "nll_loss": nll_loss.detach(),
            "kl_loss": kl_loss.detach(),
            "logvar": self.logvar.detach(),
            "rec_l1": (x - xrec).abs().mean().detach(),
            "p_loss": p_loss,
            "psnr": psnr(xrec, x),
            **adv_logs,
        }


@register_model("camera_kl_autoencoder", KLAutoencoderConfig, kind="tokenizer")
def build_kl_autoencoder(cfg: KLAutoencoderConfig) -> KLAutoencoder:
    return KLAutoencoder(cfg)
