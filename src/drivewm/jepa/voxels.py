"""Dense voxel encoder with sparse-convolution semantics: occupancy or LiDAR points -> BEV features.

The published AD-L-JEPA and Occupancy-MAE encoders are SECOND-style sparse 3-D CNNs (spconv). This is the
same network on a dense grid, without a sparse-conv dependency, and with the same arithmetic:

- a submanifold conv (``SubMConv3d``) is a dense bias-free conv whose output is kept at the active sites only
  (inactive inputs are zero, so they contribute nothing);
- a strided sparse conv (``SparseConv3d``) is a dense strided conv whose output is active wherever its receptive
  field holds an active site (a max-pool of the activity mask);
- BatchNorm statistics are taken over the active sites only (spconv normalises its feature rows).

Layout as ``VoxelBackBone8x`` (OpenPCDet ``spconv_backbone.py``; ``Encoder`` in AD-L-JEPA-Release
pcdet/models/backbones_3d/ad_l_jepa.py at 648f1db): ``conv_input`` (SubM + BN + ReLU), stage 1 of SubM blocks,
then stages each opening with a stride-2 sparse conv followed by SubM blocks, then ``conv_out`` (a (3, 1, 1)
stride-(2, 1, 1) sparse conv over the height) and the remaining height folded into channels (HeightCompression)
-> a BEV map [B, out_channels * Z', X / 2^S, Y / 2^S].

Inputs: ``occ`` class grids [B, X, Y, Z] (the occupied, non-free voxels are the active sites, each with a
learned class embedding), or LiDAR points [B, P, 4] with a valid mask [B, P], voxelised with the mean of the
points of each voxel as its feature (MeanVFE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

VOXEL_MODALITIES = ("occ", "lidar")


@dataclass(kw_only=True)
class VoxelEncoderConfig:
    modality: str = "occ"
    """'occ' (uint8 class grid [B, X, Y, Z]; occupied voxels active) or 'lidar' (points [B, P, 4] voxelised)."""
    grid_shape: list[int] = field(default_factory=lambda: [64, 64, 8])
    """Voxel grid X, Y, Z."""
    grid_lower: list[float] = field(default_factory=lambda: [-25.6, -25.6, -1.0])
    """Minimum corner (m) of the voxel grid (lidar)."""
    voxel_size: list[float] = field(default_factory=lambda: [0.8, 0.8, 0.8])
    """Voxel edge lengths (m) along X, Y, Z (lidar)."""
    num_classes: int = 18
    """Occupancy class ids (Occ3D table, free = the last id)."""
    class_dim: int = 4
    """Class-embedding width of an occupied voxel (occ); LiDAR voxels carry the 4 point features."""
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    """Widths of the stages; every stage after the first halves X, Y and Z (VoxelBackBone8x: 16, 32, 64, 64)."""
    blocks: int = 2
    """SubM blocks per downsampling stage (VoxelBackBone8x: 2; the first stage has 1)."""
    out_channels: int = 128
    """Width of ``conv_out``; the BEV width is out_channels times the height left after it."""
    bn_momentum: float = 0.01
    """Momentum of the BatchNorm running statistics (OpenPCDet's 0.01 suits long runs; a run of a few hundred
    steps evaluates with statistics still near their initial values unless this is raised, e.g. to 0.1)."""

    def __post_init__(self) -> None:
        if self.modality not in VOXEL_MODALITIES:
            raise ValueError(f"voxel encoder modality {self.modality!r} not in {VOXEL_MODALITIES}")
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 1:
            raise ValueError(f"voxel encoder grid_shape must be three positive ints, got {self.grid_shape}")
        if len(self.voxel_size) != 3 or min(self.voxel_size) <= 0:
            raise ValueError(f"voxel encoder voxel_size must be three positive lengths, got {self.voxel_size}")
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"voxel encoder bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if not self.channels:
            raise ValueError("voxel encoder channels must name at least one stage")
        f = self.patch
        if self.grid_shape[0] % f or self.grid_shape[1] % f:
            raise ValueError(f"voxel encoder grid_shape {self.grid_shape[:2]} must be divisible by the BEV stride {f}")

    @property
    def patch(self) -> int:
        """BEV cells of the input per cell of the output map (the downsampling factor)."""
        return 2 ** (len(self.channels) - 1)

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.grid_shape[0] // self.patch, self.grid_shape[1] // self.patch

    @property
    def out_height(self) -> int:
        z = self.grid_shape[2]
        for _ in self.channels[1:]:
            z = (z + 2 - 3) // 2 + 1
        return (z + 2 - 3) // 2 + 1  # conv_out: kernel 3, stride 2, padding 1 along the height

    @property
    def dim(self) -> int:
        """Channels of the BEV map."""
        return self.out_channels * self.out_height


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the active sites only (spconv's BN on the feature rows); inactive sites stay zero."""

    def masked(self, x: Tensor, active: Tensor) -> Tensor:
        """x [B, C, Z, X, Y], active bool [B, Z, X, Y] -> normalised x, zero off the active sites."""
        rows = x.permute(0, 2, 3, 4, 1)[active]  # [A, C]
        if rows.shape[0] < 2 and self.training:
            # One row has no batch variance; spconv would fail here too, so use the running statistics.
            rows = F.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        else:
            rows = super().forward(rows)
        out = x.new_zeros(x.shape[0], *x.shape[2:], x.shape[1])
        out[active] = rows
        return out.permute(0, 4, 1, 2, 3)


def _bn(c: int, momentum: float) -> MaskedBatchNorm:
    return MaskedBatchNorm(c, eps=1e-3, momentum=momentum)  # OpenPCDet's norm_fn: eps 1e-3, momentum 0.01


