"""VQ-GAN camera tokenizer (Esser et al., "Taming Transformers for High-Resolution Image Synthesis",
arXiv 2012.09841), after taming-transformers' ``taming/models/vqgan.py`` (VQModel, commit 3ba01b2):

    pixels [N, 3, H, W] in [-1, 1] -> conv encoder (down f) -> 1x1 quant_conv -> quantizer
    -> 1x1 post_quant_conv -> conv decoder -> [N, 3, H, W]

Loss (``VQLPIPSWithDiscriminator``): nll = mean(|x - x_rec| + perceptual_weight * p(x, x_rec));
loss = nll + d_weight * disc_factor * g_loss + codebook_weight * q_loss, plus the discriminator's
disc_factor * hinge loss on detached reconstructions (see ``gan.py`` for how one optimizer steps both).
The quantizer is drivewm's VQ (EMA codebook, k-means init, dead-code restarts) or FSQ.

Frames of a window are tokenized independently; ``TemporalVQ`` (temporal_vq.py) mixes them in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from drivewm.errors import DrivewmError
from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import BevCnnConfig, Decoder2d, Encoder2d
from drivewm.tokenizers.camera import CameraAutoencoder, frames_to_batch, psnr, to_pixels, to_uint8
from drivewm.tokenizers.gan import GanConfig
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer


@dataclass(kw_only=True)
class VQGANConfig:
    name: str = "camera_vqgan"
    """Registered model name."""
    image_size: list[int] = field(default_factory=lambda: [64, 128])
    """Camera image [H, W]; both divisible by the downsampling factor."""
    cnn: BevCnnConfig = field(default_factory=lambda: BevCnnConfig(channels=64, channel_mult=[1, 2, 2], num_res_blocks=2))
    """Encoder/decoder widths and levels (len(channel_mult) - 1 halvings: [1, 2, 2] is 4x)."""
    z_channels: int = 64
    """Width of the encoder's output and the decoder's input."""
    embed_dim: int = 32
    """Width of the quantized vectors (taming's embed_dim, between the 1x1 quant convs)."""
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=1024))
    """The quantizer: VQ (EMA, k-means init, dead-code restart) or FSQ."""
    codebook_weight: float = 1.0
    """Weight of the quantizer loss (taming's codebook_weight)."""
    perceptual_weight: float = 1.0
    """Weight of the perceptual term; it counts only when perceptual_network names a file."""
    perceptual_network: str = ""
    """TorchScript feature network for the perceptual term (empty: no perceptual term; nothing is downloaded)."""
    gan: GanConfig = field(default_factory=GanConfig)
    """The patch-GAN discriminator and its schedule."""
    weight_ema: float = 0.0
    """Decay of an exponential moving average of the autoencoder's weights (encoder, decoder, 1x1 convs; not the
    discriminator, not the EMA codebook), kept during training and loaded into the model at the last training
    step, so evaluation and the saved weights use it (drivewm's option, not taming's; 0: off)."""


class VQGAN(CameraAutoencoder):
    """Camera frames <-> a grid of discrete tokens per frame."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.cfg = cfg
        self._build_loss_parts(cfg.image_size, cfg.cnn.downsample, cfg.gan)
        self.encoder = Encoder2d(cfg.cnn, 3, cfg.z_channels)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.quantizer = build_quantizer(cfg.quantizer, cfg.embed_dim)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.decoder = Decoder2d(cfg.cnn, cfg.z_channels, 3)
        self._build_weight_average(cfg.weight_ema)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def token_shape(self) -> tuple[int, int]:
        return self.latent_hw

    # Per-frame models mix nothing across time; the temporal tokenizer overrides these two.
    def mix_encoded(self, h: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        return h

    def mix_quantized(self, h: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        return h

    # ------------------------------------------------------------------ the three stages
    def encode_latent(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [..., 3, H, W] -> latent before quantization [..., h, w, embed_dim]."""
        x, lead = frames_to_batch(pixels)
        h = self.quant_conv(self.mix_encoded(self.encoder(x), lead))  # [N, D, h, w]
        return h.permute(0, 2, 3, 1).reshape(*lead, *h.shape[2:], h.shape[1])

    def quantize(self, latent: torch.Tensor) -> QuantizeOutput:
        """[..., h, w, D] -> QuantizeOutput with quantized [..., h, w, D] and indices [..., h, w]."""
        return self.quantizer(latent)

    def decode_codes(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latent [..., h, w, D] -> pixels [..., 3, H, W]."""
        lead = tuple(quantized.shape[:-3])
        z = quantized.reshape(-1, *quantized.shape[-3:]).permute(0, 3, 1, 2)  # [N, D, h, w]
        out = self.decoder(self.mix_quantized(self.post_quant_conv(z), lead))
        return out.reshape(*lead, *out.shape[1:])

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, QuantizeOutput]:
        """Pixels [..., 3, H, W] -> (reconstruction [..., 3, H, W], quantizer output)."""
        q = self.quantize(self.encode_latent(pixels))
        return self.decode_codes(q.quantized), q

    # ------------------------------------------------------------------ tokens
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, 3] -> token ids [..., h, w] (long)."""
        return self.quantize(self.encode_latent(to_pixels(self.check_images(images)))).indices

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids [..., h, w] -> quantized latent [..., h, w, D]."""
        if indices.dim() < 2 or tuple(indices.shape[-2:]) != self.latent_hw:
            raise DrivewmError(f"token ids must be [..., {self.latent_hw[0]}, {self.latent_hw[1]}], got {tuple(indices.shape)}")
        return self.quantizer.indices_to_codes(indices.long())

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids [..., h, w] -> pixels [..., 3, H, W] in [-1, 1]."""
        return self.decode_codes(self.indices_to_codes(indices))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, 3] -> uint8 reconstructions through the tokens."""
        return to_uint8(self.decode(self.encode(images)))

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch['camera'] uint8 [B, T, H, W, 3]: taming's generator loss plus the discriminator's loss."""
        x = self.batch_frames(batch)  # [B, T, 3, H, W]
        xrec, q = self(x)
        frames, recs = x.flatten(0, 1), xrec.flatten(0, 1)  # [N, 3, H, W]
        rec_loss, p_loss = self.reconstruction_loss(frames, recs)
        nll_loss = torch.mean(rec_loss)
        gen_term, d_loss, adv_logs = self.adversarial_terms(frames, recs, nll_loss)
        ae_loss = nll_loss + gen_term + self.cfg.codebook_weight * q.loss
        return {
            "loss": ae_loss + d_loss,
            "ae_loss": ae_loss.detach(),
            "nll_loss": nll_loss.detach(),
            "rec_l1": (frames - recs).abs().mean().detach(),
            "p_loss": p_loss,
            "quant_loss": q.loss.detach(),
            "psnr": psnr(recs, frames),
            **adv_logs,
            **{k: v.detach() for k, v in q.logs.items()},
        }


@register_model("camera_vqgan", VQGANConfig, kind="tokenizer")
def build_vqgan(cfg: VQGANConfig) -> VQGAN:
    return VQGAN(cfg)
