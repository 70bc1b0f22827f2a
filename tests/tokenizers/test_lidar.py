"""LiDAR tokenizer (Copilot4D): volume rendering known answers, shapes, empty/NaN sweeps, overfitting one batch."""

import math

import pytest
import torch

from drivewm.data.spec import grid_preset
from drivewm.registry import build_model, model_entry
from drivewm.tokenizers.bev_cnn import BevCnnConfig
from drivewm.tokenizers.lidar import LidarTokenizer, LidarTokenizerConfig
from drivewm.tokenizers.quantizer import QuantizerConfig
from drivewm.tokenizers.render import render_grid_depth, volume_render


def _cfg(**kw) -> LidarTokenizerConfig:
    base = dict(grid="micro", point_channels=16, z_channels=16, feature_dim=8, rays_per_sweep=256,
                samples_per_ray=32, cnn=BevCnnConfig(channels=16, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False),
                quantizer=QuantizerConfig(codebook_size=64))
    base.update(kw)
    return LidarTokenizerConfig(**base)


def _sweep(radius: float, n: int = 256) -> torch.Tensor:
    """Returns from a wavy cylindrical wall around the sensor at (0, 0, 1.84): [n, 4]."""
    az = torch.linspace(-math.pi, math.pi, n + 1)[:-1]
    el = torch.tensor([-0.05, 0.05]).repeat_interleave(n // 2)
    d = torch.stack([torch.cos(az) * torch.cos(el), torch.sin(az) * torch.cos(el), torch.sin(el)], -1)
    r = radius + 2 * torch.cos(3 * az)
    return torch.cat([torch.tensor([0.0, 0.0, 1.84]) + r[:, None] * d, torch.zeros(n, 1)], -1)


def test_volume_render_constant_density_matches_closed_form():
    sigma, near, far, s = 0.2, 1.0, 11.0, 4000
    t = torch.linspace(near, far, s + 1)[:-1]
    depth, w = volume_render(torch.full((s,), sigma), t, far)
    # E[t] for an exponential stop with rate sigma on [near, far], leftover mass at far
    expected = near + (1 - math.exp(-sigma * (far - near))) / sigma
    assert abs(float(depth) - expected) < 0.01
    assert abs(float(w.sum()) - (1 - math.exp(-sigma * (far - near)))) < 1e-3


def test_render_known_occupancy_grid_gives_wall_depth():
    grid = grid_preset("micro")  # 1.6 m voxels, x in [-25.6, 25.6]
    x_wall_idx = 22  # wall from x = -25.6 + 22 * 1.6 = 9.6 m onwards
    density = torch.zeros(1, 1, *grid.shape)
    density[:, :, x_wall_idx:] = 1e3
    origin = torch.tensor([[0.0, 0.0, 1.84]])
    c = math.cos(math.radians(30))
    dirs = torch.tensor([[[1.0, 0.0, 0.0], [c, 0.5, 0.0], [-1.0, 0.0, 0.0]]])
    depth = render_grid_depth(density, origin, dirs, grid, n_samples=2000, near=0.5, far=30.0)[0]
    x_wall = -25.6 + x_wall_idx * grid.voxel_size
    # trilinear density rises from the centre of the last empty voxel: the stop is within half a voxel before the wall
    for got, cos in ((depth[0], 1.0), (depth[1], c)):
        want, slack = x_wall / cos, grid.voxel_size / 2 / cos
        assert want - slack - 0.05 <= float(got) <= want + 0.05, (float(got), want)
    assert abs(float(depth[2]) - 30.0) < 1e-3  # nothing behind the sensor: the ray runs to the far end


def test_shapes_registry_and_gradients():
    assert model_entry("lidar_vqvae").kind == "tokenizer"
    torch.manual_seed(0)
    m = build_model(_cfg())
    pts = torch.stack([_sweep(12.0), _sweep(16.0)])  # [B, P, 4]
    assert m.encode(pts).shape == (2, 8, 8) and m.token_shape == (8, 8) and m.vocab_size == 64
    fld = m.decode(m.encode(pts))
    assert fld.features.shape == (2, 8, *grid_preset("micro").shape) and fld.occupancy.shape == (2, 1, 32, 32, 4)
    out = m.loss({"lidar": pts[:, None], "lidar_count": torch.tensor([[256], [100]])})
    assert float(out["rays"]) == 256 + 100
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_empty_and_nan_sweeps():
    torch.manual_seed(0)
    m = LidarTokenizer(_cfg())
    pts = torch.stack([_sweep(12.0), _sweep(12.0)])
    # an empty sweep (count 0) encodes to the empty scene's tokens and adds no rays
    empty_tokens = m.eval().encode(pts, torch.tensor([0, 0]))
    assert torch.equal(empty_tokens, m.encode(torch.zeros(2, 5, 4), torch.tensor([0, 0])))
    out = m.train().loss({"lidar": pts, "lidar_count": torch.tensor([256, 0])})
    assert float(out["rays"]) == 256
    out = m.loss({"lidar": pts, "lidar_count": torch.tensor([0, 0])})
    assert float(out["rays"]) == 0 and float(out["depth_l1"]) == 0 and torch.isfinite(out["loss"])
    bad = pts.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.encode(bad)
    bad_padding = pts.clone()
    bad_padding[0, 200:] = float("nan")  # NaN in padding rows beyond the count is ignored
    m.encode(bad_padding, torch.tensor([200, 256]))
    with pytest.raises(ValueError, match=r"\[B, P, 3 or 4\]"):
        m.encode(torch.zeros(2, 5))
    with pytest.raises(KeyError, match="lidar"):
        m.loss({"occ": torch.zeros(1)})


def test_overfits_one_batch_depth():
    torch.manual_seed(0)
    m = LidarTokenizer(_cfg())
    pts = torch.stack([_sweep(12.0), _sweep(18.0)])
    r0 = m.eval().reconstruct(pts)
    before = float((r0["depth"] - r0["depth_gt"]).abs()[r0["mask"]].mean())
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(35):
        opt.zero_grad()
        m.train().loss({"lidar": pts})["loss"].backward()
        opt.step()
    r = m.eval().reconstruct(pts)
    after = float((r["depth"] - r["depth_gt"]).abs()[r["mask"]].mean())
    assert after < 1.5 and after < 0.15 * before, (before, after)
    assert torch.allclose((r["points"] - torch.tensor([0, 0, 1.84])).norm(dim=-1)[r["mask"]], r["depth"][r["mask"]], atol=1e-4)


def test_rays_are_cast_from_the_stored_origin():
    tok = LidarTokenizer(_cfg()).eval()
    origin = torch.tensor([[1.0, -0.5, 1.5], [0.0, 0.0, 1.84]])
    points = torch.stack([_sweep(12.0), _sweep(15.0)])
    dirs, depth, mask = tok.rays(points, tok.valid_points(points, None), None, origin)
    assert bool(mask.all())
    # The ray from the stored origin reaches each return, and the true depth is measured from that origin.
    back = origin[:, None] + depth[..., None] * dirs
    assert torch.allclose(torch.sort(back.flatten(1), 1).values, torch.sort(points[..., :3].flatten(1), 1).values, atol=1e-4)
    assert torch.allclose(depth[0].sort().values, (points[0, :, :3] - origin[0]).norm(dim=-1).sort().values, atol=1e-5)
    with pytest.raises(ValueError, match="lidar_origin must be"):
        tok.rays(points, tok.valid_points(points, None), None, origin[:1])


def test_true_depth_from_the_stored_origin_scores_l1_zero():
    """4D-Occ's per-ray L1 / AbsRel measured from each frame's stored sensor origin: a renderer given the true
    depth along the rays from that origin scores 0; measured from the mount it would not."""
    from drivewm.dynamics.lidar_forecast import returns_mask
    from drivewm.evaluation import LidarScoring

    tok = LidarTokenizer(_cfg()).eval()
    b, h = 2, 2
    points = torch.stack([torch.stack([_sweep(10.0 + i + t) for t in range(h)]) for i in range(b)])  # [B, H, P, 4]
    count = torch.full((b, h), points.shape[2])
    stored = torch.tensor([0.9, -0.4, 1.6]).expand(b, h, 3).clone()
    received = []

    def oracle(pts, cnt, origin, inside):
        received.append(origin)
        flat_origin = origin.flatten(0, 1) if origin is not None else None
        keep = returns_mask(tok, pts.flatten(0, 1), cnt.flatten(0, 1), flat_origin, inside).view(b, h, -1)
        return [[{"points": pts[i, t][keep[i, t], :3], "points_gt": pts[i, t][keep[i, t], :3],
                  "depth": (pts[i, t][keep[i, t], :3] - stored[i, t]).norm(dim=-1)} for t in range(h)]
                for i in range(b)]

    def score(future):
        scoring = LidarScoring(region=tok)
        metric = scoring.metric()
        scoring.update(metric, "oracle", {"render": oracle}, scoring.truth(future, h))
        return metric.compute()

    result = score({"lidar": points, "lidar_count": count, "lidar_origin": stored})
    assert torch.equal(received[0], stored)
    assert result["l1"] < 1e-6 and result["absrel"] < 1e-7 and result["cd"] == 0.0  # 0 up to float32 rounding
    received.clear()
    mount = score({"lidar": points, "lidar_count": count})  # no stored origin: measured from the mount
    assert received[0] is None and mount["l1"] > 0.05


def test_surface_samples_and_surface_term():
    from drivewm.tokenizers.render import surface_concentration

    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w = torch.tensor([[0.1, 0.2, 0.6, 0.1]])
    # With D_gt = 3 and margin 0.5 only the sample at 3 m is on the surface: 0.1 + 0.2 + 0.1 away from it.
    assert torch.allclose(surface_concentration(w, t, torch.tensor([3.0]), 0.5), torch.tensor([0.4]))
    assert torch.allclose(surface_concentration(w, t, torch.tensor([3.0]), 1.5), torch.tensor([0.1]))
    tok = LidarTokenizer(_cfg(surface_samples=8, surface_margin=0.5)).train()
    points = _sweep(12.0)[None]
    dirs, depth_gt, _ = tok.rays(points, tok.valid_points(points, None), 16)
    fld = tok.decode_latent(tok.quantize_points(points)[0].quantized)
    _, ts, _ = tok.render(fld, dirs, jitter=True, depth_gt=depth_gt)
    assert ts.shape[-1] == 32 + 8 and bool((ts.diff(dim=-1) >= 0).all())
    near = ((ts - depth_gt[..., None]).abs() <= 0.5).sum(-1)
    assert bool((near >= 8).all())
    logs = tok.loss({"lidar": points, "lidar_count": torch.tensor([points.shape[1]])})
    assert 0.0 <= float(logs["surface"]) <= 1.0


def test_intensity_is_divided_by_its_scale():
    torch.manual_seed(0)
    raw = LidarTokenizer(_cfg(intensity_scale=255.0))
    torch.manual_seed(0)
    unit = LidarTokenizer(_cfg())
    points = _sweep(12.0)[None]
    points[..., 3] = torch.linspace(0, 1, points.shape[1])
    scaled = points.clone()
    scaled[..., 3] *= 255.0
    valid = unit.valid_points(points, None)
    assert torch.allclose(raw.voxel_features(scaled, valid), unit.voxel_features(points, valid), atol=1e-5)


def test_lidar_base_preset_is_copilot4ds_scale():
    from drivewm.train.config import load_run_config

    cfg = load_run_config("tokenizer/lidar_base.yaml")
    tok = build_model(cfg.model)
    assert tok.token_shape == (128, 128) and tok.vocab_size == 1024
    assert tok.grid.lower[:2] == (-80.0, -80.0) and tok.grid.upper[:2] == (80.0, 80.0)
    assert "lidar_origin" in cfg.data.keys and cfg.model.intensity_scale == 255.0


def test_4docc_protocol_scores_the_full_clouds_region_cuts_them():
    from drivewm.evaluation import LidarScoring

    tok = LidarTokenizer(_cfg()).eval()  # micro grid: |x|, |y| < 25.6 m
    points = torch.stack([_sweep(12.0), _sweep(30.0)])[None]  # [1, 2, P, 4]: the second sweep leaves the grid
    count = torch.full((1, 2), points.shape[2])
    inside_flags = []

    def oracle(pts, cnt, origin, inside):
        inside_flags.append(inside)
        return [[{"points": pts[0, t, :, :3], "points_gt": pts[0, t, :, :3],
                  "depth": (pts[0, t, :, :3] - tok.origin).norm(dim=-1)} for t in range(2)]]

    sizes = {}
    for protocol in ("region", "4d-occ"):
        scoring = LidarScoring(region=tok, protocol=protocol)
        truth = scoring.truth({"lidar": points, "lidar_count": count}, 2)
        sizes[protocol] = [len(c) for c in truth["clouds"][0]]
        if protocol == "4d-occ":
            scoring.update(scoring.metric(), "oracle", {"render": oracle}, truth)
    assert sizes["4d-occ"] == [points.shape[2]] * 2  # every return (all beyond the near plane)
    assert sizes["region"][0] == points.shape[2] and sizes["region"][1] < points.shape[2]
    assert inside_flags == [False]
    with pytest.raises(ValueError, match="protocol"):
        LidarScoring(protocol="occ3d")
