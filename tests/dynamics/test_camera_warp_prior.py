"""The ego-warped prior on camera tokens (model.warp_prior with the per-frame VQ-GAN): each frame's prior is the
homography-warped copy of its decoded frame, encoded again; GPT and MaskGIT train on it and forecast from the
context's calibration, deterministically for a seed; a missing calibration is one error naming the key; with the
option off the published camera presets behave as before."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from drivewm.baselines.camera import EgoWarpCamera
from drivewm.conditions import ego_conditions
from drivewm.config import merge_into
from drivewm.data.config import DataConfig
from drivewm.data.windows import build_dataset
from drivewm.dynamics.camera_forecast import decode_after
from drivewm.dynamics.token_cache import tokenized
from drivewm.errors import DrivewmError
from drivewm.forecaster import STATIC_KEYS, split_window
from drivewm.hub import config_to_dict
from drivewm.registry import build_model, config_class
from drivewm.train.checkpoint import derive_token_fields

torch.set_num_threads(1)

PAST, FUTURE = 3, 2
IMAGE = [16, 32]  # the micro sim preset's camera
KEYS = ["camera", "action", "ego_pose", *STATIC_KEYS]
_CNN = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)
KINDS = ["gpt_world", "maskgit_world"]


def _tokenizer(name: str = "camera_vqgan") -> dict:
    fields = dict(image_size=IMAGE, cnn=_CNN, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=32),
                  gan=dict(enabled=False))
    if name == "camera_temporal_vq":
        fields["heads"] = 2
    return config_to_dict(merge_into(config_class(name)(), [("test", fields)]))


def _cfg(kind: str, tokenizer: dict | None = None, **over):
    fields = dict(tokenizer=tokenizer or _tokenizer(), dim=16, depth=1, heads=2, max_frames=PAST + FUTURE,
                  warp_prior=True, prior_outside="border", sampling=dict(temperature=1.0, top_k=4))
    if kind == "maskgit_world":
        fields.update(dim_mult=[1, 2], steps=2, cond_drop_prob=0.0)
    fields.update(over)
    cfg = merge_into(config_class(kind)(), [("test", fields)])
    derive_token_fields(cfg)
    return cfg


def _model(kind: str, **over):
    torch.manual_seed(0)
    return build_model(_cfg(kind, **over)).eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two simulated micro episodes with the camera and its calibration (as the tiny_camera preset records it)."""
    from drivewm.data.store import write_episode
    from drivewm.sim import sim_preset, simulate_episode

    cfg = sim_preset("micro", camera_calibration=True, lidar=False, visibility=False)
    path = tmp_path_factory.mktemp("camera_warp") / "data"
    for seed in (0, 1):
        ep = simulate_episode(cfg, seed=seed, frames=8)
        write_episode(path, {k: ep[k] for k in KEYS}, grid=cfg.grid_spec, hz=cfg.hz)
    return path


def _windows(store, keys=KEYS):
    return build_dataset(DataConfig(path=str(store), past=PAST, future=FUTURE, keys=list(keys), stride=2,
                                    val_fraction=0.0), "train")


@pytest.fixture(scope="module")
def batch(store):
    ds = _windows(store)
    return {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}


def test_camera_prior_is_the_homography_warped_copy_of_the_decoded_frame(batch):
    """Frame 0 moved 1.5 m straight ahead on the flat road: its prior is the encoding of EgoWarpCamera's warp of
    frame 0 decoded; frame 1, the window's last (no motion after it), is its own re-encoding."""
    model = _model("gpt_world")
    b = batch["camera"].shape[0]
    tokens = model.encode(batch["camera"][:, :2])
    pose = torch.zeros(b, 2, 3)
    pose[:, 1, 0] = 1.5
    cond = ego_conditions({"action": torch.zeros(b, 2, 2), "ego_pose": pose}, "action_motion")
    calibration = {k: batch[k] for k in STATIC_KEYS}
    prior = model.make_prior(tokens, cond, calibration).ids

    decoded = model.decode(tokens)  # [B, 2, H, W, 3]
    warped = EgoWarpCamera().forecast({"camera": decoded[:, :1], "rel_pose": pose, **calibration}, 1)
    assert (warped != decoded[:, :1]).float().mean() > 0.05  # the road moved towards the camera
    expected = model.encode(warped)[:, 0]
    assert torch.equal(prior[:, 0], expected)
    assert not torch.equal(expected, tokens[:, 0])
    assert torch.equal(prior[:, 1], model.encode(decoded[:, 1:])[:, 0])
    # The calibration is the episode's: a camera mounted twice as high sees the same motion move the road less.
    higher = {**calibration, "camera_extrinsics": calibration["camera_extrinsics"].clone()}
    higher["camera_extrinsics"][:, 2, 3] *= 2
    assert not torch.equal(model.make_prior(tokens, cond, higher).ids[:, 0], prior[:, 0])


