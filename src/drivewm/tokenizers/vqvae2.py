"""Hierarchical VQ-VAE-2 camera tokenizer (Razavi et al., "Generating Diverse High-Fidelity Images with
VQ-VAE-2", arXiv 1906.00446; used for video by "Predicting Video with VQVAE", arXiv 2103.01950).

Two code grids per frame (the paper's Fig. 2a and Algorithm 1):

    x -> E_bottom (down f)                      -> h_b        [N, C, H/f, W/f]
    h_b -> E_top (down 2) -> quantize           -> e_top      [N, D, H/2f, W/2f]   top codes
    e_top -> D_top (up 2) -> concat with h_b -> 1x1 conv -> quantize -> e_bottom   bottom codes
    [upsample(e_top), e_bottom] -> D (up f)     -> x_rec

The bottom codes are conditioned on the top: ``bottom_indices(images, top)`` quantizes the bottom
level given any top codes. Loss (the paper's): ||x - x_rec||^2 + both quantizers' losses (commitment
beta, EMA codebooks by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.errors import DrivewmError
from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import BevCnnConfig, Decoder2d, Encoder2d
from drivewm.tokenizers.camera import camera_pixels, check_image_size, check_images, frames_to_batch, psnr, to_pixels, to_uint8
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer


@dataclass(kw_only=True)
class VQVAE2Config:
    name: str = "camera_vqvae2"
    """Registered model name."""
    image_size: list[int] = field(default_factory=lambda: [64, 128])
    """Camera image [H, W]; both divisible by twice the bottom downsampling factor."""
    bottom: BevCnnConfig = field(default_factory=lambda: BevCnnConfig(channels=64, channel_mult=[1, 2, 2], num_res_blocks=2, attention=False))
    """Bottom encoder and the final decoder (down/up by its factor, 4x for [1, 2, 2])."""
    top: BevCnnConfig = field(default_factory=lambda: BevCnnConfig(channels=128, channel_mult=[1, 1], num_res_blocks=2, attention=False))
    """Top encoder and top decoder; must halve exactly once (channel_mult of length 2)."""
    hidden_channels: int = 128
    """Width of the bottom encoder's output h_b."""
    embed_dim: int = 64
    """Width of both levels' code vectors (the paper: 64)."""
    top_quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=512))
    """Quantizer of the top level (the paper: 512 codes, EMA)."""
    bottom_quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=512))
    """Quantizer of the bottom level (the paper: 512 codes, EMA)."""
    codebook_weight: float = 1.0
    """Weight of the quantizers' losses."""


