"""AD-L-JEPA as published (``adl_jepa``) and its sparse voxel encoder."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from drivewm.backbones.sparse_conv import SparseVoxels
from drivewm.jepa.adl_jepa import AdlJepa, AdlJepaConfig, draw_bev_masks
from drivewm.jepa.voxels import VoxelEncoder, VoxelEncoderConfig, lidar_frames, mean_vfe
from drivewm.sim import sim_preset, simulate_episode

FREE = 17


def scene(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """uint8 [B, 16, 16, 8]: a road layer plus random objects, so both occupied and empty BEV cells exist."""
    g = torch.Generator().manual_seed(seed)
    occ = torch.full((batch, 16, 16, 8), FREE, dtype=torch.uint8)
    occ[:, :8, :, 0] = 11  # road on half the map: the other half is empty
    for b in range(batch):
        for _ in range(4):
            x, y = torch.randint(0, 14, (2,), generator=g).tolist()
            occ[b, x:x + 2, y:y + 2, 1:4] = int(torch.randint(1, 11, (1,), generator=g))
    return occ


def model(**enc) -> AdlJepa:
    torch.manual_seed(0)
    # Two stages (stride 2) and out_channels 128 over a height of 8 -> 128 * 2 = 256 channels, the published width.
    cfg = dict(grid_shape=[16, 16, 8], channels=[4, 8], blocks=1, out_channels=128)
    return AdlJepa(AdlJepaConfig(encoder=VoxelEncoderConfig(**{**cfg, **enc}), diag_every=0)).train()


def views(m: AdlJepa, occ: torch.Tensor, masks):
    """The model's views of `occ`: the online encoder's voxels for the context, the target encoder's for targets."""
    return m.views(m.encoder.voxelize(occ), m.target_encoder.voxelize(occ), masks)


def test_targets_at_masked_cells_ignore_the_context_cells():
    m = model()
    occ = scene()
    vox = m.encoder.voxelize(occ)
    masks = m.masks(vox, step=0)
    assert masks.context.any() and masks.target.any() and masks.target_empty.any()
    _, _, tgt = views(m, occ, masks)
    # Change only the voxels of the context cells (their class, and which of their voxels are occupied).
    ctx_cols = masks.context.repeat_interleave(2, 1).repeat_interleave(2, 2)  # [B, X, Y]
    occ2 = occ.clone()
    occ2[ctx_cols[..., None].expand_as(occ2) & (occ2 != FREE)] = 3
    occ2[..., 5][ctx_cols] = 7
    vox2 = m.encoder.voxelize(occ2)
    assert torch.equal(m.bev_occupied(vox2), m.bev_occupied(vox))  # the same cells stay occupied
    ctx, _, tgt2 = views(m, occ2, masks)
    masked = masks.target | masks.target_empty
    assert torch.equal(tgt2.permute(0, 2, 3, 1)[masked], tgt.permute(0, 2, 3, 1)[masked])
    ctx1, _, _ = views(m, occ, masks)
    assert not torch.allclose(ctx1, ctx)  # the context encoder does see the change
    # And a change inside a masked cell does reach its target.
    tgt_cols = masks.target.repeat_interleave(2, 1).repeat_interleave(2, 2)
    occ3 = occ.clone()
    occ3[tgt_cols[..., None].expand_as(occ3) & (occ3 != FREE)] = 2
    _, _, tgt3 = views(m, occ3, masks)
    assert not torch.allclose(tgt3.permute(0, 2, 3, 1)[masks.target], tgt.permute(0, 2, 3, 1)[masks.target])


def test_targets_read_the_target_encoders_class_embedding():
    m = model()
    occ = scene()
    masks = m.masks(m.encoder.voxelize(occ), step=0)
    _, _, tgt = views(m, occ, masks)
    with torch.no_grad():
        m.encoder.embed.weight.add_(1.0)  # the online copy drifts; the EMA target's does not
    _, _, tgt2 = views(m, occ, masks)
    assert torch.equal(tgt, tgt2)
    with torch.no_grad():
        m.target_encoder.embed.weight.add_(1.0)
    _, _, tgt3 = views(m, occ, masks)
    assert not torch.allclose(tgt3.permute(0, 2, 3, 1)[masks.target], tgt.permute(0, 2, 3, 1)[masks.target])


def test_mask_and_empty_tokens_enter_after_the_encoders():
    m = model()
    occ = scene()
    masks = m.masks(m.encoder.voxelize(occ), step=3)
    ctx, _, tgt = views(m, occ, masks)
    unit_mask = F.normalize(m.mask_token, dim=1)[0, :, 0, 0]
    unit_empty = F.normalize(m.empty_token, dim=1)[0, :, 0, 0]
    rows, trows = ctx.permute(0, 2, 3, 1), tgt.permute(0, 2, 3, 1)
    hidden = ~(masks.context | masks.context_empty)
    assert torch.allclose(rows[hidden], unit_mask.expand_as(rows[hidden]))
    assert torch.allclose(rows[masks.context_empty], unit_empty.expand_as(rows[masks.context_empty]))
    assert torch.allclose(trows[masks.target_empty], unit_empty.expand_as(trows[masks.target_empty]))
    assert not torch.allclose(rows[masks.context], unit_mask.expand_as(rows[masks.context]), atol=1e-2)


