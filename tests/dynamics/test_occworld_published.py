"""OccWorld as published (`occworld_published`): no privileged future, and the pose branch as the official code.

References: wzzheng/OccWorld commit 1ee7f77 (`loss/plan_reg_loss_lidar.py`, `model/TransVQVAE.py`); the
command rule of hustvl/VAD's nuScenes converter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivewm.data.windows import driving_command
from drivewm.dynamics.pose_branch import plan_reg_loss, pose_inputs, select_mode
from drivewm.dynamics.spatiotemporal import OccWorldConfig, OccWorldModel
from drivewm.hub import config_to_dict
from drivewm.tokenizers.occ import OccTokenizerConfig

torch.set_num_threads(1)
PAST, HORIZON = 3, 3


def official_plan_reg_loss(rel_pose: np.ndarray, gt_rel_poses: np.ndarray, gt_modes: np.ndarray) -> float:
    """`PlanRegLossLidar.plan_reg_loss` (loss_type 'l2') line by line in NumPy, `metas` as lists of per-clip arrays."""
    bs, num_frames, num_modes, _ = rel_pose.shape
    rel_pose = rel_pose.transpose(0, 2, 1, 3)  # B, M, F, 2
    rel_pose = np.cumsum(rel_pose, -2)
    gt_rel_pose = np.asarray(gt_rel_poses)  # B, F, 2
    gt_mode = np.asarray(gt_modes).transpose(0, 2, 1)  # B, M, F
    gt_rel_pose = np.repeat(gt_rel_pose[:, None], num_modes, 1)  # B, M, F, 2
    gt_rel_pose = np.cumsum(gt_rel_pose, -2)
    weight = gt_mode
    loss = np.sqrt(((rel_pose - gt_rel_pose) ** 2).sum(-1)) * weight
    return float(loss.sum() / bs / num_frames)


def test_plan_loss_is_the_official_formula_on_a_fixed_example():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(2, 4, 3, 2))
    gt = rng.normal(size=(2, 4, 2))
    modes = np.eye(3)[rng.integers(0, 3, size=(2, 4))]
    got = plan_reg_loss(torch.tensor(pred), torch.tensor(gt), torch.tensor(modes)).item()
    assert got == pytest.approx(official_plan_reg_loss(pred, gt, modes), rel=1e-12)
    # By hand: one clip, two frames, straight both times; the straight mode's steps (1, 0), (1, 0) against
    # the truth (1, 0), (2, 0): cumulative errors 0 and 1 -> (0 + 1) / (1 * 2).
    p = torch.zeros(1, 2, 3, 2)
    p[0, :, 2] = torch.tensor([1.0, 0.0])
    p[0, :, 0] = 9.0  # the other modes never count
    g = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])
    m = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    assert plan_reg_loss(p, g, m).item() == pytest.approx(0.5)


def test_driving_command_is_vads_rule():
    """Right / left / straight by the lateral offset 6 frames on (>= 2 m), in the frame's own heading."""
    t = np.arange(10, dtype=np.float64)
    straight = np.stack([2 * t, 0.1 * t, 0 * t], -1)
    left = np.stack([2 * t, 0.5 * t, 0 * t], -1)  # 3 m left after 6 frames
    right = np.stack([2 * t, -0.5 * t, 0 * t], -1)
    assert driving_command(straight)[0].tolist() == [0, 0, 1]
    assert driving_command(left)[0].tolist() == [0, 1, 0]
    assert driving_command(right)[0].tolist() == [1, 0, 0]
    # Heading north: the left of a north-facing car is -x.
    north = np.stack([-0.5 * t, 2 * t, np.full_like(t, np.pi / 2)], -1)
    assert driving_command(north)[0].tolist() == [0, 1, 0]
    # Exactly 2 m turns (VAD's >= / <=); near the end the last frame stands in; the last frame is straight.
    edge = np.stack([2 * t, t / 3, 0 * t], -1)
    assert driving_command(edge)[0].tolist() == [0, 1, 0]
    assert driving_command(left)[-1].tolist() == [0, 0, 1]
    assert driving_command(left)[3].tolist() == [0, 1, 0]  # frame 9 is 6 frames on: 3 m
    assert driving_command(left)[6].tolist() == [0, 0, 1]  # frame 9 is the last, 3 frames on: 1.5 m
    assert np.all(driving_command(left).sum(1) == 1)


