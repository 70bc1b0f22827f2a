"""Encoders: occupancy height folding, LiDAR pillar scatter, camera patches, 2-D positions."""

import torch

from drivewm.jepa.encoders import EncoderConfig, PatchEncoder, gather_tokens, sincos_2d, spacetime_pos


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


def test_tubelet_is_a_conv3d_over_frame_pairs_and_a_frame_fills_its_tubelet():
    torch.manual_seed(0)
    enc = PatchEncoder(EncoderConfig(grid_shape=[8, 8, 2], patch=4, dim=16, depth=1, heads=2, class_dim=3, tubelet=2))
    occ = torch.randint(0, 18, (2, 4, 8, 8, 2), dtype=torch.uint8)
    with torch.no_grad():
        tok = enc.video_tokens(occ) - spacetime_pos(enc.pos, 2)  # [2, 2 * 4, 16]
        # The V-JEPA patch embedding: Conv3d, kernel (tubelet, p, p), stride (tubelet, p, p), over [B, C, T, X, Y]
        c = 2 * 3
        conv = torch.nn.Conv3d(c, 16, (2, 4, 4), stride=(2, 4, 4))
        w = enc.stem.proj.weight  # [D, tubelet * C, p, p], the frames of a tubelet stacked frame-major
        conv.weight.copy_(w.view(16, 2, c, 4, 4).transpose(1, 2))
        conv.bias.copy_(enc.stem.proj.bias)
        feats = enc.stem.features(occ.flatten(0, 1)).view(2, 4, c, 8, 8).transpose(1, 2)  # [B, C, T, X, Y]
        ref = conv(feats).flatten(2).transpose(1, 2)  # [B, T/2 * h * w, D], tubelet-major
    torch.testing.assert_close(tok, ref, atol=1e-5, rtol=1e-5)
    # a single frame is the clip of that frame repeated over the tubelet (vjepa2 feeds images so)
    with torch.no_grad():
        single = enc.tokens(occ[:, 0]) - enc.pos
        pair = enc.video_tokens(occ[:, :1].repeat(1, 2, 1, 1, 1)) - spacetime_pos(enc.pos, 1)
    torch.testing.assert_close(single, pair, atol=1e-6, rtol=1e-6)


def _official_axis_freqs(pos, part):
    """vjepa2 src/models/utils/modules.py ``rotate_queries_or_keys``: the angles of one axis."""
    omega = torch.arange(part // 2, dtype=torch.float64)
    omega /= part / 2.0
    omega = 1.0 / 10000**omega
    return torch.einsum("..., f -> ... f", pos.double(), omega)


def test_rope3d_encoder_rotates_by_tubelet_row_col_of_the_kept_ids():
    torch.manual_seed(0)
    cfg = EncoderConfig(grid_shape=[16, 16, 2], patch=4, dim=48, depth=2, heads=2, class_dim=3, tubelet=2,
                        pos_embed="rope3d")
    enc = PatchEncoder(cfg).eval()
    head = 24
    part = int(2 * ((head // 3) // 2))  # RoPEAttention's d_dim = h_dim = w_dim
    ids = torch.tensor([[0, 5, 17, 30], [3, 16, 21, 31]])  # over 2 tubelets of a 4 x 4 grid
    cos, sin = enc._rope(ids)
    f, r, c = ids // 16, (ids % 16) // 4, ids % 4
    ref = torch.cat([_official_axis_freqs(a, part) for a in (f, r, c)], -1)
    torch.testing.assert_close(cos.double(), ref.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin.double(), ref.sin(), atol=1e-6, rtol=0)
    # no additive position: tokens are the patch embedding alone; positions act only through attention,
    # which sees relative offsets: shifting every kept token by one row leaves the outputs unchanged
    occ = torch.randint(0, 18, (2, 16, 16, 2), dtype=torch.uint8)
    with torch.no_grad():
        t = enc.tokens(occ)
        torch.testing.assert_close(t, enc._patchify(enc.stem.features(occ).repeat(1, 2, 1, 1)))
        keep = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7]])
        x = gather_tokens(t, keep)
        out = enc.run(x, keep)
        torch.testing.assert_close(enc.run(x, keep + 4), out, atol=1e-5, rtol=1e-5)
        assert (enc.run(x, keep.flip(1)) - out).abs().max() > 1e-3  # other positions, other outputs
        torch.testing.assert_close(enc(occ, keep=keep), out)