class VQVAE2(nn.Module):
    """Camera frames <-> (top tokens [.., H/2f, W/2f], bottom tokens [.., H/f, W/f])."""

    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        if cfg.top.downsample != 2:
            raise DrivewmError(f"vqvae2 top.channel_mult must halve once (2 entries), got {cfg.top.channel_mult}")
        self.cfg = cfg
        f = cfg.bottom.downsample
        self.image_hw = check_image_size(cfg.image_size, 2 * f)
        self.bottom_hw = (self.image_hw[0] // f, self.image_hw[1] // f)
        self.top_hw = (self.bottom_hw[0] // 2, self.bottom_hw[1] // 2)
        d = cfg.embed_dim
        self.enc_b = Encoder2d(cfg.bottom, 3, cfg.hidden_channels)
        self.enc_t = Encoder2d(cfg.top, cfg.hidden_channels, d)
        self.quantize_t = build_quantizer(cfg.top_quantizer, d)
        self.dec_t = Decoder2d(cfg.top, d, d)
        self.quant_conv_b = nn.Conv2d(cfg.hidden_channels + d, d, 1)
        self.quantize_b = build_quantizer(cfg.bottom_quantizer, d)
        self.upsample_t = nn.ConvTranspose2d(d, d, 4, stride=2, padding=1)
        self.dec = Decoder2d(cfg.bottom, 2 * d, 3)

    @property
    def token_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(top grid, bottom grid)."""
        return self.top_hw, self.bottom_hw

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_images(images, self.image_hw)

    # ------------------------------------------------------------------ stages on frames [N, ...]
    def encode_top(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizeOutput]:
        """Pixels [N, 3, H, W] -> (h_b [N, C, hb, wb], top quantizer output on [N, ht, wt, D])."""
        h_b = self.enc_b(x)
        return h_b, self.quantize_t(self.enc_t(h_b).permute(0, 2, 3, 1))

    def quantize_bottom(self, h_b: torch.Tensor, top_quantized: torch.Tensor) -> QuantizeOutput:
        """Bottom quantizer output [N, hb, wb, D] given h_b and the top codes [N, ht, wt, D]."""
        cond = self.dec_t(top_quantized.permute(0, 3, 1, 2))  # [N, D, hb, wb]
        z = self.quant_conv_b(torch.cat([cond, h_b], 1))
        return self.quantize_b(z.permute(0, 2, 3, 1))

    def decode_codes(self, top_quantized: torch.Tensor, bottom_quantized: torch.Tensor) -> torch.Tensor:
        """Codes [..., ht, wt, D] and [..., hb, wb, D] -> pixels [..., 3, H, W]."""
        lead = tuple(top_quantized.shape[:-3])
        qt = top_quantized.reshape(-1, *top_quantized.shape[-3:]).permute(0, 3, 1, 2)
        qb = bottom_quantized.reshape(-1, *bottom_quantized.shape[-3:]).permute(0, 3, 1, 2)
        out = self.dec(torch.cat([self.upsample_t(qt), qb], 1))
        return out.reshape(*lead, *out.shape[1:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizeOutput, QuantizeOutput]:
        """Pixels [N, 3, H, W] -> (reconstruction, top output, bottom output)."""
        h_b, qt = self.encode_top(x)
        qb = self.quantize_bottom(h_b, qt.quantized)
        return self.decode_codes(qt.quantized, qb.quantized), qt, qb

    # ------------------------------------------------------------------ tokens
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [..., H, W, 3] -> (top ids [..., ht, wt], bottom ids [..., hb, wb])."""
        x, lead = frames_to_batch(to_pixels(self.check_images(images)))
        h_b, qt = self.encode_top(x)
        qb = self.quantize_bottom(h_b, qt.quantized)
        return qt.indices.reshape(*lead, *self.top_hw), qb.indices.reshape(*lead, *self.bottom_hw)

    @torch.no_grad()
    def bottom_indices(self, images: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Bottom ids [..., hb, wb] of images [..., H, W, 3] quantized given the top ids ``top`` [..., ht, wt]."""
        x, lead = frames_to_batch(to_pixels(self.check_images(images)))
        h_b = self.enc_b(x)
        qb = self.quantize_bottom(h_b, self.quantize_t.indices_to_codes(top.long().reshape(-1, *self.top_hw)))
        return qb.indices.reshape(*lead, *self.bottom_hw)

    @torch.no_grad()
    def decode(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        """(top ids [..., ht, wt], bottom ids [..., hb, wb]) -> pixels [..., 3, H, W] in [-1, 1]."""
        if tuple(top.shape[-2:]) != self.top_hw or tuple(bottom.shape[-2:]) != self.bottom_hw or top.shape[:-2] != bottom.shape[:-2]:
            raise DrivewmError(
                f"token ids must be top [..., {self.top_hw[0]}, {self.top_hw[1]}] and bottom "
                f"[..., {self.bottom_hw[0]}, {self.bottom_hw[1]}], got {tuple(top.shape)} and {tuple(bottom.shape)}"
            )
        return self.decode_codes(self.quantize_t.indices_to_codes(top.long()), self.quantize_b.indices_to_codes(bottom.long()))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, 3] -> uint8 reconstructions through both token grids."""
        return to_uint8(self.decode(*self.encode(images)))

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch['camera'] uint8 [B, T, H, W, 3]; frames are tokenized independently."""
        x, _ = frames_to_batch(camera_pixels(batch, self.image_hw))  # [N, 3, H, W]
        xrec, qt, qb = self(x)
        mse = F.mse_loss(xrec, x)
        loss = mse + self.cfg.codebook_weight * (qt.loss + qb.loss)
        return {
            "loss": loss,
            "mse": mse.detach(),
            "psnr": psnr(xrec, x),
            "quant_loss_top": qt.loss.detach(),
            "quant_loss_bottom": qb.loss.detach(),
            **{f"{k}_top": v.detach() for k, v in qt.logs.items()},
            **{f"{k}_bottom": v.detach() for k, v in qb.logs.items()},
        }


@register_model("camera_vqvae2", VQVAE2Config, kind="tokenizer")
def build_vqvae2(cfg: VQVAE2Config) -> VQVAE2:
    return VQVAE2(cfg)
