"""Sparse voxel encoder: occupancy or LiDAR points -> BEV features, as the published spconv encoders.

The AD-L-JEPA and Occupancy-MAE encoders are SECOND-style sparse 3-D CNNs on spconv; this is the same network
on ``drivewm.backbones.sparse_conv`` (plain PyTorch, no dependency): only the active voxels are stored and
computed, ``SubMConv3d`` keeps the active set, a strided ``SparseConv3d`` activates every output whose receptive
field holds an active voxel, and BatchNorm normalises the feature rows of the active voxels.

Layout as ``VoxelBackBone8x`` (OpenPCDet ``spconv_backbone.py``; ``Encoder`` in AD-L-JEPA-Release
pcdet/models/backbones_3d/ad_l_jepa.py at 648f1db, and the encoder of ``Voxel_MAE`` in chaytonmin/Occupancy-MAE
pcdet/models/backbones_3d/voxel_mae.py at aef8653): ``conv_input`` (SubM + BN + ReLU), stage 1 of SubM blocks,
then stages each opening with a stride-2 sparse conv followed by SubM blocks, then ``conv_out`` (a (3, 1, 1)
stride-(2, 1, 1) sparse conv over the height), densified, with the remaining height folded into channels
(HeightCompression) -> a BEV map [B, out_channels * Z', X / 2^S, Y / 2^S].

Inputs: ``occ`` class grids [B, X, Y, Z] (the occupied, non-free voxels are the active sites, each with a
learned class embedding), or LiDAR points [B, P, 4] with a valid mask [B, P], voxelised with the mean of the
points of each voxel as its feature (MeanVFE). Voxel rows are (b, z, x, y), sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from drivewm.backbones.sparse_conv import (RulebookCache, SparseBatchNorm, SparseConv3d, SparseVoxels, linear_keys,
                                          unravel_keys)

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


def _bn(c: int, momentum: float) -> SparseBatchNorm:
    return SparseBatchNorm(c, eps=1e-3, momentum=momentum)  # OpenPCDet's norm_fn: eps 1e-3, momentum 0.01


class SparseBlock(nn.Module):
    """``post_act_block``: (SubM or strided sparse) conv, BN, ReLU on the active rows."""

    def __init__(self, cin: int, cout: int, *, kernel=3, stride=1, padding=1, subm: bool = True, momentum: float = 0.01,
                 indice_key: str | None = None) -> None:
        super().__init__()
        self.conv = SparseConv3d(cin, cout, kernel, stride=stride, padding=0 if subm else padding, subm=subm,
                                 indice_key=indice_key)
        self.bn = _bn(cout, momentum)

    def forward(self, x: SparseVoxels, cache: RulebookCache | None = None) -> SparseVoxels:
        y = self.conv(x, cache)
        return y.replace(torch.relu(self.bn(y.feats)))


class VoxelEncoder(nn.Module):
    """``forward(voxels) -> [B, dim, X / patch, Y / patch]``; ``voxelize(x, valid) -> SparseVoxels``."""

    def __init__(self, cfg: VoxelEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cin = cfg.class_dim if cfg.modality == "occ" else 4
        if cfg.modality == "occ":
            self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim)
        ch, m = cfg.channels, cfg.bn_momentum
        # conv_input and conv1 share the rulebook of the input sites (indice_key 'subm1'), as the published code
        layers = [SparseBlock(cin, ch[0], momentum=m, indice_key="subm1"),
                  SparseBlock(ch[0], ch[0], momentum=m, indice_key="subm1")]
        for stage, (a, b) in enumerate(zip(ch[:-1], ch[1:]), start=2):
            layers.append(SparseBlock(a, b, stride=2, subm=False, momentum=m))
            layers += [SparseBlock(b, b, momentum=m, indice_key=f"subm{stage}") for _ in range(cfg.blocks)]
        layers.append(SparseBlock(ch[-1], cfg.out_channels, kernel=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), subm=False,
                                  momentum=m))
        self.layers = nn.ModuleList(layers)

    def voxelize(self, x: Tensor, valid: Tensor | None = None) -> SparseVoxels:
        """Input -> the active voxels, rows (b, z, x, y) with their features (a class embedding, or MeanVFE)."""
        cfg = self.cfg
        if cfg.modality == "occ":
            if x.dim() != 4:
                raise ValueError(f"voxel encoder (occ) expects [B, X, Y, Z] class ids, got shape {tuple(x.shape)}")
            grid = x.permute(0, 3, 1, 2)  # [B, Z, X, Y]
            active = grid != cfg.num_classes - 1
            coords = active.nonzero()  # sorted (b, z, x, y)
            return SparseVoxels(coords, self.embed(grid[active].long()), tuple(grid.shape[1:]), grid.shape[0])
        return mean_vfe(x, valid, cfg)

    def forward(self, voxels: SparseVoxels) -> Tensor:
        """Active voxels -> BEV map [B, dim, X / patch, Y / patch] (the only dense tensor: spconv's ``.dense()``)."""
        cache: RulebookCache = {}
        x = voxels
        for layer in self.layers:
            x = layer(x, cache)
        out = x.dense()
        b, c, z, h, w = out.shape
        return out.reshape(b, c * z, h, w)  # HeightCompression: the height folded into channels


def mean_vfe(points: Tensor, valid: Tensor | None, cfg: VoxelEncoderConfig) -> SparseVoxels:
    """LiDAR points [B, P, 4] (+ valid [B, P]) -> the occupied voxels, each with the mean of its points."""
    if points.dim() != 3 or points.shape[-1] != 4:
        raise ValueError(f"voxel encoder (lidar) expects points [B, P, 4] (x, y, z, intensity), got {tuple(points.shape)}")
    b = points.shape[0]
    X, Y, Z = cfg.grid_shape
    lower = points.new_tensor(cfg.grid_lower)
    size = points.new_tensor(cfg.voxel_size)
    idx = torch.floor((points[..., :3] - lower) / size).long()  # [B, P, 3]
    inside = ((idx >= 0) & (idx < idx.new_tensor([X, Y, Z]))).all(-1)
    if valid is not None:
        inside &= valid
    batch = torch.arange(b, device=points.device)[:, None].expand_as(inside)
    coords = torch.stack([batch, idx[..., 2], idx[..., 0], idx[..., 1]], -1)[inside]  # [M, 4] (b, z, x, y)
    shape = (Z, X, Y)
    keys, inverse = torch.unique(linear_keys(coords, shape), return_inverse=True)  # sorted voxel keys
    sums = points.new_zeros(keys.numel(), 4).index_add_(0, inverse, points[inside])
    counts = points.new_zeros(keys.numel()).index_add_(0, inverse, points.new_ones(inverse.numel()))
    return SparseVoxels(unravel_keys(keys, shape), sums / counts[:, None], shape, b)


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


__all__ = ["SparseBlock", "VoxelEncoder", "VoxelEncoderConfig", "lidar_frames", "mean_vfe"]
