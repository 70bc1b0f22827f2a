"""Every registered JEPA-kind model: forward + backward, gradients everywhere, nothing NaN; EMA wiring;
V-JEPA 2-AC causality and KV-cached rollout; bad input."""

import pytest
import torch

from drivewm.jepa.ac import JepaAC, JepaACConfig
from drivewm.jepa.bev import JepaBEV, JepaBEVConfig
from drivewm.jepa.encoders import EncoderConfig, PatchEncoder
from drivewm.jepa.objectives import CollapseConfig
from drivewm.jepa.voxels import VoxelEncoderConfig
from drivewm.registry import build_model, registered_models

from scenes import scene_batch

ENC = EncoderConfig(grid_shape=[16, 16, 4], patch=4, dim=32, depth=1, heads=2)
VOXEL_ENC = VoxelEncoderConfig(grid_shape=[16, 16, 4], channels=[4, 8, 8], blocks=1, out_channels=8)  # patch 4, as ENC
VARIANTS = {
    "ema": CollapseConfig(),
    "vicreg": CollapseConfig(target="shared", stop_grad=False, vicreg_sim=25.0),
    "adl": CollapseConfig(adl_variance=1.0),
    "sigreg": CollapseConfig(target="shared", stop_grad=False, sigreg_lambda=0.05, sigreg_slices=16),
    "ema+sigreg": CollapseConfig(sigreg_lambda=0.05, sigreg_slices=16),
}


def _jepa_models():
    out = []
    for name, entry in sorted(registered_models().items()):
        if entry.kind != "jepa" or name == "vjepa_camera":  # camera clips: tests/jepa/test_video_encoder.py
            continue
        kw = {"encoder": ENC} if name != "jepa_ac" else {"encoder": ENC, "width": 32, "depth": 1, "heads": 2}
        if name == "adl_jepa":
            kw = {"encoder": VOXEL_ENC}
        if name == "occupancy_mae":
            kw = {"encoder": VOXEL_ENC, "decoder_channels": [4]}
        out.append(pytest.param(entry.config_cls(**kw), id=name))
    out += [pytest.param(JepaBEVConfig(encoder=ENC, collapse=c, diag_every=1), id=f"jepa_bev-{k}") for k, c in VARIANTS.items()]
    out.append(pytest.param(JepaBEVConfig(encoder=ENC, masking="bev", pred_loss="cosine", diag_every=1), id="jepa_bev-adl-masking"))
    tubes_enc = EncoderConfig(grid_shape=[16, 16, 4], patch=2, dim=32, depth=1, heads=2)
    out.append(pytest.param(JepaBEVConfig(encoder=tubes_enc, masking="tubes", pred_loss="l1", diag_every=1,
                                          collapse=CollapseConfig(sigreg_lambda=0.05, sigreg_slices=8)), id="jepa_bev-vjepa-tubes"))
    vjepa2_enc = EncoderConfig(grid_shape=[16, 16, 4], patch=2, dim=36, depth=1, heads=2, tubelet=2, pos_embed="rope3d")
    out.append(pytest.param(JepaBEVConfig(encoder=vjepa2_enc, masking="tubes", pred_loss="l1", diag_every=1,
                                          collapse=CollapseConfig(ema_start=0.99925, ema_end=0.99925)),
                            id="jepa_bev-vjepa2-tubelet-rope3d"))
    return out


