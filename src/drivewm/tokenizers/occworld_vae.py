"""OccWorld's scene tokenizer with the official structure, so an official state dict loads by name.

Ported from wzzheng/OccWorld, commit 1ee7f77ecc4c984a4f7f6411d95c2e6e73806b6e: `model/VAE/vae_2d_resnet.py`
(`VAERes2D`, `Encoder2D`, `Decoder2D`, `ResnetBlock`, `AttnBlock`, `Upsample`, `Downsample`; themselves
taming-transformers') and `model/VAE/quantizer.py` (`VectorQuantizer`, legacy loss, 2D). What differs from
drivewm's `occ_vqvae`: self-attention after every res block at the resolutions in `attn_resolutions` (50 on
Occ3D: the lowest), the decoder with `num_res_blocks` res blocks per level (not + 1), a plain codebook (no EMA,
no k-means, no restarts) between 1x1 convs (`quant_conv`, `post_quant_conv`), GroupNorm with
channels // 4 groups up to 32 channels. The world model reads the codebook vectors themselves (`codes_to_latent`,
before `post_quant_conv`), as `TransVQVAE`. Loss as `config/train_vqvae.py`: 10 x cross-entropy + Lovasz +
the embedding loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.data.spec import resolve_grid
from drivewm.registry import register_model
from drivewm.tokenizers.lovasz import lovasz_softmax


def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)  # swish


def Normalize(in_channels: int) -> nn.GroupNorm:  # noqa: N802 - the official name
    groups = in_channels // 4 if in_channels <= 32 else 32
    return nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, shape) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        dy, dx = shape[0] - x.shape[2], shape[1] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(x)


class Downsample(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.norm = Normalize(in_channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(in_channels, in_channels, 1, 1, 0) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        attn = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w)) * (int(c) ** (-0.5))
        attn = attn.softmax(2)  # [b, hw of q, hw of k]
        out = torch.bmm(v.reshape(b, c, h * w), attn.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Encoder2D(nn.Module):
    def __init__(self, *, ch: int, ch_mult, num_res_blocks: int, attn_resolutions, dropout: float, in_channels: int,
                 resolution: int, z_channels: int) -> None:
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        curr_res, in_ch_mult = resolution, (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                curr_res = curr_res // 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)  # double_z False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        shapes = []
        h = self.conv_in(x)
        for i_level in range(self.num_resolutions):
            for i_block in range(self.num_res_blocks):
                h = self.down[i_level].block[i_block](h)
                if len(self.down[i_level].attn) > 0:
                    h = self.down[i_level].attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                shapes.append(h.shape[-2:])
                h = self.down[i_level].downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(nonlinearity(self.norm_out(h))), shapes


class Decoder2D(nn.Module):
    def __init__(self, *, ch: int, out_ch: int, ch_mult, num_res_blocks: int, attn_resolutions, dropout: float,
                 resolution: int, z_channels: int) -> None:
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.up = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks):  # as the encoder (taming: num_res_blocks + 1)
                block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = Upsample(block_in)
                curr_res = curr_res * 2
            self.up.insert(0, up)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor, shapes: list) -> torch.Tensor:
        shapes = list(shapes)
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            for i_block in range(self.num_res_blocks):
                h = self.up[i_level].block[i_block](h)
                if len(self.up[i_level].attn) > 0:
                    h = self.up[i_level].attn[i_block](h)
            if i_level != 0:
                h = self.up[i_level].upsample(h, shapes.pop())
        return self.conv_out(nonlinearity(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The official codebook (legacy loss: ||sg(zq) - z||^2 + beta ||zq - sg(z)||^2) between 1x1 convs."""

    def __init__(self, n_e: int, e_dim: int, beta: float, z_channels: int) -> None:
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)
        self.quant_conv = nn.Conv2d(z_channels, e_dim, 1)
        self.post_quant_conv = nn.Conv2d(e_dim, z_channels, 1)

    def forward_quantizer(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, e_dim, h, w] (after quant_conv) -> (straight-through z_q [B, e_dim, h, w], loss, indices [B, h, w])."""
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, self.e_dim)
        w = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1) - 2 * flat @ w.t()
        idx = d.argmin(1)
        z_q = self.embedding(idx).view(z.shape)
        loss = torch.mean((z_q.detach() - z) ** 2) + self.beta * torch.mean((z_q - z.detach()) ** 2)
        z_q = z + (z_q - z).detach()
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, idx.view(z.shape[:3])


@dataclass(kw_only=True)
class OccWorldVAEConfig:
    name: str = "occ_vqvae_published"
    """Registered model name."""
    grid: Any = "occ3d"
    """The input grid [X, Y, Z] and its class table (OccWorld: Occ3D, 200 x 200 x 16, 18 classes): a preset name,
    a grid written out ({shape, voxel_size, lower, classes, free_id}) or from_store (drivewm.data.spec.resolve_grid)."""
    expansion: int = 8
    """Width of each class's embedding (OccWorld: 8); height x expansion channels enter the encoder."""
    ch: int = 64
    """Base width (OccWorld: 64)."""
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Width multiplier per level; len - 1 downsamplings (OccWorld: 1, 2, 4 -> 200 to 50)."""
    num_res_blocks: int = 2
    """Res blocks per level, encoder and decoder alike."""
    attn_resolutions: list[int] = field(default_factory=lambda: [50])
    """Grid sizes (X) at which self-attention follows every res block (OccWorld: 50, the lowest on Occ3D)."""
    z_channels: int = 128
    """Encoder output / decoder input width (OccWorld: 128)."""
    n_e: int = 512
    """Codebook size."""
    e_dim: int = 128
    """Code dimension (OccWorld: 128)."""
    beta: float = 1.0
    """Commitment weight of the legacy VQ loss (OccWorld: 1)."""
    dropout: float = 0.0
    ce_weight: float = 10.0
    """Cross-entropy weight (OccWorld's ReconLoss: 10)."""
    lovasz_weight: float = 1.0
    vq_weight: float = 1.0


class OccWorldVAE(nn.Module):
    """`VAERes2D` with its `VectorQuantizer` under the official attribute names (`encoder`, `decoder`,
    `class_embeds`, `vqvae`), with drivewm's tokenizer interface (encode / decode / codes_to_latent / loss)."""

    def __init__(self, cfg: OccWorldVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = resolve_grid(cfg.grid)
        x, y, z = self.grid.shape
        self.num_classes = self.grid.num_classes
        self.encoder = Encoder2D(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks,
                                 attn_resolutions=cfg.attn_resolutions, dropout=cfg.dropout,
                                 in_channels=z * cfg.expansion, resolution=x, z_channels=cfg.z_channels)
        self.decoder = Decoder2D(ch=cfg.ch, out_ch=z * cfg.expansion, ch_mult=cfg.ch_mult,
                                 num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions,
                                 dropout=cfg.dropout, resolution=x, z_channels=cfg.z_channels)
        self.class_embeds = nn.Embedding(self.num_classes, cfg.expansion)
        self.vqvae = VectorQuantizer(cfg.n_e, cfg.e_dim, cfg.beta, cfg.z_channels)
        self.shapes = []  # each level's map size before its downsampling, for the decoder's padding
        size = (x, y)
        for _ in cfg.ch_mult[:-1]:
            self.shapes.append(size)
            size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
        self._token_shape = size

    @property
    def vocab_size(self) -> int:
        return self.cfg.n_e

    @property
    def token_shape(self) -> tuple[int, int]:
        return self._token_shape

    def check_occ(self, occ: torch.Tensor) -> torch.Tensor:
        if occ.dtype.is_floating_point or occ.dim() != 4 or tuple(occ.shape[1:]) != self.grid.shape:
            raise ValueError(f"occ must be integer class ids [B, {', '.join(map(str, self.grid.shape))}] for grid "
                             f"{self.cfg.grid!r}, got {occ.dtype} {tuple(occ.shape)}")
        return occ.long()

    def forward_encoder(self, occ: torch.Tensor) -> torch.Tensor:
        """occ [B, X, Y, Z] -> the latent after quant_conv [B, e_dim, h, w] (as `TransVQVAE`)."""
        b, x, y, z = occ.shape
        e = self.class_embeds(occ).reshape(b, x, y, z * self.cfg.expansion).permute(0, 3, 1, 2)
        return self.vqvae.quant_conv(self.encoder(e)[0])

    def decode_codes(self, z_q: torch.Tensor) -> torch.Tensor:
        """Code vectors [B, e_dim, h, w] -> per-voxel class logits [B, C, X, Y, Z] (`forward_decoder`)."""
        b = z_q.shape[0]
        x, y, z = self.grid.shape
        h = self.decoder(self.vqvae.post_quant_conv(z_q), self.shapes)  # [B, Z*E, X, Y]
        h = h.permute(0, 2, 3, 1).reshape(b, x, y, z, self.cfg.expansion)
        return (h @ self.class_embeds.weight.t()).permute(0, 4, 1, 2, 3)

    @torch.no_grad()
    def encode(self, occ: torch.Tensor) -> torch.Tensor:
        return self.vqvae.forward_quantizer(self.forward_encoder(self.check_occ(occ)))[2]

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] -> code vectors [B, h, w, e_dim] (`get_codebook_entry`)."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.token_shape:
            raise ValueError(f"codes must be [B, {self.token_shape[0]}, {self.token_shape[1]}], got {tuple(codes.shape)}")
        return self.vqvae.embedding(codes.long())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode_codes(self.codes_to_latent(codes).permute(0, 3, 1, 2))

    @torch.no_grad()
    def reconstruct(self, occ: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(occ)).argmax(1).to(torch.uint8)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "occ" not in batch:
            raise KeyError(f"the occupancy tokenizer needs batch['occ']; got keys {sorted(batch)}")
        occ = batch["occ"]
        occ = self.check_occ(occ.flatten(0, 1) if occ.dim() == 5 else occ)
        z_q, vq, _ = self.vqvae.forward_quantizer(self.forward_encoder(occ))
        logits = self.decode_codes(z_q)
        ce = F.cross_entropy(logits, occ)
        lovasz = lovasz_softmax(logits.softmax(1), occ)
        total = self.cfg.ce_weight * ce + self.cfg.lovasz_weight * lovasz + self.cfg.vq_weight * vq
        with torch.no_grad():
            acc = (logits.argmax(1) == occ).float().mean()
        return {"loss": total, "ce": ce.detach(), "lovasz": lovasz.detach(), "vq": vq.detach(), "acc": acc}


@register_model("occ_vqvae_published", OccWorldVAEConfig, kind="tokenizer")
def build_occworld_vae(cfg: OccWorldVAEConfig) -> OccWorldVAE:
    return OccWorldVAE(cfg)
