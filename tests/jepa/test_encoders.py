"""Encoders: occupancy height folding, LiDAR pillar scatter, camera patches, 2-D positions."""

import torch

from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, sincos_2d, spacetime_pos


def _stem_input(enc: PatchEncoder, *args):
    seen = {}

    def hook(module, inputs, output):
        seen["x"] = inputs[0]

    h = enc.stem.proj.register_forward_hook(hook)
    enc(*args)
    h.remove()
    return seen["x"]


def test_occ_stem_folds_height_into_channels():
    cfg = EncoderConfig(grid_shape=[8, 8, 4], patch=4, dim=16, depth=1, heads=2, class_dim=3)
    enc = PatchEncoder(cfg)
    occ = torch.full((1, 8, 8, 4), 17, dtype=torch.uint8)
    occ[0, 2, 5, 3] = 4  # a car voxel at height 3
    x = _stem_input(enc, occ)
    assert x.shape == (1, 4 * 3, 8, 8)
    free, car = enc.stem.embed.weight[17], enc.stem.embed.weight[4]
    torch.testing.assert_close(x[0, 9:12, 2, 5], car)  # channels of height 3 hold the car's embedding
    torch.testing.assert_close(x[0, 0:3, 2, 5], free)


def test_lidar_pillars_scatter_to_their_cell_only():
    cfg = EncoderConfig(modality="lidar", grid_shape=[8, 8, 4], grid_lower=[-4.0, -4.0, -1.0], voxel_size=1.0,
                        patch=4, dim=16, depth=1, heads=2)
    enc = PatchEncoder(cfg)
    pts = torch.tensor([[[0.2, 1.5, 0.3, 0.5], [0.7, 1.1, 1.0, 0.9], [50.0, 0.0, 0.0, 1.0]]])  # last: outside
    valid = torch.tensor([[True, True, True]])
    bev = _stem_input(enc, pts, None, valid)  # [1, C, 8, 8]
    nonzero = (bev.abs().sum(1)[0] > 0).nonzero().tolist()
    assert nonzero == [[4, 5]]  # x 0.2 -> cell 4, y 1.5 -> cell 5
    valid[0, :2] = False
    assert _stem_input(enc, pts, None, valid).abs().sum() == 0


def test_camera_patches_and_positions():
    cfg = EncoderConfig(modality="camera", grid_shape=[16, 32, 3], patch=8, dim=16, depth=1, heads=2)
    z = PatchEncoder(cfg)(torch.randint(0, 255, (2, 16, 32, 3), dtype=torch.uint8))
    assert z.shape == (2, 8, 16)
    pos = sincos_2d(2, 4, 16)
    assert pos.shape == (8, 16) and torch.unique(pos, dim=0).shape[0] == 8  # every position distinct
    st = spacetime_pos(pos, 3)
    assert st.shape == (24, 16) and torch.unique(st, dim=0).shape[0] == 24