@pytest.mark.parametrize("kind", KINDS)
def test_models_train_a_step_on_the_prior_and_forecast_deterministically_from_the_context(batch, kind):
    model = _model(kind)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = model.loss(batch)  # raw frames and the windows' calibration: the prior is computed on the fly
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    prior_emb = model.prior_emb if kind == "gpt_world" else model.net.prior_emb
    assert prior_emb.weight.grad is not None and float(prior_emb.weight.grad.abs().sum()) > 0
    opt.step()
    model.eval()

    context, _ = split_window(batch, PAST)
    seen = []
    make_prior = model.make_prior

    def recording(tokens, cond, calibration=None):
        seen.append(calibration)
        return make_prior(tokens, cond, calibration)

    model.make_prior = recording
    out = model.forecast(context, FUTURE, generator=torch.Generator().manual_seed(3))
    assert out.dtype == torch.uint8 and out.shape == (batch["camera"].shape[0], FUTURE, *IMAGE, 3)
    assert len(seen) == FUTURE  # the context's prior, then the first generated frame's
    assert all(c[k] is context[k] for c in seen for k in STATIC_KEYS)
    assert torch.equal(model.forecast(context, FUTURE, generator=torch.Generator().manual_seed(3)), out)
    # The forecast is the rollout of the context's tokens with the context's calibration, decoded.
    tokens = model.encode(context["camera"])
    rolled = model.rollout(tokens, ego_conditions(context, "action_motion"), FUTURE,
                           generator=torch.Generator().manual_seed(3), calibration={k: context[k] for k in STATIC_KEYS})
    assert torch.equal(decode_after(model, tokens, rolled), out)


def test_token_cache_serves_the_camera_prior_loss_would_compute(store, batch):
    model = _model("maskgit_world")
    ds = _windows(store)
    cached = tokenized(model, ds, progress=False)
    assert "camera" not in cached[0] and all(k in cached[0] for k in STATIC_KEYS)
    for i in (0, len(ds) - 1):
        window = {k: v[None] for k, v in ds[i].items()}
        tokens = model.encode_batch(window)
        prior = model.make_prior(tokens, ego_conditions(window, "action_motion"),
                                 {k: window[k] for k in STATIC_KEYS}).ids
        assert torch.equal(cached[i]["tokens"], tokens[0])
        # Every frame's prior but the last (whose motion lies past the window) equals the on-the-fly one.
        assert torch.equal(cached[i]["prior"][:-1], prior[0, :-1])
    assert not torch.equal(cached[0]["prior"][:-1], cached[0]["tokens"][1:])  # a prior, not the next frame


def test_a_missing_calibration_is_one_error_naming_the_key(store, batch):
    model = _model("gpt_world")
    context, _ = split_window(batch, PAST)
    with pytest.raises(DrivewmError, match="'camera_extrinsics': the context has none"):
        model.forecast({k: v for k, v in context.items() if k != "camera_extrinsics"}, 1)
    with pytest.raises(DrivewmError, match="'camera_intrinsics': the batch has none .*data.keys"):
        model.loss({k: v for k, v in batch.items() if k != "camera_intrinsics"})
    with pytest.raises(DrivewmError, match="'camera_intrinsics': data.keys has none"):
        tokenized(model, _windows(store, KEYS[:3]), progress=False)
    tokens = model.encode(context["camera"])
    with pytest.raises(DrivewmError, match="'camera_intrinsics': the calibration given to make_prior / rollout"):
        model.rollout(tokens, ego_conditions(context, "action_motion"), 1)
    with pytest.raises(DrivewmError, match="temporal VQ .* use the per-frame VQ-GAN"):
        _model("gpt_world", tokenizer=_tokenizer("camera_temporal_vq"))
    with pytest.raises(DrivewmError, match="prior_outside=border"):
        _model("maskgit_world", prior_outside="free")