def _model(**over) -> OccWorldModel:
    tok = OccTokenizerConfig(grid="micro", class_dim=4, z_channels=16)
    tok.cnn.channels, tok.cnn.channel_mult, tok.cnn.attention = 8, [1, 2, 2], False
    tok.quantizer.codebook_size = 32
    sizes = {**dict(dim=16, dim_mult=[1, 2], depth=1, heads=2, max_frames=PAST + HORIZON, pose_layers=1), **over}
    cfg = OccWorldConfig(tokenizer=config_to_dict(tok), vocab_size=32, token_shape=[8, 8], **sizes)
    torch.manual_seed(0)
    return OccWorldModel(cfg).eval()


def _window(seed: int = 0, frames: int = PAST + HORIZON) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    occ = torch.randint(0, 18, (2, frames, 32, 32, 4), generator=g, dtype=torch.uint8)
    t = torch.arange(frames, dtype=torch.float32)
    pose = torch.stack([3 * t, 0.3 * t**1.5, 0.05 * t], -1).expand(2, frames, 3).clone()
    return {"occ": occ, "ego_pose": pose, "rel_pose": pose - pose[:, PAST - 1 : PAST],
            "action": torch.randn(2, frames, 2, generator=g),
            "command": torch.eye(3)[torch.randint(0, 3, (2, frames), generator=g)]}


NETWORKS = ["st", "unet"]


@pytest.mark.parametrize("network", NETWORKS)
def test_forecast_is_bit_identical_when_the_future_ego_motion_is_randomised(network):
    """The published scene stream never reads the recorded motion of a forecast frame; nor does the pose branch."""
    from drivewm.forecaster import split_window

    model = _model(network=network)
    batch = _window()
    context, _ = split_window(batch, PAST)
    occ, plan = model.forecast_plan(context, HORIZON)
    g = torch.Generator().manual_seed(5)
    shaken = {k: v.clone() for k, v in context.items()}
    # Every future pose, and every action from the current frame's on (action t drives t -> t+1).
    for key, first in (("ego_pose", PAST), ("rel_pose", PAST), ("action", PAST - 1)):
        shaken[key][:, first:] = torch.randn(shaken[key][:, first:].shape, generator=g) * 10
    occ2, plan2 = model.forecast_plan(shaken, HORIZON)
    assert torch.equal(occ, occ2) and torch.equal(plan, plan2)
    assert torch.equal(model.forecast(shaken, HORIZON), occ)
    # The observed motion does reach the pose branch (the test above would pass for a branch that reads nothing).
    moved = {k: v.clone() for k, v in context.items()}
    moved["ego_pose"][:, : PAST - 1, 0] -= 2.0
    assert torch.equal(model.forecast_plan(moved, HORIZON)[0], occ)
    assert not torch.equal(model.forecast_plan(moved, HORIZON)[1], plan)


@pytest.mark.parametrize("network", NETWORKS)
def test_scene_loss_ignores_the_pose_inputs_and_the_total_adds_a_tenth_of_the_plan_loss(network):
    model = _model(network=network).train()
    batch = _window()
    out = model.loss(batch)
    assert out["loss"].item() == pytest.approx(out["ce_loss"].item() + 0.1 * out["plan_loss"].item(), rel=1e-6)
    other = dict(batch, ego_pose=batch["ego_pose"] * 3, command=batch["command"].roll(1, -1))
    out2 = model.loss(other)
    assert out2["ce_loss"].item() == out["ce_loss"].item()
    assert out2["plan_loss"].item() != out["plan_loss"].item()


@pytest.mark.parametrize("network", NETWORKS)
def test_plan_loss_of_the_model_is_the_official_formula_on_its_own_outputs(network):
    model = _model(network=network).train()
    batch = _window()
    out = model.loss(batch)
    tokens = model.encode_batch(batch)
    steps, command = model.steps_and_command(batch)
    _, modes = model.outputs(tokens[:, :-1], *pose_inputs(steps[:, :-1], command[:, :-1]))
    want = official_plan_reg_loss(modes.detach().double().numpy(), steps[:, :-1].double().numpy(),
                                  command[:, :-1].double().numpy())
    assert out["plan_loss"].item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("network", NETWORKS)