def test_masks_shuffle_the_occupied_cells_of_the_batch_together():
    g = torch.Generator().manual_seed(0)
    occupied = torch.rand(3, 8, 8, generator=g) < 0.4
    m = draw_bev_masks(occupied, 0.5, torch.Generator().manual_seed(1))
    n = int(occupied.sum())
    assert int(m.context.sum()) == int(n * 0.5)
    assert torch.equal(m.context | m.target, occupied) and not (m.context & m.target).any()
    assert torch.equal(m.context_empty | m.target_empty, ~occupied) and not (m.context_empty & m.target_empty).any()


def official_get_loss(context, prediction, target, enc, tgt, enc_empty, tgt_empty, alpha=1.0, beta=1.0):
    """``AD_L_JEPA.get_loss`` (AD-L-JEPA-Release ad_l_jepa.py, 648f1db), ported line by line."""
    def reg_fn(z):
        return torch.sqrt(z.var(dim=0) + 1e-4)

    B = context.shape[0]
    target = target.permute(0, 2, 3, 1).contiguous()
    prediction = prediction.permute(0, 2, 3, 1).contiguous()
    context = context.permute(0, 2, 3, 1).contiguous()
    loss_occ_cos_jepa = 1.0 - F.cosine_similarity(target, prediction, dim=3)
    indices = torch.zeros(loss_occ_cos_jepa.shape)
    indices[enc] = 1
    indices[tgt] = 2
    indices[enc_empty] = 3
    indices[tgt_empty] = 4
    loss_jepa = 0.75 * loss_occ_cos_jepa[indices == 2].mean() + 0.25 * loss_occ_cos_jepa[indices == 4].mean()
    ctx_s = [reg_fn(context[b][indices[b] == 1].view(-1, 256)) for b in range(B)]
    reg_ctx = torch.stack([torch.mean(F.relu(1. / 16. - t)) for t in ctx_s]).mean()
    pred_s = [reg_fn(prediction[b][indices[b] == 2].view(-1, 256)) for b in range(B)]
    reg_pred = torch.stack([torch.mean(F.relu(1. / 16. - t)) for t in pred_s]).mean()
    return alpha * loss_jepa + beta * (reg_pred + reg_ctx)


def test_loss_equals_the_published_get_loss():
    m = model()
    m.cfg.beta = 1.0
    occ = scene(batch=3, seed=4)
    masks = m.masks(m.encoder.voxelize(occ), step=0)
    ctx, pred, tgt = views(m, occ, masks)
    torch.manual_seed(0)
    # Shrink the context and predictions towards a point so the hinge of the variance term is active.
    ctx, pred = F.normalize(ctx + 30 * ctx.mean((0, 2, 3), keepdim=True), dim=1), F.normalize(pred + 30, dim=1)
    want = official_get_loss(ctx, pred, tgt, masks.context, masks.target, masks.context_empty, masks.target_empty)
    from drivewm.jepa.adl_jepa import _mean, _variance_term

    cos = 1.0 - (pred * tgt).sum(1)
    jepa = 0.75 * _mean(cos[masks.target]) + 0.25 * _mean(cos[masks.target_empty])
    reg = _variance_term(ctx, masks.context, 1 / 16) + _variance_term(pred, masks.target, 1 / 16)
    assert reg > 0
    assert torch.allclose(jepa + reg, want, atol=1e-6)
    # and model.loss composes the same pieces on its own views
    out = m.loss({"occ": occ})
    assert torch.isfinite(out["loss"]) and torch.allclose(out["loss"], out["loss_jepa"] + out["loss_reg"])


def test_ema_runs_from_0996_to_1():
    m = model()
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.on_step_end(0, 10)
    for t, o, b in zip(m.target_encoder.parameters(), m.encoder.parameters(), before):
        assert torch.allclose(t, 0.996 * b + 0.004 * o)
    m.on_step_end(10, 10)  # momentum 1.0 at the end: frozen
    frozen = [p.clone() for p in m.target_encoder.parameters()]
    m.on_step_end(10, 10)
    assert all(torch.equal(a, b) for a, b in zip(frozen, m.target_encoder.parameters()))