@pytest.mark.parametrize("kind", KINDS)
def test_without_the_option_a_camera_model_reads_no_calibration(batch, kind):
    """warp_prior off (the published presets): no prior parameters, and forecasts and losses do not move with the
    calibration keys, present, absent or wrong."""
    model = _model(kind, warp_prior=False, prior_outside="free")
    assert not any("prior" in name for name in model.state_dict())
    context, _ = split_window(batch, PAST)
    bare = {k: v for k, v in context.items() if k not in STATIC_KEYS}
    wrong = {**context, "camera_extrinsics": torch.zeros_like(context["camera_extrinsics"])}
    outs = [model.forecast(c, FUTURE, generator=torch.Generator().manual_seed(1)) for c in (context, bare, wrong)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    losses = []
    for b in (batch, {k: v for k, v in batch.items() if k not in STATIC_KEYS}):
        torch.manual_seed(2)
        losses.append(model.loss(b)["loss"])
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("name", ["gpt_camera_tiny", "maskgit_camera_tiny"])
def test_warp_presets_are_the_published_presets_with_the_prior_on(name):
    """The published presets keep warp_prior off and their data keys; the variants change only what the prior
    needs (and, for MaskGIT, the objective warp_prior trains with; for the GPT, the copy of the prior), and build
    on the 8x VQ-GAN preset."""
    from drivewm.train.config import load_run_config

    published, variant = (load_run_config(f"world/{n}.yaml") for n in (name, f"{name}_warp"))
    assert not published.model.warp_prior and published.data.keys == ["camera", "action", "ego_pose"]
    flat = {}
    for cfg in (published, variant):
        flat[cfg is variant] = {f"{section}.{k}": v for section in ("model", "data", "train")
                                for k, v in config_to_dict(getattr(cfg, section)).items()}
    changed = {k for k in flat[True] if flat[True][k] != flat[False][k]}
    allowed = {"model.warp_prior", "model.prior_outside", "data.keys", "train.steps"}
    if name.startswith("maskgit"):
        allowed |= {"model.objective", "model.cond_drop_prob"}
    else:
        allowed |= {"model.copy_prior"}
    assert {"model.warp_prior", "data.keys"} <= changed <= allowed
    assert variant.data.keys == published.data.keys + list(STATIC_KEYS)
    assert variant.run_dir == published.run_dir + "_warp"
    variant.model.tokenizer = config_to_dict(load_run_config("tokenizer/camera_vqgan_tiny_f8.yaml").model)
    derive_token_fields(variant.model)
    model = build_model(variant.model)
    assert model.modality == "camera" and model.cfg.warp_prior and model.token_shape == (8, 16)


def test_the_decoding_bench_runs_a_camera_warp_prior_model(batch):
    """bench_camera_decoding times `rollout` on context tokens: a warp-prior model reads the windows' calibration."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import bench_camera_decoding as bench
    finally:
        sys.path.pop(0)
    model = _model("gpt_world")
    windows = dict(batch)
    assert bench.frames_per_second(model, windows, PAST, 1, 6, 1) > 0  # more than the 4 windows: repeated
    with pytest.raises(DrivewmError, match="'camera_intrinsics': the bench's windows has none"):
        bench.frames_per_second(model, {k: v for k, v in batch.items() if k not in STATIC_KEYS}, PAST, 1, 1, 1)


def test_planning_refuses_a_camera_model_in_one_line():
    from drivewm.planning.config import PlanningError
    from drivewm.planning.learned import TokenPlanningModel

    with pytest.raises(PlanningError, match="reads occupancy observations; gpt_world forecasts 'camera' frames"):
        TokenPlanningModel(_model("gpt_world"))