def test_rollout_feeds_the_predicted_steps_back(network):
    """Each predicted step is what the pose stream gives when its earlier predictions are its inputs: running the
    stream once over the observed and predicted steps (teacher forcing on its own outputs) reproduces them."""
    model = _model(network=network)
    batch = _window()
    tokens = model.encode_batch(batch, PAST)
    steps, command = model.steps_and_command(batch)
    future, pred = model.rollout_with_poses(tokens, steps[:, : PAST - 1], command, HORIZON)
    frames = torch.cat([tokens, future[:, :-1]], 1)  # the frames whose outputs gave the predictions
    all_steps = torch.cat([steps[:, : PAST - 1], pred[:, :-1]], 1)  # step t: t -> t+1
    all_steps = torch.cat([all_steps, torch.zeros_like(all_steps[:, :1])], 1)
    _, modes = model.outputs(frames, *pose_inputs(all_steps, command[:, : frames.shape[1]]))
    again = select_mode(modes[:, PAST - 1 :], command[:, PAST - 1 : frames.shape[1]])
    torch.testing.assert_close(again, pred, rtol=1e-5, atol=1e-6)
    # Feeding back matters: the teacher-forced true steps give other predictions after the first.
    true_in = pose_inputs(steps[:, : frames.shape[1]], command[:, : frames.shape[1]])
    forced = select_mode(model.outputs(frames, *true_in)[1][:, PAST - 1 :], command[:, PAST - 1 : frames.shape[1]])
    torch.testing.assert_close(forced[:, 0], pred[:, 0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(forced[:, 1:], pred[:, 1:])


def test_published_mode_refuses_ego_conditions():
    with pytest.raises(ValueError, match="condition must be 'none'"):
        _model(condition="action")


def test_evaluate_forecast_scores_the_plan_beside_constant_velocity(tmp_path, tokenizer_run):
    import json

    from drivewm.config import to_yaml
    from drivewm.evaluation import evaluate_forecast
    from drivewm.report.forecast import write_forecast_table
    from drivewm.sim.generate import generate_store
    from drivewm.train.checkpoint import build_model_from_sources, write_checkpoint
    from drivewm.train.config import load_run_config

    generate_store(tmp_path / "data", preset="micro", episodes=2, frames=14, seed=0)
    tokenizer_run(tmp_path / "tok")
    size = [f"model.tokenizer_run={tmp_path / 'tok'}", "model.vocab_size=64", "model.token_shape=[8,8]",
            "model.dim=16", "model.depth=1", "model.heads=2", "model.dim_mult=[1,2]"]
    runs = {"wm": ["model.name=occworld_published", "model.pose_layers=1", *size],
            "own": ["model.name=occworld", *size]}  # drivewm's action-conditioned variant, in the same table
    for run, overrides in runs.items():
        cfg = load_run_config(None, overrides)
        model = build_model_from_sources(cfg.model)
        write_checkpoint(tmp_path / run, config_yaml=to_yaml(cfg), model_state=model.state_dict(), optim_state=None,
                         state={"step": 0})
    table = evaluate_forecast([tmp_path / run for run in runs], tmp_path / "data", past=5, horizon=6, max_windows=2,
                              end_margin=2)
    assert table.windows == 14 - 12  # the last episode is the validation split
    # Each figure under its own variant's name, never one row for both; only the published variant plans.
    assert [n for n in table.results if n.startswith("occworld")] == [
        "occworld_published [attention] (wm)", "occworld [attention] (own)"]
    plans = table.planning
    assert list(plans) == ["constant_velocity", "occworld_published [attention] (wm)"]
    for r in plans.values():
        assert len(r["l2_per_step"]) == 6 and set(r["l2_uniad"]) == {"1s", "2s", "3s", "avg"}
        assert r["l2_uniad"]["3s"] == r["l2_per_step"][5]
        assert len(r["collision_per_step"]) == 6
    write_forecast_table(table, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "results" / "forecast.json").read_text())
    assert [row[0] for row in doc["planning"]["rows"]] == list(plans)
    assert doc["planning"]["columns"][1] == "L2 1s (at step)"


@pytest.mark.parametrize("preset", ["world/occworld_published.yaml", "world/occworld_published_tiny.yaml"])
def test_published_presets_train_as_occworld(preset):
    """wzzheng/OccWorld config/occworld.py + train.py: AdamW 1e-3 (betas 0.9 / 0.999, weight decay 0.01), 50 warm-up
    iterations, cosine to 1e-6, grad clip 35, fp32, 15 + 1-frame clips."""
    from drivewm.train.config import load_run_config

    cfg = load_run_config(preset)
    t = cfg.train
    assert cfg.model.name == "occworld_published" and cfg.model.condition == "none" and cfg.model.plan_weight == 0.1
    assert (t.lr, t.beta1, t.beta2, t.weight_decay, t.warmup_steps, t.grad_clip, t.precision) == (
        1e-3, 0.9, 0.999, 0.01, 50, 35.0, "fp32")
    assert t.lr * t.min_lr_ratio == pytest.approx(1e-6)
    assert cfg.data.past + cfg.data.future == 16 == cfg.model.max_frames + 1
    own = load_run_config("world/occworld_tiny.yaml")  # drivewm's own variant keeps drivewm's settings
    assert own.model.name == "occworld" and (own.train.beta2, own.train.grad_clip) != (0.999, 35.0)


def official_layout(c: int, hw: int, channels: tuple, t_layers: int, p_layers: int, vocab: int, frames: int,
                    pose_out: int) -> dict[str, tuple]:
    """Key -> shape of an official TransVQVAE's world-model tensors, written from the official __init__s
    (`PlanUAutoRegTransformer`, `PoseEncoder`, `PoseDecoder`, `FFN`; learnable_queries False)."""
    keys: dict[str, tuple] = {}

    def lin(p, i, o):
        keys[p + ".weight"], keys[p + ".bias"] = (o, i), (o,)

    def conv(p, i, o, k):
        keys[p + ".weight"], keys[p + ".bias"] = (o, i, k, k), (o,)

    def ln(p, shape):
        keys[p + ".weight"] = keys[p + ".bias"] = shape

    def mha(p, d):
        keys.update({p + ".in_proj_weight": (3 * d, d), p + ".in_proj_bias": (3 * d,),
                     p + ".out_proj.weight": (d, d), p + ".out_proj.bias": (d,)})

    def ffn(p, d):
        lin(p + ".fc1", d, 4 * d)
        lin(p + ".fc2", 4 * d, d)

    def unet(p, shape, i, o):
        ln(p + ".ln", shape)
        conv(p + ".conv1", i, o, 3)
        conv(p + ".conv2", o, o, 3)
        if i != o:
            conv(p + ".shortcut", i, o, 1)

    def temporal(p, d):
        for j in range(t_layers):
            mha(f"{p}.{j}.0", d), ln(f"{p}.{j}.1", (d,)), ffn(f"{p}.{j}.2", d), ln(f"{p}.{j}.3", (d,))

    def pose(p, d):
        for j in range(p_layers):
            mha(f"{p}.{j}.0", d), ln(f"{p}.{j}.1", (d,)), mha(f"{p}.{j}.2", d), ln(f"{p}.{j}.3", (d,))
            ffn(f"{p}.{j}.4", d), ln(f"{p}.{j}.5", (d,))

    t = "transformer."
    keys[t + "temporal_embeddings.weight"] = keys[t + "pose_temporal_embeddings.weight"] = (frames + 1, c)
    sizes = [hw // 2**i for i in range(len(channels))]
    pre = c
    for i, (ch, s) in enumerate(zip(channels[:-1], sizes[:-1])):
        temporal(f"{t}temporal_attentions_en.{i}", pre)
        unet(f"{t}encoders.{i}.0", (s, s), pre, ch), unet(f"{t}encoders.{i}.1", (s, s), ch, ch)
        conv(f"{t}downsamples.{i}", ch, ch, 2)
        lin(f"{t}pose_en.{i}.0", pre, ch), lin(f"{t}pose_en.{i}.2", ch, ch)
        pose(f"{t}pose_attn_en.{i}", pre)
        pre = ch
    ch = channels[-1]
    unet(t + "mid.0", (pre, sizes[-1], sizes[-1]), pre, ch), unet(t + "mid.1", (ch, sizes[-1], sizes[-1]), ch, ch)
    lin(t + "pose_mid.0", pre, ch), lin(t + "pose_mid.2", ch, ch)
    pre = ch
    for i, (ch, s) in enumerate(zip(channels[-2::-1], sizes[-2::-1])):
        agg = 2 * ch
        keys[f"{t}upsamples.{i}.weight"], keys[f"{t}upsamples.{i}.bias"] = (pre, ch, 2, 2), (ch,)
        temporal(f"{t}temporal_attentions_de.{i}", agg)
        unet(f"{t}decoders.{i}.0", (agg, s, s), agg, ch), unet(f"{t}decoders.{i}.1", (ch, s, s), ch, ch)
        lin(f"{t}pose_up.{i}", pre, ch)
        pose(f"{t}pose_attn_de.{i}", agg)
        lin(f"{t}pose_de.{i}.0", agg, ch), lin(f"{t}pose_de.{i}.2", ch, ch)
        pre = ch
    conv(t + "conv_out", pre, vocab, 3)
    lin(t + "pose_out", pre, pose_out)
    lin("pose_encoder.pose_encoder.0", 5, c), lin("pose_encoder.pose_encoder.2", c, c)
    lin("pose_decoder.pose_decoder.0", pose_out, pose_out), lin("pose_decoder.pose_decoder.2", pose_out, 6)
    return keys


def test_an_official_checkpoint_loads_by_name(tmp_path):
    from drivewm.dynamics.occworld_convert import load_official_world
    from drivewm.errors import CheckpointError

    model = _model(network="unet", dim_mult=[1, 2, 4], depth=2, pose_layers=2)
    code_dim = 16  # the micro tokenizer's z_channels
    layout = official_layout(code_dim, 8, (16, 32, 64), 2, 2, 32, PAST + HORIZON, 16)
    g = torch.Generator().manual_seed(3)
    state = {"module." + k: torch.randn(shape, generator=g) for k, shape in layout.items()}
    state["module.vae.vqvae.embedding.weight"] = torch.randn(32, 16, generator=g)
    torch.save({"state_dict": state, "epoch": 125, "optimizer": {"param_groups": [{"lr": 1e-3}]}}, tmp_path / "ep.pth")
    rest = load_official_world(model, tmp_path / "ep.pth")
    assert list(rest) == ["vae.vqvae.embedding.weight"]
    own = model.state_dict()
    for k in layout:
        assert torch.equal(own[k], state["module." + k]), k
    world_keys = [k for k in own if not k.startswith("tokenizer.")]
    assert sorted(world_keys) == sorted(layout)
    del state["module.transformer.pose_out.bias"]
    state["module.transformer.conv_out.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="pose_out.bias.*conv_out.weight"):
        load_official_world(model, tmp_path / "bad.pth")


def official_vae_layout(ch, ch_mult, nrb, attn_res, res, in_ch, z_ch, out_ch, n_e, e_dim, ncls, expansion):
    """Key -> shape of an official `VAERes2D` with its `VectorQuantizer` (prefix 'vae.'), written from the official
    __init__s (`Encoder2D`, `Decoder2D`, `ResnetBlock` without temb, `AttnBlock`, double_z False)."""
    keys: dict[str, tuple] = {}

    def conv(p, i, o, k):
        keys[p + ".weight"], keys[p + ".bias"] = (o, i, k, k), (o,)

    def gn(p, c):
        keys[p + ".weight"] = keys[p + ".bias"] = (c,)

    def resblock(p, i, o):
        gn(p + ".norm1", i), conv(p + ".conv1", i, o, 3), gn(p + ".norm2", o), conv(p + ".conv2", o, o, 3)
        if i != o:
            conv(p + ".nin_shortcut", i, o, 1)

    def attn(p, c):
        gn(p + ".norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(f"{p}.{n}", c, c, 1)

    def mid(p, c):
        resblock(p + ".block_1", c, c), attn(p + ".attn_1", c), resblock(p + ".block_2", c, c)

    levels, e = len(ch_mult), "vae.encoder."
    conv(e + "conv_in", in_ch, ch, 3)
    cur, in_mult = res, (1,) + tuple(ch_mult)
    for lvl in range(levels):
        bi, bo = ch * in_mult[lvl], ch * ch_mult[lvl]
        for b in range(nrb):
            resblock(f"{e}down.{lvl}.block.{b}", bi, bo)
            bi = bo
            if cur in attn_res:
                attn(f"{e}down.{lvl}.attn.{b}", bi)
        if lvl != levels - 1:
            conv(f"{e}down.{lvl}.downsample.conv", bi, bi, 3)
            cur //= 2
    mid(e + "mid", bi), gn(e + "norm_out", bi), conv(e + "conv_out", bi, z_ch, 3)
    d = "vae.decoder."
    bi, cur = ch * ch_mult[-1], res // 2 ** (levels - 1)
    conv(d + "conv_in", z_ch, bi, 3), mid(d + "mid", bi)
    for lvl in reversed(range(levels)):
        bo = ch * ch_mult[lvl]
        for b in range(nrb):
            resblock(f"{d}up.{lvl}.block.{b}", bi, bo)
            bi = bo
            if cur in attn_res:
                attn(f"{d}up.{lvl}.attn.{b}", bi)
        if lvl != 0:
            conv(f"{d}up.{lvl}.upsample.conv", bi, bi, 3)
            cur *= 2
    gn(d + "norm_out", bi), conv(d + "conv_out", bi, out_ch, 3)
    keys["vae.class_embeds.weight"] = (ncls, expansion)
    keys["vae.vqvae.embedding.weight"] = (n_e, e_dim)
    conv("vae.vqvae.quant_conv", z_ch, e_dim, 1), conv("vae.vqvae.post_quant_conv", e_dim, z_ch, 1)
    return keys


def test_the_official_tokenizer_structure_loads_with_the_world_model(tmp_path):
    """An official TransVQVAE checkpoint (VQ-VAE included) into occworld_published on occ_vqvae_published."""
    from drivewm.dynamics.occworld_convert import load_official_world
    from drivewm.tokenizers.occworld_vae import OccWorldVAEConfig

    tok = OccWorldVAEConfig(grid="micro", expansion=4, ch=8, ch_mult=[1, 2], num_res_blocks=2, attn_resolutions=[16],
                            z_channels=16, n_e=32, e_dim=16)
    cfg = OccWorldConfig(tokenizer=config_to_dict(tok), vocab_size=32, token_shape=[16, 16], network="unet", dim=16,
                         dim_mult=[1, 2], depth=1, heads=2, max_frames=PAST + HORIZON, pose_layers=1)
    torch.manual_seed(0)
    model = OccWorldModel(cfg).eval()
    layout = official_layout(16, 16, (16, 32), 1, 1, 32, PAST + HORIZON, 16)
    layout.update(official_vae_layout(8, (1, 2), 2, (16,), 32, 4 * 4, 16, 4 * 4, 32, 16, 18, 4))
    g = torch.Generator().manual_seed(4)
    state = {k: torch.randn(shape, generator=g) for k, shape in layout.items()}
    torch.save({"state_dict": state}, tmp_path / "ep.pth")
    assert load_official_world(model, tmp_path / "ep.pth") == {}
    own = model.state_dict()
    assert sorted(own) == sorted(k.replace("vae.", "tokenizer.", 1) for k in layout)
    for k, v in state.items():
        assert torch.equal(own[k.replace("vae.", "tokenizer.", 1)], v), k
    # The frozen tokenizer reads and writes occupancy through the loaded weights.
    occ = _window()["occ"][0, :2]
    codes = model.tokenizer.encode(occ)
    assert codes.shape == (2, 16, 16) and model.tokenizer.decode(codes).shape == (2, 18, 32, 32, 4)


def test_the_official_tokenizer_has_the_published_structure():
    """Occ3D: 200 -> 50 tokens, attention after every res block at 50 only, decoder blocks = num_res_blocks."""
    from drivewm.tokenizers.occworld_vae import OccWorldVAE, OccWorldVAEConfig

    vae = OccWorldVAE(OccWorldVAEConfig())
    assert vae.token_shape == (50, 50) and vae.vocab_size == 512
    assert [len(d.attn) for d in vae.encoder.down] == [0, 0, 2] and [len(u.attn) for u in vae.decoder.up] == [0, 0, 2]
    assert [len(u.block) for u in vae.decoder.up] == [2, 2, 2]
    assert vae.vqvae.quant_conv.kernel_size == (1, 1) and vae.vqvae.post_quant_conv.kernel_size == (1, 1)
