"""vjepa_camera: the V-JEPA loss and token layout pinned, the EMA target, the pooled extractor, training on
moving clips, and the exported extractor file (library and `drivewm export extractor`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from drivewm.cli import app
from drivewm.jepa.encoders import gather_tokens
from drivewm.jepa.masks import step_generator, vjepa_short_long
from drivewm.jepa.video_encoder import ClipFeatures, VideoEncoderConfig, VideoJepa, clip_tokens
from drivewm.metrics.video import ExportedFeatures, export_extractor, load_protocol_extractor

TINY = dict(image_size=[16, 32], frames=4, patch=4, dim=16, depth=1, heads=2, predictor_width=16, predictor_depth=1,
            predictor_heads=2)


def tiny(**kw) -> VideoJepa:
    torch.manual_seed(0)
    return VideoJepa(VideoEncoderConfig(**{**TINY, **kw}))


def moving_clips(n: int, seed: int, t: int = 4) -> torch.Tensor:
    """uint8 windows [n, t, 16, 32, 3]: a bright square moving across a gradient at a per-clip start and speed."""
    g = torch.Generator().manual_seed(seed)
    clips = torch.linspace(20, 120, 32).expand(n, t, 16, 32).clone()
    start, speed = torch.randint(0, 12, (n,), generator=g), torch.randint(1, 4, (n,), generator=g)
    rows = torch.randint(0, 10, (n,), generator=g)
    for i in range(n):
        for k in range(t):
            c = int(start[i] + speed[i] * k)
            clips[i, k, rows[i] : rows[i] + 6, c : c + 6] = 250.0
    return clips.round().to(torch.uint8)[..., None].expand(-1, -1, -1, -1, 3).contiguous()


def test_clip_tokens_are_the_patch_encoders_tubelet_tokens():
    m = tiny()
    cam = moving_clips(2, 0)
    ours = clip_tokens(m.encoder, m.clips(cam), m.pos)  # protocol input in [-1, 1], [B, T, 3, H, W]
    torch.testing.assert_close(ours, m.encoder.video_tokens(cam))  # the camera stem's own uint8 path


def test_loss_is_vjepa_l1_on_layer_normed_ema_targets_over_both_mask_groups():
    m = tiny()
    with torch.no_grad():
        for p in m.encoder.parameters():  # online and target differ, so the test sees which one makes the targets
            p.add_(0.01 * torch.randn_like(p))
    cam = moving_clips(3, 1)
    got = m.loss({"camera": cam})["loss"]
    x = m.clips(cam)
    h = m.target_encoder.run(clip_tokens(m.target_encoder, x, m.pos))
    mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    target = (h - mu) / torch.sqrt(var + 1e-5)
    losses = []
    for mask in vjepa_short_long(3, (4, 8), 2, step_generator(0, 0)):
        ctx = m.encoder.run(gather_tokens(clip_tokens(m.encoder, x, m.pos), mask.context), mask.context)
        pred = m.predictor(ctx, mask.context, mask.targets, 2)[:, 0]
        losses.append((pred - gather_tokens(target, mask.targets[:, 0])).abs().mean())
    torch.testing.assert_close(got, (losses[0] + losses[1]) / 2)


def test_ema_target_follows_the_schedule_and_the_extractor_is_the_target():
    m = tiny(ema_start=0.99, ema_end=1.0)
    x = m.clips(moving_clips(2, 2))
    before_features = m.extractor()(x)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    torch.testing.assert_close(m.extractor()(x), before_features)  # the online encoder does not reach the extractor
    before = [p.clone() for p in m.target_encoder.parameters()]
    m.on_step_end(5, 10)  # momentum 0.99 + 0.01 * 0.5 = 0.995
    for b, t, o in zip(before, m.target_encoder.parameters(), m.encoder.parameters()):
        torch.testing.assert_close(t, 0.995 * b + 0.005 * o)
    assert m.counter.value == 6 and not any(p.requires_grad for p in m.target_encoder.parameters())


def test_tubelet_pooling_keeps_time_order_and_averages_to_the_mean_pooling():
    m = tiny()
    x = m.clips(moving_clips(3, 3))
    per_tubelet = ClipFeatures(m.target_encoder, 4, "tubelet")(x)  # [3, 2 * 16]
    assert per_tubelet.shape == (3, 32)
    torch.testing.assert_close(per_tubelet.view(3, 2, 16).mean(1), ClipFeatures(m.target_encoder, 4, "mean")(x))
    reversed_clips = ClipFeatures(m.target_encoder, 4, "tubelet")(x.flip(1))
    assert (reversed_clips - per_tubelet).abs().max() > 1e-3  # the order of time changes the feature


def test_training_loss_falls_on_moving_clips():
    m = tiny()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    clips = moving_clips(16, 4)
    losses = []
    for step in range(30):
        out = m.loss({"camera": clips[(step * 8) % 16 : (step * 8) % 16 + 8]})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.on_step_end(step, 30)
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_exported_extractor_loads_as_a_protocol_file_and_gives_the_modules_features(tmp_path, suffix):
    m = tiny()
    protocol = m.cfg.protocol(16)
    assert protocol.name == "fd_vjepacam_4f_16x32_bilinear_r-1to1_n16"
    module = m.extractor()
    path = tmp_path / f"vjepacam{suffix}"
    export_extractor(module, protocol.preprocess(moving_clips(2, 5).permute(0, 1, 4, 2, 3)), path)
    loaded = load_protocol_extractor(path, protocol)
    assert isinstance(loaded, ExportedFeatures) and loaded.name == "vjepacam"
    x = protocol.preprocess(moving_clips(3, 6).permute(0, 1, 4, 2, 3))  # another batch size than the example
    torch.testing.assert_close(loaded(x), module(x).double(), rtol=1e-5, atol=1e-6)


def test_cli_trains_and_exports_an_extractor(tmp_path):
    runner = CliRunner()
    store, run, out = tmp_path / "cams", tmp_path / "run", tmp_path / "vjepacam.pt"  # .pt2: the test above
    res = runner.invoke(app, ["data", "generate", "-o", str(store), "--preset", "tiny_camera", "-n", "2", "-t", "6"])
    assert res.exit_code == 0, res.output
    overrides = [f"model.{k}={v}".replace(" ", "") for k, v in TINY.items()]
    res = runner.invoke(app, ["train", "jepa", "--config", "jepa/video_encoder_tiny.yaml", f"data={store}", f"run_dir={run}",
                              *overrides, "data.past=4", "data.val_fraction=0.5", "train.steps=2", "train.batch_size=2",
                              "train.warmup_steps=1", "train.progress=false"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", "extractor", str(run), str(out), "--samples", "256"])
    assert res.exit_code == 0, res.output
    assert "fd_vjepacam_4f_16x32_bilinear_r-1to1_n256" in res.output and "32 features" in res.output
    x = torch.rand(3, 4, 3, 16, 32) * 2 - 1
    assert ExportedFeatures(out)(x).shape == (3, 32)
    res = runner.invoke(app, ["export", "extractor", str(tmp_path / "missing"), str(out)])
    assert res.exit_code == 2 and "missing" in res.output