class SparseBlock(nn.Module):
    """``post_act_block``: (SubM or strided sparse) conv, BN, ReLU on the active sites."""

    def __init__(self, cin: int, cout: int, *, kernel=3, stride=1, padding=1, subm: bool = True, momentum: float = 0.01) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = _bn(cout, momentum)
        self.subm = subm

    def forward(self, x: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        if not self.subm:
            k, s, p = self.conv.kernel_size, self.conv.stride, self.conv.padding
            active = F.max_pool3d(active[:, None].float(), k, s, p)[:, 0] > 0
        y = self.conv(x) * active[:, None]
        return torch.relu(self.bn.masked(y, active)), active


class VoxelEncoder(nn.Module):
    """``forward(feats, active) -> [B, dim, X / patch, Y / patch]``; ``voxelize(x, valid)`` -> (feats, active)."""

    def __init__(self, cfg: VoxelEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cin = cfg.class_dim if cfg.modality == "occ" else 4
        if cfg.modality == "occ":
            self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim)
        ch, m = cfg.channels, cfg.bn_momentum
        layers = [SparseBlock(cin, ch[0], momentum=m), SparseBlock(ch[0], ch[0], momentum=m)]  # conv_input, conv1
        for a, b in zip(ch[:-1], ch[1:]):
            layers.append(SparseBlock(a, b, stride=2, subm=False, momentum=m))
            layers += [SparseBlock(b, b, momentum=m) for _ in range(cfg.blocks)]
        layers.append(SparseBlock(ch[-1], cfg.out_channels, kernel=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), subm=False,
                                  momentum=m))
        self.layers = nn.ModuleList(layers)

    def voxelize(self, x: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Input -> voxel features [B, C, Z, X, Y] (zero off the active sites) and activity bool [B, Z, X, Y]."""
        cfg = self.cfg
        if cfg.modality == "occ":
            if x.dim() != 4:
                raise ValueError(f"voxel encoder (occ) expects [B, X, Y, Z] class ids, got shape {tuple(x.shape)}")
            active = (x != cfg.num_classes - 1).permute(0, 3, 1, 2)  # [B, Z, X, Y]
            feats = self.embed(x.long()).permute(0, 4, 3, 1, 2) * active[:, None]
            return feats, active
        return mean_vfe(x, valid, cfg)

    def forward(self, feats: Tensor, active: Tensor) -> Tensor:
        """Voxel features [B, C, Z, X, Y] on the sites ``active`` -> BEV map [B, dim, X / patch, Y / patch]."""
        x = feats * active[:, None]
        for layer in self.layers:
            x, active = layer(x, active)
        b, c, z, h, w = x.shape
        return x.reshape(b, c * z, h, w)  # HeightCompression: the height folded into channels


def mean_vfe(points: Tensor, valid: Tensor | None, cfg: VoxelEncoderConfig) -> tuple[Tensor, Tensor]:
    """LiDAR points [B, P, 4] (+ valid [B, P]) -> the mean point of each voxel [B, 4, Z, X, Y], activity [B, Z, X, Y]."""
    if points.dim() != 3 or points.shape[-1] != 4:
        raise ValueError(f"voxel encoder (lidar) expects points [B, P, 4] (x, y, z, intensity), got {tuple(points.shape)}")
    b, p, _ = points.shape
    X, Y, Z = cfg.grid_shape
    lower = points.new_tensor(cfg.grid_lower)
    size = points.new_tensor(cfg.voxel_size)
    idx = torch.floor((points[..., :3] - lower) / size).long()  # [B, P, 3]
    inside = ((idx >= 0) & (idx < idx.new_tensor([X, Y, Z]))).all(-1)
    if valid is not None:
        inside &= valid
    cell = (idx[..., 2] * X + idx[..., 0]) * Y + idx[..., 1]  # (z, x, y) row-major
    cell = torch.where(inside, cell, torch.full_like(cell, Z * X * Y))  # outside / padding -> a dump cell
    cell = cell + torch.arange(b, device=points.device)[:, None] * (Z * X * Y + 1)
    n = b * (Z * X * Y + 1)
    sums = points.new_zeros(n, 4).index_add_(0, cell.reshape(-1), points.reshape(-1, 4))
    counts = points.new_zeros(n).index_add_(0, cell.reshape(-1), torch.ones_like(cell.reshape(-1), dtype=points.dtype))
    mean = (sums / counts.clamp_min(1.0)[:, None]).view(b, Z * X * Y + 1, 4)[:, :-1]
    active = (counts.view(b, Z * X * Y + 1)[:, :-1] > 0).view(b, Z, X, Y)
    return mean.transpose(1, 2).reshape(b, 4, Z, X, Y), active


def lidar_frames(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The window layout ``lidar`` [B, T, P, 4] + ``lidar_count`` [B, T] (or one frame) -> points [B * T, P, 4]
    and valid [B * T, P]."""
    if "lidar" not in batch or "lidar_count" not in batch:
        raise KeyError("LiDAR models need batch['lidar'] and batch['lidar_count'] (add 'lidar' to data.keys)")
    points, count = batch["lidar"], batch["lidar_count"]
    if points.dim() == 4:
        points, count = points.flatten(0, 1), count.flatten(0, 1)
    if points.dim() != 3 or count.shape != points.shape[:1]:
        raise ValueError(f"lidar must be [B, T, P, 4] with lidar_count [B, T], got {tuple(batch['lidar'].shape)} "
                         f"and {tuple(batch['lidar_count'].shape)}")
    valid = torch.arange(points.shape[1], device=points.device)[None] < count[:, None]
    return points.float(), valid


__all__ = ["MaskedBatchNorm", "VoxelEncoder", "VoxelEncoderConfig", "lidar_frames", "mean_vfe"]
