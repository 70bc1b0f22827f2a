"""Token world models on camera tokens (GAIA-1 / DrivingGPT's GPT and MaskGIT on VQ-GAN and temporal-VQ codes):
the modality follows the tokenizer, windows encode as one clip (causal for the temporal VQ), forecasts are uint8
frames, the token cache serves the tokens `loss` would compute, a camera tokenizer run nests like an occupancy
one, and bad input fails with one clear error each."""

from __future__ import annotations

import pytest
import torch

from drivewm.baselines.camera import CopyLastCamera
from drivewm.config import merge_into, to_yaml
from drivewm.data.config import DataConfig
from drivewm.data.windows import build_dataset
from drivewm.dynamics.forecast import TokenizerBound
from drivewm.dynamics.camera_forecast import decode_after
from drivewm.dynamics.token_cache import tokenized
from drivewm.errors import DrivewmError
from drivewm.forecaster import split_window
from drivewm.hub import config_to_dict
from drivewm.metrics.image import ImageQualityMetric
from drivewm.registry import build_model, config_class
from drivewm.train.checkpoint import build_model_from_sources, derive_token_fields, write_checkpoint
from drivewm.train.config import RunConfig

PAST, FUTURE = 3, 2
IMAGE = [16, 32]  # the micro sim preset's camera
KEYS = ["camera", "action", "ego_pose"]
_CNN = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)


def _tokenizer_cfg(name: str):
    fields = dict(image_size=IMAGE, cnn=_CNN, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=32),
                  gan=dict(enabled=False))
    if name == "camera_temporal_vq":
        fields["heads"] = 2
    return merge_into(config_class(name)(), [("test", fields)])


def _world_cfg(kind: str, tokenizer_cfg, **over):
    fields = dict(tokenizer=config_to_dict(tokenizer_cfg), dim=16, depth=1, heads=2, max_frames=PAST + FUTURE,
                  sampling=dict(temperature=1.0, top_k=4))
    if kind == "maskgit_world":
        fields.update(dim_mult=[1, 2], steps=2)
    fields.update(over)
    cfg = merge_into(config_class(kind)(), [("test", fields)])
    derive_token_fields(cfg)
    return cfg


def _model(kind: str, tokenizer: str, **over):
    torch.manual_seed(0)
    return build_model(_world_cfg(kind, _tokenizer_cfg(tokenizer), **over)).eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from drivewm.sim.generate import generate_store

    root = tmp_path_factory.mktemp("camera_world")
    generate_store(root / "data", preset="micro", episodes=2, frames=10, seed=0)  # camera 16 x 32
    return root


@pytest.fixture(scope="module")
def batch(store):
    ds = build_dataset(DataConfig(path=str(store / "data"), past=PAST, future=FUTURE, keys=KEYS, val_fraction=0.0),
                       "train")
    return {k: torch.stack([ds[i][k] for i in range(0, len(ds), 2)]) for k in ds[0]}