def dense_reference(enc: VoxelEncoder, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The encoder emulated densely with its own weights: every conv on the zero-filled grid, its output kept at
    the active sites (subm: the input sites; strided: a max-pool of the activity), BatchNorm over those sites."""
    for layer in enc.layers:
        conv = layer.conv
        if conv.subm:
            y = F.conv3d(x, conv.weight, padding=tuple(k // 2 for k in conv.kernel))
        else:
            y = F.conv3d(x, conv.weight, stride=conv.stride, padding=conv.padding)
            active = F.max_pool3d(active[:, None].float(), conv.kernel, conv.stride, conv.padding)[:, 0] > 0
        rows = torch.relu(layer.bn(y.permute(0, 2, 3, 4, 1)[active]))
        x = torch.zeros_like(y.permute(0, 2, 3, 4, 1)).index_put((*active.nonzero().T,), rows).permute(0, 4, 1, 2, 3)
    b, c, z, h, w = x.shape
    return x.reshape(b, c * z, h, w)


def test_sparse_encoder_equals_its_dense_emulation_with_gradients():
    torch.manual_seed(0)
    # float64, so that the two summation orders agree far below the tolerance
    enc = VoxelEncoder(VoxelEncoderConfig(grid_shape=[16, 16, 8], channels=[4, 8, 8], blocks=1, out_channels=8)).double().train()
    occ = scene(batch=3, seed=1)
    vox = enc.voxelize(occ)
    assert vox.coords.shape[0] == int((occ != FREE).sum())  # only the occupied voxels are rows
    out = enc(vox)
    grads = torch.autograd.grad(out.square().sum(), list(enc.parameters()))
    dense_in = torch.zeros(3, 16, 16, 8, 4, dtype=torch.float64).index_put((*(occ != FREE).nonzero().T,), enc.embed(occ[occ != FREE].long()))
    ref = dense_reference(enc, dense_in.permute(0, 4, 3, 1, 2), vox.active())
    ref_grads = torch.autograd.grad(ref.square().sum(), list(enc.parameters()))
    assert out.shape == ref.shape == (3, 8 * enc.cfg.out_height, 4, 4)
    assert torch.allclose(out, ref, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-8)


def test_submanifold_conv_keeps_the_active_sites_and_strided_conv_dilates():
    cfg = VoxelEncoderConfig(grid_shape=[8, 8, 4], channels=[2, 4], blocks=1, out_channels=4)
    enc = VoxelEncoder(cfg).eval()
    active = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    active[0, 1, 2, 3] = True
    x = SparseVoxels(active.nonzero(), torch.tensor([[1.0, -2.0, 0.5, 3.0]]), (4, 8, 8), 1)
    y = enc.layers[0](x)  # SubM: only the one site
    assert torch.equal(y.coords, x.coords)
    z = enc.layers[2](y)  # stride-2 sparse conv: the sites whose 3x3x3 window holds it
    want = F.max_pool3d(active[:, None].float(), 3, 2, 1)[:, 0] > 0
    assert torch.equal(z.active(), want)


def test_mean_vfe_averages_the_points_of_a_voxel_and_drops_padding():
    cfg = VoxelEncoderConfig(modality="lidar", grid_shape=[8, 8, 4], grid_lower=[0.0, 0.0, 0.0], voxel_size=[1.0, 1.0, 1.0],
                             channels=[2, 4], out_channels=4)
    pts = torch.tensor([[[1.2, 2.5, 0.5, 1.0], [1.8, 2.1, 0.1, 3.0], [5.5, 5.5, 3.5, 2.0], [9.0, 1.0, 1.0, 1.0],
                         [0.5, 0.5, 0.5, 9.0]]])
    valid = torch.tensor([[True, True, True, True, False]])
    vox = mean_vfe(pts, valid, cfg)
    assert vox.coords.tolist() == [[0, 0, 1, 2], [0, 3, 5, 5]]  # the 4th point lies outside, the 5th is padding
    feats = vox.dense()
    assert torch.allclose(feats[0, :, 0, 1, 2], torch.tensor([1.5, 2.3, 0.3, 2.0]))
    assert torch.allclose(feats[0, :, 3, 5, 5], pts[0, 2])


def test_lidar_path_trains_on_simulator_lidar():
    ep = simulate_episode(sim_preset("micro"), 0, 2)
    offs = ep["lidar_offsets"]
    clouds = [ep["lidar"][offs[t]:offs[t + 1]] for t in range(2)]
    n = max(len(c) for c in clouds)
    lidar = np.zeros((1, 2, n, 4), np.float32)
    for t, c in enumerate(clouds):
        lidar[0, t, :len(c)] = c
    batch = {"lidar": torch.from_numpy(lidar), "lidar_count": torch.tensor([[len(c) for c in clouds]])}
    points, valid = lidar_frames(batch)
    assert points.shape[0] == 2 and int(valid.sum()) == sum(len(c) for c in clouds)
    torch.manual_seed(0)
    cfg = AdlJepaConfig(encoder=VoxelEncoderConfig(modality="lidar", grid_shape=[32, 32, 4], voxel_size=[1.6, 1.6, 1.6],
                                                   channels=[4, 8, 8, 8], blocks=1, out_channels=8), diag_every=0)
    m = AdlJepa(cfg).train()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(3):
        out = m.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.on_step_end(step, 3)
        losses.append(float(out["loss"].detach()))
    assert all(np.isfinite(losses))
    assert m.encode(batch).shape == (2, 16, m.cfg.encoder.dim)
