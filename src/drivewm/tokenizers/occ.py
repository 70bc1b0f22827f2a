"""OccWorld's scene tokenizer (Zheng et al., "OccWorld: Learning a 3D Occupancy World Model for
Autonomous Driving", arXiv 2311.16038): a VQ-VAE over 3D semantic occupancy.

occ [B, X, Y, Z] class ids -> a learnable embedding per class (class_dim) -> height folded into
channels [B, Z * class_dim, X, Y] -> 2D CNN encoder (down by ``cnn.downsample``) -> quantizer ->
BEV token grid [B, X/f, Y/f] -> mirrored decoder -> [B, Z * class_dim, X, Y] -> height unfolded and,
as in OccWorld, dot-multiplied with the class-embedding matrix to give per-voxel class logits
(``tied_logits``). Loss: ce_weight * cross-entropy (optionally class-weighted)
+ lovasz_weight * Lovasz-softmax + vq_weight * quantizer loss (OccWorld: 10, 1, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import BevCnnConfig, BevTokenizer, Decoder2d, Encoder2d
from drivewm.tokenizers.lovasz import lovasz_softmax
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer


@dataclass(kw_only=True)
class OccTokenizerConfig:
    name: str = "occ_vqvae"
    """Registered model name."""
    grid: Any = "tiny"
    """The input grid [X, Y, Z] and its class table: a preset name (drivewm.data.spec.GRID_PRESETS), a grid
    written out ({shape, voxel_size, lower, classes, free_id}) or from_store (the episode store's)."""
    class_dim: int = 8
    """Width of the learnable embedding of each class (OccWorld: 8)."""
    cnn: BevCnnConfig = field(default_factory=BevCnnConfig)
    """Encoder/decoder widths, levels (downsampling factor) and attention."""
    z_channels: int = 128
    """Width of the latent vectors that are quantized (the code dimension)."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """The quantizer (VQ codebook of 512 codes by default, or FSQ)."""
    tied_logits: bool = True
    """Per-voxel logits as the dot product with the class-embedding matrix (OccWorld); else a linear head."""
    ce_weight: float = 10.0
    """Weight of the cross-entropy term."""
    lovasz_weight: float = 1.0
    """Weight of the Lovasz-softmax term."""
    vq_weight: float = 1.0
    """Weight of the quantizer loss."""
    class_weights: list[float] = field(default_factory=list)
    """Cross-entropy weight per class id (empty: uniform)."""


class OccTokenizer(BevTokenizer):
    """VQ-VAE from semantic occupancy to a BEV grid of discrete tokens and back."""

    def __init__(self, cfg: OccTokenizerConfig):
        super().__init__(cfg.grid, cfg.cnn)
        self.cfg = cfg
        z = self.grid.shape[2]
        self.num_classes = self.grid.num_classes
        if cfg.class_weights and len(cfg.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(cfg.class_weights)} entries, the class table {self.num_classes}")
        self.class_embed = nn.Embedding(self.num_classes, cfg.class_dim)
        self.encoder = Encoder2d(cfg.cnn, z * cfg.class_dim, cfg.z_channels)
        self.quantizer = build_quantizer(cfg.quantizer, cfg.z_channels)
        out_per_voxel = cfg.class_dim if cfg.tied_logits else self.num_classes
        self.decoder = Decoder2d(cfg.cnn, cfg.z_channels, z * out_per_voxel)
        if cfg.class_weights:
            self.register_buffer("ce_class_weights", torch.tensor(cfg.class_weights, dtype=torch.float32))
        else:
            self.ce_class_weights = None

    def check_occ(self, occ: torch.Tensor) -> torch.Tensor:
        """Validate occ [B, X, Y, Z] class ids against the grid and class table; return it as long."""
        if occ.dtype.is_floating_point or occ.dtype == torch.bool:
            raise ValueError(f"occ must hold integer class ids, got dtype {occ.dtype}")
        if occ.dim() != 4 or tuple(occ.shape[1:]) != self.grid.shape:
            raise ValueError(
                f"occ must be [B, {', '.join(map(str, self.grid.shape))}] for grid "
                f"{self.cfg.grid if isinstance(self.cfg.grid, str) else self.grid.describe()!r}, got {tuple(occ.shape)}"
            )
        occ = occ.long()
        if occ.numel() and (int(occ.min()) < 0 or int(occ.max()) >= self.num_classes):
            raise ValueError(
                f"occ class ids must be in [0, {self.num_classes}) (the grid's class table), "
                f"got range [{int(occ.min())}, {int(occ.max())}]"
            )
        return occ

    def encode_latent(self, occ: torch.Tensor) -> torch.Tensor:
        """occ [B, X, Y, Z] -> continuous latent [B, z_channels, h, w] before quantization."""
        occ = self.check_occ(occ)
        b, x, y, z = occ.shape
        e = self.class_embed(occ)  # [B, X, Y, Z, E]
        e = e.reshape(b, x, y, z * self.cfg.class_dim).permute(0, 3, 1, 2)  # [B, Z*E, X, Y]
        return self.encoder(e)

    def quantize(self, latent: torch.Tensor) -> QuantizeOutput:
        """[B, D, h, w] -> QuantizeOutput with quantized [B, h, w, D] and indices [B, h, w]."""
        return self.quantizer(latent.permute(0, 2, 3, 1))

    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantized latent [B, h, w, D] -> per-voxel class logits [B, C, X, Y, Z]."""
        b = zq.shape[0]
        x, y, z = self.grid.shape
        h = self.decoder(zq.permute(0, 3, 1, 2))  # [B, Z*E', X, Y]
        h = h.permute(0, 2, 3, 1).reshape(b, x, y, z, -1)  # [B, X, Y, Z, E']
        if self.cfg.tied_logits:
            h = h @ self.class_embed.weight.t()  # [B, X, Y, Z, C]
        return h.permute(0, 4, 1, 2, 3)  # [B, C, X, Y, Z]

    def forward(self, occ: torch.Tensor) -> tuple[torch.Tensor, QuantizeOutput]:
        """occ [B, X, Y, Z] -> (logits [B, C, X, Y, Z], quantizer output)."""
        q = self.quantize(self.encode_latent(occ))
        return self.decode_latent(q.quantized), q

    @torch.no_grad()
    def encode(self, occ: torch.Tensor) -> torch.Tensor:
        """occ [B, X, Y, Z] -> token ids [B, h, w] (long)."""
        return self.quantize(self.encode_latent(occ)).indices

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] -> quantized latent [B, h, w, D]."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.token_shape:
            raise ValueError(f"codes must be [B, {self.token_shape[0]}, {self.token_shape[1]}], got {tuple(codes.shape)}")
        return self.quantizer.indices_to_codes(codes.long())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids [B, h, w] -> per-voxel class logits [B, C, X, Y, Z]."""
        return self.decode_latent(self.codes_to_latent(codes))

    @torch.no_grad()
    def reconstruct(self, occ: torch.Tensor) -> torch.Tensor:
        """occ [B, X, Y, Z] -> reconstructed class ids [B, X, Y, Z] (uint8) through the tokens."""
        return self.decode(self.encode(occ)).argmax(1).to(torch.uint8)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch['occ'] [B, T, X, Y, Z] (or [B, X, Y, Z]); frames are tokenized independently."""
        if "occ" not in batch:
            raise KeyError(f"the occupancy tokenizer needs batch['occ']; got keys {sorted(batch)}")
        occ = batch["occ"]
        if occ.dim() == 5:
            occ = occ.flatten(0, 1)  # [B*T, X, Y, Z]
        occ = self.check_occ(occ)
        logits, q = self(occ)
        ce = F.cross_entropy(logits, occ, weight=self.ce_class_weights)
        lovasz = lovasz_softmax(logits.softmax(1), occ)
        total = self.cfg.ce_weight * ce + self.cfg.lovasz_weight * lovasz + self.cfg.vq_weight * q.loss
        with torch.no_grad():
            acc = (logits.argmax(1) == occ).float().mean()
        return {"loss": total, "ce": ce.detach(), "lovasz": lovasz.detach(), "vq": q.loss.detach(), "acc": acc,
                **{k: v.detach() for k, v in q.logs.items()}}


@register_model("occ_vqvae", OccTokenizerConfig, kind="tokenizer")
def build_occ_tokenizer(cfg: OccTokenizerConfig) -> OccTokenizer:
    return OccTokenizer(cfg)