@pytest.mark.parametrize("kind", ["gpt_world", "maskgit_world"])
@pytest.mark.parametrize("tokenizer", ["camera_vqgan", "camera_temporal_vq"])
def test_forecast_is_uint8_frames_through_the_tokenizer_and_deterministic_for_a_seed(batch, kind, tokenizer):
    model = _model(kind, tokenizer)
    assert model.modality == "camera" and model.token_shape == (4, 8)
    context, future = split_window(batch, PAST)
    out = model.forecast(context, FUTURE, generator=torch.Generator().manual_seed(3))
    assert out.dtype == torch.uint8 and out.shape == (batch["camera"].shape[0], FUTURE, *IMAGE, 3)
    again = model.forecast(context, FUTURE, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    # The forecast is the decoding of the rolled-out tokens after the context's: redo it by hand.
    tokens = model.encode(context["camera"])
    from drivewm.conditions import ego_conditions

    rolled = model.rollout(tokens, ego_conditions(context, model.cfg.condition), FUTURE,
                           generator=torch.Generator().manual_seed(3))
    assert torch.equal(decode_after(model, tokens, rolled), out)
    # decode(encode(x)) is the tokenizer's own reconstruction (the bound's forecast), clip at once.
    bound = TokenizerBound(model).forecast(future, FUTURE)
    assert torch.equal(bound, model.tokenizer.reconstruct(future["camera"]))
    assert torch.equal(model.decode(model.encode(future["camera"])), bound)


def test_temporal_vq_tokens_depend_only_on_earlier_frames_of_the_window(batch):
    model = _model("gpt_world", "camera_temporal_vq")
    cam = batch["camera"]
    tokens = model.encode_batch(batch)
    changed = cam.clone()
    changed[:, PAST:] = 255 - changed[:, PAST:]  # every later frame changed
    later = model.encode(changed)
    assert torch.equal(later[:, :PAST], tokens[:, :PAST])  # earlier frames' codes never move
    assert not torch.equal(later[:, PAST:], tokens[:, PAST:])
    # A context encoded alone gets the same codes as inside the whole window: training and forecasting agree.
    assert torch.equal(model.encode_batch(batch, PAST), tokens[:, :PAST])
    # The decoder mixes time too, so a forecast frame depends on the context it follows.
    future = tokens[:, PAST:]
    assert not torch.equal(decode_after(model, tokens[:, :PAST], future), decode_after(model, later[:, :PAST] * 0, future))


@pytest.mark.parametrize("tokenizer", ["camera_vqgan", "camera_temporal_vq"])
def test_token_cache_serves_the_tokens_loss_would_compute(store, tokenizer):
    model = _model("gpt_world", tokenizer)
    ds = build_dataset(DataConfig(path=str(store / "data"), past=PAST, future=FUTURE, keys=KEYS, stride=2,
                                  val_fraction=0.0), "train")
    cached = tokenized(model, ds, progress=False)
    assert len(cached) == len(ds) and "camera" not in cached[0]
    for i in range(len(ds)):
        window = {k: v[None] for k, v in ds[i].items()}
        assert torch.equal(cached[i]["tokens"][None], model.encode_batch(window))
        assert torch.equal(cached[i]["action"], ds[i]["action"])
    item = {k: v[None] for k, v in cached[1].items()}
    torch.manual_seed(0)
    from_cache = model.loss(item)["loss"]
    torch.manual_seed(0)
    assert torch.equal(model.loss({k: v[None] for k, v in ds[1].items()})["loss"], from_cache)


def test_a_camera_tokenizer_run_nests_into_a_new_world_model_run(tmp_path, batch):
    tok_cfg = RunConfig(model=_tokenizer_cfg("camera_temporal_vq"))
    torch.manual_seed(1)
    tok = build_model(tok_cfg.model)
    write_checkpoint(tmp_path / "tok", config_yaml=to_yaml(tok_cfg), model_state=tok.state_dict(), optim_state=None,
                     state={"step": 0})
    cfg = merge_into(config_class("gpt_world")(), [("test", dict(tokenizer_run=str(tmp_path / "tok"), dim=16, depth=1,
                                                                  heads=2, max_frames=PAST + FUTURE, actions="drivinggpt"))])
    model = build_model_from_sources(cfg)
    assert cfg.tokenizer["name"] == "camera_temporal_vq" and cfg.vocab_size == 32 and cfg.token_shape == [4, 8]
    assert model.modality == "camera"
    for key, value in tok.state_dict().items():
        assert torch.equal(model.tokenizer.state_dict()[key], value), key
    # DrivingGPT's action tokens: the model plans, and imagines the camera frames its own actions lead to.
    context, _ = split_window(batch, PAST)
    frames, waypoints = model.eval().forecast_plan(context, FUTURE, generator=torch.Generator().manual_seed(0))
    assert frames.dtype == torch.uint8 and frames.shape == (batch["camera"].shape[0], FUTURE, *IMAGE, 3)
    assert waypoints.shape == (batch["camera"].shape[0], FUTURE, 2)


@pytest.mark.parametrize("name", ["camera_vqvae2", "camera_kl_autoencoder"])
def test_tokenizers_without_one_discrete_grid_per_frame_are_refused(name):
    fields = (dict(image_size=IMAGE, bottom=_CNN, top=dict(_CNN, channel_mult=[1, 2]), hidden_channels=8, embed_dim=4)
              if name == "camera_vqvae2" else dict(image_size=IMAGE, cnn=_CNN, z_channels=4, embed_dim=2))
    tok_cfg = merge_into(config_class(name)(), [("test", fields)])
    cfg = merge_into(config_class("gpt_world")(), [("test", dict(tokenizer=config_to_dict(tok_cfg), dim=16, depth=1, heads=2))])
    with pytest.raises(DrivewmError, match="one grid of discrete tokens per frame|single grid of discrete tokens"):
        derive_token_fields(cfg)
    cfg.vocab_size, cfg.token_shape = 32, [4, 8]
    with pytest.raises(DrivewmError, match="camera_vqgan or camera_temporal_vq"):
        build_model(cfg)


def test_bad_input_fails_with_one_clear_error(batch):
    model = _model("gpt_world", "camera_vqgan")
    context, _ = split_window(batch, PAST)
    small = {**context, "camera": context["camera"][:, :, :8]}
    with pytest.raises(DrivewmError, match=r"\[\.\.\., 16, 32, 3\]"):
        model.forecast(small, 1)
    with pytest.raises(DrivewmError, match=r"\[\.\.\., 16, 32, 3\]"):
        model.forecast({**context, "camera": context["camera"][..., :1]}, 1)  # one channel
    with pytest.raises(DrivewmError, match="uint8"):
        model.forecast({**context, "camera": context["camera"].float()}, 1)
    with pytest.raises(DrivewmError, match="at least 1"):
        model.forecast({**context, "camera": context["camera"][:, :0]}, 1)
    with pytest.raises(DrivewmError, match=r"batch\['action'\]: expected 2 values"):
        model.forecast({**context, "action": torch.cat([context["action"]] * 2, -1)}, 1)
    with pytest.raises(DrivewmError, match="reads 'camera' frames"):  # occupancy data for a camera model
        model.forecast({k: v for k, v in context.items() if k != "camera"} | {"occ": torch.zeros(2, PAST, 4, 4, 2)}, 1)
    occ_model = _occ_world()
    with pytest.raises(DrivewmError, match="reads 'occ' frames"):  # camera data for an occupancy model
        occ_model.forecast(context, 1)


def _occ_world():
    tok = merge_into(config_class("occ_vqvae")(), [("test", dict(grid="micro", cnn=_CNN, quantizer=dict(codebook_size=16)))])
    cfg = merge_into(config_class("gpt_world")(), [("test", dict(tokenizer=config_to_dict(tok), dim=16, depth=1, heads=2))])
    derive_token_fields(cfg)
    return build_model(cfg).eval()


@pytest.mark.parametrize("preset", ["world/gpt_camera_tiny.yaml", "world/maskgit_camera_tiny.yaml"])
def test_camera_world_presets_build_on_the_8x_tokenizer_presets(preset):
    from drivewm.train.config import load_run_config

    cfg = load_run_config(preset)
    assert cfg.data.path == "data/camera_tiny" and cfg.data.keys[0] == "camera"
    assert cfg.model.max_frames >= cfg.data.past + cfg.data.future
    for tokenizer in ("tokenizer/camera_vqgan_tiny_f8.yaml", "tokenizer/camera_temporal_vq_tiny_f8.yaml"):
        cfg.model.tokenizer, cfg.model.vocab_size, cfg.model.token_shape = None, None, None
        cfg.model.tokenizer = config_to_dict(load_run_config(tokenizer).model)
        derive_token_fields(cfg.model)
        model = build_model(cfg.model)
        assert model.modality == "camera" and model.token_shape == (8, 16) and model.vocab_size == 1024
        assert model.tokenizer.image_hw == (64, 128)


def _run(model, store, run_dir, keys=KEYS, past=1, future=0, steps=2):
    from drivewm.train.config import TrainConfig

    return RunConfig(model=model, data=DataConfig(path=str(store / "data"), past=past, future=future, keys=list(keys),
                                                  val_fraction=0.0),
                     train=TrainConfig(steps=steps, batch_size=2, lr=1e-3, warmup_steps=0, log_every=1, ckpt_every=steps,
                                       progress=False, device="cpu"),
                     run_dir=str(run_dir))


def test_train_world_on_a_camera_tokenizer_run_end_to_end_and_refuse_another_modality(store, tmp_path):
    """`drivewm train world` on camera data: the tokenizer run nests, windows are tokenized once, the run reloads
    as a camera forecaster; an occupancy tokenizer's world model on camera-only data keys is refused first."""
    from drivewm.train.checkpoint import load_run
    from drivewm.train.run import run_training

    run_training(_run(_tokenizer_cfg("camera_temporal_vq"), store, tmp_path / "tok", ["camera"], past=2))
    world = merge_into(config_class("maskgit_world")(), [("test", dict(
        tokenizer_run=str(tmp_path / "tok"), dim=16, depth=1, heads=2, dim_mult=[1, 2], steps=2,
        max_frames=PAST + FUTURE))])
    run_training(_run(world, store, tmp_path / "wm", past=PAST, future=FUTURE))
    _, model = load_run(tmp_path / "wm")
    assert model.modality == "camera" and model.cfg.tokenizer["name"] == "camera_temporal_vq"
    _, tokenizer = load_run(tmp_path / "tok")  # its weights are the world model's
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(model.tokenizer.state_dict()[key], value), key

    occ_tok = RunConfig(model=merge_into(config_class("occ_vqvae")(), [("test", dict(
        grid="micro", cnn=_CNN, quantizer=dict(codebook_size=16)))]))
    write_checkpoint(tmp_path / "occ_tok", config_yaml=to_yaml(occ_tok), model_state=build_model(occ_tok.model).state_dict(),
                     optim_state=None, state={"step": 0})
    occ_world = merge_into(config_class("gpt_world")(), [("test", dict(tokenizer_run=str(tmp_path / "occ_tok"), dim=16,
                                                                       depth=1, heads=2, max_frames=PAST + FUTURE))])
    with pytest.raises(DrivewmError, match="reads 'occ' frames"):
        run_training(_run(occ_world, store, tmp_path / "occ_wm", past=PAST, future=FUTURE))