@pytest.mark.parametrize("cfg", _jepa_models())
def test_forward_backward_all_params_get_grads(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = scene_batch(3, 4, seed=1, grid=(16, 16, 4))
    out = model.loss(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
    if hasattr(model, "on_step_end"):
        model.on_step_end(0, 10)
    z = model.encode(batch["occ"][:, 0])
    n = (16 // cfg.encoder.patch) ** 2
    assert z.shape == (3, n, cfg.encoder.dim)


def test_ema_teacher_follows_schedule_and_gets_no_grad():
    torch.manual_seed(0)
    m = JepaBEV(JepaBEVConfig(encoder=ENC))
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.on_step_end(5, 10)  # momentum 0.996 + 0.004 * 0.5 = 0.998
    for b, t, o in zip(before, m.target_encoder.parameters(), m.encoder.parameters()):
        torch.testing.assert_close(t, 0.998 * b + 0.002 * o)
    assert m.counter.value == 6


def test_masks_reproducible_per_step():
    m = JepaBEV(JepaBEVConfig(encoder=ENC, seed=3))
    (a,), (b,) = m.masks(4, 7), m.masks(4, 7)
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    tubes = JepaBEV(JepaBEVConfig(encoder=EncoderConfig(grid_shape=[16, 16, 4], patch=2, dim=32, depth=1, heads=2), masking="tubes"))
    short, long = tubes.masks(2, 0, frames=3)
    assert short.context.max() < 3 * 64 and long.targets.shape[-1] % 3 == 0


def test_ac_block_causal_and_cached_rollout():
    torch.manual_seed(0)
    m = JepaAC(JepaACConfig(encoder=ENC, width=32, depth=2, heads=2)).eval()
    b = scene_batch(2, 4, seed=2, grid=(16, 16, 4))
    z = m.encode(b["occ"].flatten(0, 1)).view(2, 4, 16, 32)
    acts, states = torch.randn(2, 4, 2), torch.randn(2, 5, 3)
    cond = m.conditions(acts, states)  # [2, 4, 5]: action + motion to the next pose
    assert cond.shape == (2, 4, 5)
    with torch.no_grad():
        p1, _ = m(z, cond, states[:, :4])
        z2, c2 = z.clone(), cond.clone()
        z2[:, 3] += 1.0
        c2[:, 3] += 1.0
        p2, _ = m(z2, c2, states[:, :4])
    # frame t's prediction sees frames <= t only: changing frame 3 leaves predictions 0..2 unchanged
    torch.testing.assert_close(p1[:, :3], p2[:, :3])
    assert (p1[:, 3] - p2[:, 3]).abs().max() > 1e-4
    # the KV-cached rollout with known future poses equals the full block-causal forward on its own predictions
    seq = torch.randn(2, 3, 2)
    with torch.no_grad():
        roll = m.rollout(z[:, :2], seq, past_actions=acts[:, :1], states=states)
        aa = torch.cat([acts[:, :1], seq], 1)
        cc = m.conditions(aa, states)
        zs = [z[:, 0], z[:, 1]]
        for _ in range(3):
            pz, _ = m(torch.stack(zs, 1), cc[:, : len(zs)], states[:, : len(zs)])
            zs.append(pz[:, -1])
    torch.testing.assert_close(roll, torch.stack(zs[2:], 1), atol=1e-5, rtol=1e-4)
    # the motion reaches the predictor: other future poses, other predictions
    moved = states.clone()
    moved[:, 2:, 0] += 3.0
    with torch.no_grad():
        assert (m.rollout(z[:, :2], seq, past_actions=acts[:, :1], states=moved) - roll).abs().max() > 1e-4
    assert m.predict(z[:, :2], acts[:, :2], states[:, :3]).shape == (2, 16, 32)
    with pytest.raises(ValueError, match="action_motion"):  # motion without the future poses
        m.rollout(z[:, :2], seq, past_actions=acts[:, :1], states=states[:, :2])


def test_ac_action_only_rollout_feeds_predicted_states():
    torch.manual_seed(0)
    m = JepaAC(JepaACConfig(encoder=ENC, width=32, depth=2, heads=2, condition="action")).eval()
    b = scene_batch(2, 2, seed=3, grid=(16, 16, 4))
    z = m.encode(b["occ"].flatten(0, 1)).view(2, 2, 16, 32)
    acts, states, seq = torch.randn(2, 1, 2), torch.randn(2, 2, 3), torch.randn(2, 3, 2)
    with torch.no_grad():
        roll = m.rollout(z, seq, past_actions=acts, states=states)
        aa = torch.cat([acts, seq], 1)
        cc = m.conditions(aa, None)
        zs, ss = [z[:, 0], z[:, 1]], [states[:, 0], states[:, 1]]
        for _ in range(3):
            pz, ps = m(torch.stack(zs, 1), cc[:, : len(zs)], torch.stack(ss, 1))
            zs.append(pz[:, -1])
            ss.append(ps[:, -1])
    torch.testing.assert_close(roll, torch.stack(zs[2:], 1), atol=1e-5, rtol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="collapse.target"):
        CollapseConfig(target="teacher")
    with pytest.raises(ValueError, match="divisible by patch"):
        EncoderConfig(grid_shape=[18, 16, 4], patch=4)
    enc = PatchEncoder(ENC)
    with pytest.raises(ValueError, match="no context"):
        enc(torch.zeros(2, 16, 16, 4, dtype=torch.uint8), keep=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="class id"):
        enc(torch.full((1, 16, 16, 4), 30, dtype=torch.uint8))
    m = JepaAC(JepaACConfig(encoder=ENC, width=32, depth=1, heads=2))
    with pytest.raises(ValueError, match="past_actions"):
        m.rollout(torch.zeros(2, 2, 16, 32), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=">= 3 frames"):
        m.loss(scene_batch(2, 2, seed=0, grid=(16, 16, 4)))
    # a batch of one frame: SIGReg / VICReg over 16 tokens still works, one token would not
    from drivewm.jepa.regularizers import RegularizerError, vicreg_variance

    with pytest.raises(RegularizerError, match="batch of 1"):
        vicreg_variance(torch.randn(1, 1, 32))


def test_ac_loads_frozen_encoder_from_run_dir(tmp_path):
    from drivewm.config import to_yaml
    from drivewm.train.config import RunConfig
    from drivewm.train.checkpoint import CheckpointManager

    torch.manual_seed(0)
    src = JepaBEV(JepaBEVConfig(encoder=ENC))
    with torch.no_grad():
        for p in src.target_encoder.parameters():
            p.add_(0.5)  # the EMA teacher differs from the online encoder; AC must freeze the teacher
    CheckpointManager(tmp_path).save(
        1, config_yaml=to_yaml(RunConfig(model=src.cfg)), model_state=src.state_dict(), optim_state=None, state={"step": 1}
    )
    from drivewm.train.checkpoint import build_model_from_sources

    ac = build_model_from_sources(JepaACConfig(encoder_run=str(tmp_path), width=32, depth=1, heads=2))
    for a, b in zip(ac.encoder.state_dict().values(), src.target_encoder.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert all(not p.requires_grad for p in ac.encoder.parameters())
    before = [p.clone() for p in ac.encoder.parameters()]
    out = ac.loss(scene_batch(2, 3, seed=0, grid=(16, 16, 4)))
    out["loss"].backward()
    assert all(p.grad is None for p in ac.encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, ac.encoder.parameters()))


def test_jepa_presets_load_and_the_vjepa_presets_are_the_published_recipes():
    from drivewm.config import preset_path
    from drivewm.train.config import load_run_config

    paths = sorted(preset_path("jepa").glob("*.yaml"))
    cfgs = {p.stem: load_run_config(p) for p in paths}
    assert {"jepa_bev_vjepa", "jepa_bev_vjepa2", "lejepa"} <= set(cfgs)
    v1, v2 = cfgs["jepa_bev_vjepa"].model, cfgs["jepa_bev_vjepa2"].model
    assert v1.encoder.tubelet == 2 and v1.encoder.pos_embed == "sincos" and (v1.collapse.ema_start, v1.collapse.ema_end) == (0.998, 1.0)
    assert v2.encoder.tubelet == 2 and v2.encoder.pos_embed == "rope3d" and v2.masking == "tubes"
    assert v2.collapse.ema_start == v2.collapse.ema_end == 0.99925  # constant, V-JEPA 2
    for name, cfg in cfgs.items():
        if cfg.model.name != "jepa_ac":  # jepa_ac presets read an encoder run
            build_model(cfg.model)
        if getattr(cfg.model, "masking", None) == "tubes":
            assert cfg.data.past % cfg.model.encoder.tubelet == 0, name
