"""Copilot4D's LiDAR tokenizer (Zhang et al., "Copilot4D: Learning Unsupervised World Models for
Autonomous Driving via Discrete Diffusion", arXiv 2311.01017), at the scale of our grids.

points [B, P, >=3] -> voxelized on the grid -> per-voxel PointNet (shared MLP on each point's
offset to its voxel centre, position and intensity; max-pooled per voxel) -> height folded into
channels [B, Z * C, X, Y] -> 2D CNN encoder -> quantizer -> BEV tokens [B, X/f, Y/f] -> decoder with
two heads: a neural feature grid [B, F, X, Y, Z] (a small MLP turns a trilinearly sampled feature
into a density) rendered along each LiDAR ray by differentiable volume rendering to a depth, and a
binary occupancy grid [B, 1, X, Y, Z] (logits) trained with BCE on the voxels each ray passes through
(free) and ends in (occupied); at evaluation it skips empty space (density zeroed where the
occupancy probability is below ``skip_threshold``), Copilot4D's spatial skipping.
Loss: depth L1 + surface_weight * surface concentration + bce_weight * BCE + vq_weight * quantizer loss.
The surface-concentration term is Copilot4D's rendering regulariser as we read the paper's text (it
follows UniSim, arXiv 2308.01898, by the same group): sum_i 1(|t_i - D_gt| > surface_margin) w_i per
ray, the rendering weight that lies away from the true return; in training each ray also gets
``surface_samples`` depths drawn uniformly within surface_margin of its true return, so the samples
concentrate near the surface (sorted in with the stratified ones).

Inputs: ``points`` [B, P, 3 or 4] in the ego frame and ``count`` [B] real rows per sweep (the
window datasets' zero-padded ``lidar`` / ``lidar_count``); intensity is divided by ``intensity_scale``
(nuScenes stores 0..255, the simulator 0..1). Rays start at each sweep's sensor origin: the batch's
``lidar_origin`` [B, (T,) 3] (the data contract's per-frame key), else the mount (0, 0, sensor_height);
only returns inside the grid are encoded and rendered. NaN/inf points raise ValueError. An empty sweep (count 0 or no return inside the grid) encodes to the tokens of an empty
scene and contributes no rays to the loss; a batch of empty sweeps has only the quantizer loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from drivewm.registry import register_model
from drivewm.tokenizers.bev_cnn import BevCnnConfig, BevTokenizer, Decoder2d, Encoder2d
from drivewm.tokenizers.quantizer import QuantizeOutput, QuantizerConfig, build_quantizer
from drivewm.tokenizers.render import ray_samples, sample_volume, surface_concentration, volume_render


@dataclass(kw_only=True)
class LidarTokenizerConfig:
    name: str = "lidar_vqvae"
    """Registered model name."""
    grid: Any = "tiny"
    """The grid fixing the voxelization and the rendered volume (range, voxel size, shape): a preset name, a
    grid written out ({shape, voxel_size, lower}) or from_store (the episode store's)."""
    sensor_height: float = 1.84
    """Height (m) of the LiDAR above the ego origin: every ray starts at (0, 0, sensor_height)."""
    point_channels: int = 32
    """Width C of the per-voxel PointNet features."""
    cnn: BevCnnConfig = field(default_factory=lambda: BevCnnConfig(channels=32, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False))
    """BEV encoder/decoder (downsampling factor = 2 ** (levels - 1))."""
    z_channels: int = 64
    """Width of the quantized latent vectors."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """The quantizer (VQ with 512 codes by default; Copilot4D uses 1024)."""
    feature_dim: int = 8
    """Channels F per voxel of the neural feature grid."""
    rays_per_sweep: int = 512
    """LiDAR rays rendered per sweep in training (a random subset of the returns)."""
    samples_per_ray: int = 48
    """Depth samples per ray (stratified, jittered in training)."""
    near: float = 0.5
    """Closest rendered depth (m)."""
    bce_weight: float = 1.0
    """Weight of the occupancy BCE term."""
    vq_weight: float = 1.0
    """Weight of the quantizer loss."""
    skip_threshold: float = 0.05
    """At evaluation, density is zeroed where the occupancy grid's probability is below this (0 disables)."""
    surface_weight: float = 1.0
    """Weight of the surface-concentration term (rendering weight farther than surface_margin from the return)."""
    surface_margin: float = 0.8
    """Half-width (m) of the band around each true return that the surface term and the surface samples use."""
    surface_samples: int = 16
    """Extra depth samples per ray in training, uniform within surface_margin of the true return (0: none)."""
    intensity_scale: float = 1.0
    """The PointNet reads intensity / intensity_scale (nuScenes' 0..255: 255; the simulator's 0..1: 1)."""


@dataclass
class LidarField:
    features: torch.Tensor
    """[B, F, X, Y, Z] neural feature grid."""
    occupancy: torch.Tensor
    """[B, 1, X, Y, Z] occupancy logits."""


class LidarTokenizer(BevTokenizer):
    def __init__(self, cfg: LidarTokenizerConfig):
        super().__init__(cfg.grid, cfg.cnn)
        self.cfg = cfg
        if cfg.surface_margin <= 0 or cfg.surface_samples < 0 or cfg.intensity_scale <= 0:
            raise ValueError(f"surface_margin and intensity_scale must be > 0 and surface_samples >= 0, got "
                             f"{cfg.surface_margin}, {cfg.intensity_scale}, {cfg.surface_samples}")
        z = self.grid.shape[2]
        c = cfg.point_channels
        self.pointnet = nn.Sequential(nn.Linear(7, c), nn.LayerNorm(c), nn.ReLU(), nn.Linear(c, c))
        self.encoder = Encoder2d(cfg.cnn, z * c, cfg.z_channels)
        self.quantizer = build_quantizer(cfg.quantizer, cfg.z_channels)
        self.decoder = Decoder2d(cfg.cnn, cfg.z_channels, z * (cfg.feature_dim + 1))
        self.density_mlp = nn.Sequential(nn.Linear(cfg.feature_dim, 32), nn.ReLU(), nn.Linear(32, 1))
        # Far end of every ray: the grid's horizontal half-diagonal bounds the depth of any return inside it.
        lo, hi = self.grid.lower, self.grid.upper
        self.far = float(max(abs(lo[0]), hi[0]) ** 2 + max(abs(lo[1]), hi[1]) ** 2) ** 0.5

    @property
    def origin(self) -> torch.Tensor:
        """The mount [3]: the sensor origin of sweeps that do not carry their own."""
        return torch.tensor([0.0, 0.0, self.cfg.sensor_height])

    def sensor_origin(self, b: int, device: torch.device | str, origin: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sweep ray origins [B, 3]: `origin` [B, 3] (stored per frame), else the mount."""
        if origin is None:
            return self.origin.to(device).expand(b, 3)
        if tuple(origin.shape) != (b, 3):
            raise ValueError(f"lidar_origin must be [B, 3] = [{b}, 3] per sweep, got {tuple(origin.shape)}")
        if not torch.isfinite(origin).all():
            raise ValueError("lidar_origin contains NaN or inf values")
        return origin.to(device).float()

    def valid_points(self, points: torch.Tensor, count: torch.Tensor | None, inside: bool = True) -> torch.Tensor:
        """Mask [B, P] of real returns inside the grid (all real returns when not `inside`); validates shapes
        and finiteness."""
        if points.dim() != 3 or points.shape[-1] < 3:
            raise ValueError(f"lidar points must be [B, P, 3 or 4], got {tuple(points.shape)}")
        b, p = points.shape[:2]
        real = torch.ones(b, p, dtype=torch.bool, device=points.device)
        if count is not None:
            if count.shape != (b,):
                raise ValueError(f"lidar_count must be [B] = [{b}], got {tuple(count.shape)}")
            real = torch.arange(p, device=points.device)[None] < count[:, None].to(points.device)
        if not torch.isfinite(points[real]).all():
            raise ValueError("lidar points contain NaN or inf values")
        if not inside:
            return real
        lower = torch.tensor(self.grid.lower, device=points.device)
        upper = torch.tensor(self.grid.upper, device=points.device)
        xyz = points[..., :3]
        inside = ((xyz >= lower) & (xyz < upper)).all(-1)
        return real & inside

    def voxel_features(self, points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """PointNet per voxel, max-pooled: [B, P, >=3] -> BEV features [B, Z * C, X, Y] (zeros where empty)."""
        b = points.shape[0]
        x, y, z = self.grid.shape
        c = self.cfg.point_channels
        vs = self.grid.voxel_size
        lower = torch.tensor(self.grid.lower, device=points.device)
        xyz = points[..., :3]
        idx = torch.floor((xyz - lower) / vs).long().clamp_min(0)  # [B, P, 3]
        idx = torch.minimum(idx, torch.tensor(self.grid.shape, device=points.device) - 1)
        centre = lower + (idx.float() + 0.5) * vs
        inten = points[..., 3:4] / self.cfg.intensity_scale if points.shape[-1] > 3 else torch.zeros_like(xyz[..., :1])
        upper = torch.tensor(self.grid.upper, device=points.device)
        feats_in = torch.cat([(xyz - centre) / vs, (xyz - lower) / (upper - lower) * 2 - 1, inten], -1)  # [B, P, 7]
        feats = self.pointnet(feats_in[valid])  # [N, C]
        bi = torch.nonzero(valid, as_tuple=True)[0]
        vi = idx[valid]
        flat = ((bi * x + vi[:, 0]) * y + vi[:, 1]) * z + vi[:, 2]  # voxel id per point
        pooled = torch.full((b * x * y * z, c), float("-inf"), device=points.device, dtype=feats.dtype)
        pooled = pooled.scatter_reduce(0, flat[:, None].expand(-1, c), feats, reduce="amax", include_self=True)
        pooled = torch.where(torch.isinf(pooled), torch.zeros_like(pooled), pooled)
        bev = pooled.reshape(b, x, y, z * c).permute(0, 3, 1, 2)  # [B, Z*C, X, Y]
        return bev

    def quantize_points(self, points: torch.Tensor, count: torch.Tensor | None = None) -> tuple[QuantizeOutput, torch.Tensor]:
        valid = self.valid_points(points, count)
        latent = self.encoder(self.voxel_features(points.float(), valid))  # [B, D, h, w]
        return self.quantizer(latent.permute(0, 2, 3, 1)), valid

    @torch.no_grad()
    def encode(self, points: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
        """points [B, P, 3|4] (+ count [B]) -> token ids [B, h, w]."""
        return self.quantize_points(points, count)[0].indices

    def decode_latent(self, zq: torch.Tensor) -> LidarField:
        """Quantized latent [B, h, w, D] -> feature grid and occupancy logits."""
        b = zq.shape[0]
        x, y, z = self.grid.shape
        out = self.decoder(zq.permute(0, 3, 1, 2))  # [B, Z*(F+1), X, Y]
        out = out.reshape(b, z, self.cfg.feature_dim + 1, x, y).permute(0, 2, 3, 4, 1)  # [B, F+1, X, Y, Z]
        return LidarField(features=out[:, 1:], occupancy=out[:, :1])

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> LidarField:
        """Token ids [B, h, w] -> LidarField."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.token_shape:
            raise ValueError(f"codes must be [B, {self.token_shape[0]}, {self.token_shape[1]}], got {tuple(codes.shape)}")
        return self.decode_latent(self.quantizer.indices_to_codes(codes.long()))

    def render(self, fld: LidarField, dirs: torch.Tensor, jitter: bool = False, origin: torch.Tensor | None = None,
               depth_gt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unit ray directions [B, R, 3] from origins [B, 3] (default the mount) -> (depth [B, R], sample depths
        [B, R, S], weights [B, R, S]); with depth_gt [B, R], `surface_samples` more samples near each return."""
        # Sampling and transmittance products in fp32 even under bf16 autocast (long cumulative sums).
        with torch.autocast(device_type=dirs.device.type, enabled=False):
            dirs = dirs.float()
            o = self.sensor_origin(dirs.shape[0], dirs.device, origin)  # [B, 3]
            t = ray_samples(dirs.shape[:2], self.cfg.samples_per_ray, self.cfg.near, self.far, jitter, dirs.device)
            if depth_gt is not None and self.cfg.surface_samples > 0:
                u = torch.rand(*dirs.shape[:2], self.cfg.surface_samples, device=dirs.device) * 2 - 1
                near_surface = (depth_gt.float()[..., None] + u * self.cfg.surface_margin).clamp(self.cfg.near, self.far)
                t = torch.cat([t, near_surface], -1).sort(-1).values  # [B, R, S + S_surface]
            pts = o[:, None, None, :] + t[..., None] * dirs[:, :, None, :]  # [B, R, S, 3]
            feat = sample_volume(fld.features.float(), pts, self.grid)  # [B, F, R, S]
            sigma = F.softplus(self.density_mlp(feat.movedim(1, -1)).squeeze(-1))  # [B, R, S]
            if not self.training and self.cfg.skip_threshold > 0:
                occ_p = torch.sigmoid(sample_volume(fld.occupancy.float(), pts, self.grid, mode="nearest")[:, 0])
                sigma = torch.where(occ_p < self.cfg.skip_threshold, torch.zeros_like(sigma), sigma)
            depth, weights = volume_render(sigma, t, self.far)
        return depth, t, weights

    def rays(self, points: torch.Tensor, valid: torch.Tensor, per_sweep: int | None, origin: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rays from the sensor origins [B, 3] (default the mount) to the valid returns: (unit dirs [B, R, 3], true
        depth [B, R], ray mask [B, R]); a random subset of ``per_sweep``."""
        b, p = valid.shape
        rel = points[..., :3] - self.sensor_origin(b, points.device, origin)[:, None]  # [B, P, 3]
        depth = rel.norm(dim=-1)
        valid = valid & (depth > self.cfg.near)
        r = p if per_sweep is None else min(per_sweep, p)
        # random ranks put valid returns first; the top r per sweep are rendered
        score = torch.rand(b, p, device=points.device) if per_sweep is not None else torch.zeros(b, p, device=points.device)
        score = torch.where(valid, score + 1.0, score - 2.0)
        pick = score.topk(r, dim=1).indices  # [B, R]
        mask = valid.gather(1, pick)
        d = depth.gather(1, pick)
        dirs = rel.gather(1, pick[..., None].expand(-1, -1, 3)) / d.clamp_min(1e-6)[..., None]
        return dirs, d, mask

    def occupancy_targets(self, fld: LidarField, dirs: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor,
                          t: torch.Tensor, origin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE logits and 0/1 targets: voxels of the returns are occupied; voxels sampled a voxel or more before them are free."""
        o = self.sensor_origin(dirs.shape[0], dirs.device, origin)  # [B, 3]
        hit = o[:, None] + depth[..., None] * dirs  # [B, R, 3]
        free_t = t < (depth[..., None] - self.grid.voxel_size)  # [B, R, S]
        free_pts = o[:, None, None] + t[..., None] * dirs[:, :, None, :]  # [B, R, S, 3]
        hit_logit = sample_volume(fld.occupancy, hit[:, :, None], self.grid, mode="nearest")[:, 0, :, 0]  # [B, R]
        free_logit = sample_volume(fld.occupancy, free_pts, self.grid, mode="nearest")[:, 0]  # [B, R, S]
        free_mask = free_t & mask[..., None]
        logits = torch.cat([hit_logit[mask], free_logit[free_mask]])
        targets = torch.cat([torch.ones_like(hit_logit[mask]), torch.zeros_like(free_logit[free_mask])])
        return logits, targets

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """batch['lidar'] [B, T, P, 4] (or [B, P, 4]) with batch['lidar_count'] [B, T] (or [B])."""
        if "lidar" not in batch:
            raise KeyError(f"the LiDAR tokenizer needs batch['lidar']; got keys {sorted(batch)}")
        points, count, origin = batch["lidar"], batch.get("lidar_count"), batch.get("lidar_origin")
        if points.dim() == 4:
            points = points.flatten(0, 1)  # [B*T, P, 4]
            count = count.flatten(0, 1) if count is not None else None
            origin = origin.flatten(0, 1) if origin is not None else None  # [B*T, 3]
        q, valid = self.quantize_points(points, count)
        fld = self.decode_latent(q.quantized)
        dirs, depth_gt, mask = self.rays(points.float(), valid, self.cfg.rays_per_sweep, origin)
        depth, t, weights = self.render(fld, dirs, jitter=self.training, origin=origin, depth_gt=depth_gt)
        n_rays = mask.sum()
        zero = q.loss * 0.0
        depth_l1 = (depth - depth_gt).abs()[mask].mean() if n_rays > 0 else zero
        surface = surface_concentration(weights, t, depth_gt, self.cfg.surface_margin)[mask].mean() if n_rays > 0 else zero
        logits, targets = self.occupancy_targets(fld, dirs, depth_gt, mask, t, origin)
        bce = F.binary_cross_entropy_with_logits(logits, targets) if targets.numel() else zero
        total = depth_l1 + self.cfg.surface_weight * surface + self.cfg.bce_weight * bce + self.cfg.vq_weight * q.loss
        return {"loss": total, "depth_l1": depth_l1.detach(), "surface": surface.detach(), "bce": bce.detach(),
                "vq": q.loss.detach(),
                "rays": n_rays.float(), **{k: v.detach() for k, v in q.logs.items()}}

    @torch.no_grad()
    def reconstruct(self, points: torch.Tensor, count: torch.Tensor | None = None, origin: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
        """Re-render every valid return's ray (from origin [B, 3], default the mount) through the tokens. Returns
        ``points`` [B, R, 3] (predicted returns), ``points_gt`` [B, R, 3] (the true returns, same order), ``depth``
        and ``depth_gt`` [B, R] and ``mask`` [B, R] (False rows are padding)."""
        q, valid = self.quantize_points(points, count)
        fld = self.decode_latent(q.quantized)
        dirs, depth_gt, mask = self.rays(points.float(), valid, None, origin)
        depth, _, _ = self.render(fld, dirs, origin=origin)
        o = self.sensor_origin(points.shape[0], points.device, origin)[:, None]  # [B, 1, 3]
        return {"points": o + depth[..., None] * dirs, "points_gt": o + depth_gt[..., None] * dirs,
                "depth": depth, "depth_gt": depth_gt, "mask": mask}


@register_model("lidar_vqvae", LidarTokenizerConfig, kind="tokenizer")
def build_lidar_tokenizer(cfg: LidarTokenizerConfig) -> LidarTokenizer:
    return LidarTokenizer(cfg)
