"""Occupancy-MAE as published (``occupancy_mae``): range-band voxel masking, dense 3-D decoder, BCE over the grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from drivewm.jepa.baselines import OccupancyMae, OccupancyMaeConfig, decoder_z_strides, range_band_keep, z_strides
from drivewm.jepa.masks import step_generator
from drivewm.jepa.voxels import VoxelEncoderConfig

from test_adl_jepa import FREE, scene


def model() -> OccupancyMae:
    torch.manual_seed(0)
    enc = VoxelEncoderConfig(grid_shape=[16, 16, 8], channels=[4, 8, 8], blocks=1, out_channels=8)
    return OccupancyMae(OccupancyMaeConfig(encoder=enc, decoder_channels=[4], diag_every=0)).train()


def test_decoder_height_strides_are_the_published_ones_on_kitti():
    # KITTI: 41 voxels high, VoxelBackBone8x leaves 2 -> deconv strides 2, 4, 3 (voxel_mae.py deconv1-3)
    assert z_strides(2, 41, 3) == (2, 4, 3)
    assert decoder_z_strides(VoxelEncoderConfig(grid_shape=[64, 64, 8])) == (2, 2, 2)  # 1 -> 2 -> 4 -> 8


def test_range_bands_keep_half_near_and_seventy_percent_far():
    active = torch.zeros(2, 2, 80, 80, dtype=torch.bool)
    active[:, :, ::3, ::3] = True
    coords = active.nonzero()  # (b, z, x, y)
    kept = range_band_keep(coords, 0.5, [30.0, 50.0], step_generator(0, 0))
    dist = (coords[:, 2].double() ** 2 + coords[:, 3].double() ** 2).sqrt()
    for band, keep in [(dist <= 30, 0.5), ((dist > 30) & (dist <= 50), 0.7), (dist > 50, 0.7)]:
        assert int((kept & band).sum()) == int(keep * int(band.sum()))


def test_reconstructs_every_voxel_from_the_kept_ones_only():
    m = model()
    occ = scene()
    vox = m.encoder.voxelize(occ)
    kept = range_band_keep(vox.coords, 0.5, [30.0, 50.0], step_generator(0, 0))
    logits = m.reconstruct(vox, kept)
    assert logits.shape == (2, 1, 8, 16, 16)  # the full grid: [B, 1, Z, X, Y]
    # a masked voxel's content does not reach the encoder
    occ2 = occ.clone()
    b, z, x, y = vox.coords[~kept].T
    occ2[b, x, y, z] = torch.where(occ2[b, x, y, z] == 3, 4, 3).to(occ2.dtype)
    assert torch.equal(m.reconstruct(m.encoder.voxelize(occ2), kept), logits)
    # the loss is the BCE of every voxel's occupancy
    m.counter.set(0)
    out = m.loss({"occ": occ})
    active = (occ != FREE).permute(0, 3, 1, 2)[:, None].float()  # [B, 1, Z, X, Y]
    assert torch.allclose(out["loss"], F.binary_cross_entropy_with_logits(logits, active))


def test_training_lowers_the_reconstruction_loss():
    m = model()
    batch = {"occ": scene(batch=4, seed=2)}
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        out = m.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.on_step_end(step, 20)
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.75 * losses[0] and all(b < a for a, b in zip(losses, losses[1:]))
