"""Camera tokenizers: codes round-trip, the temporal VQ is causal, VQ-VAE-2's bottom codes depend on its top
codes, each model trains (seeded) with falling reconstruction loss, and the engine trains the VQ-GAN."""

from __future__ import annotations

import pytest
import torch

from drivewm.config import merge_into
from drivewm.errors import DrivewmError
from drivewm.registry import build_model, config_class

H, W = 16, 32
_CNN = dict(channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, attention=False)
_GAN = dict(disc_channels=4, disc_layers=2, disc_start=100)  # tests that need the GAN on say so
CONFIGS = {
    "camera_vqgan": dict(image_size=[H, W], cnn=_CNN, z_channels=8, embed_dim=4, quantizer=dict(codebook_size=32), gan=_GAN),
    "camera_temporal_vq": dict(image_size=[H, W], cnn=_CNN, z_channels=8, embed_dim=4, heads=2,
                               quantizer=dict(codebook_size=32), gan=_GAN),
    "camera_vqvae2": dict(image_size=[H, W], bottom=_CNN, top=dict(_CNN, channel_mult=[1, 1]), hidden_channels=8,
                          embed_dim=4, top_quantizer=dict(codebook_size=16), bottom_quantizer=dict(codebook_size=32)),
    "camera_kl_autoencoder": dict(image_size=[H, W], cnn=_CNN, z_channels=4, embed_dim=4, gan=_GAN),
}


def build(name: str, **over) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(merge_into(config_class(name)(), [("test", CONFIGS[name]), ("over", over)]))


def clips(batch: int = 2, frames: int = 3, seed: int = 0) -> torch.Tensor:
    """uint8 [B, T, H, W, 3]: sky gradient over a grey road, a coloured box moving right frame by frame."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(batch, frames, H, W, 3)
    rows = torch.linspace(0, 1, H // 2)[:, None, None]
    img[:, :, : H // 2] = torch.tensor([90.0, 140.0, 220.0]) * (1 - 0.4 * rows)
    img[:, :, H // 2 :] = 110.0
    for b in range(batch):
        colour = torch.rand(3, generator=g) * 255
        x0, y0 = int(torch.randint(0, W // 2, (1,), generator=g)), int(torch.randint(H // 4, H // 2, (1,), generator=g))
        for t in range(frames):
            img[b, t, y0 : y0 + 5, x0 + 2 * t : x0 + 2 * t + 6] = colour
    return img.round().to(torch.uint8)


@pytest.mark.parametrize("name,quantizer", [("camera_vqgan", "vq"), ("camera_vqgan", "fsq"), ("camera_temporal_vq", "vq")])
def test_decode_of_indices_equals_decoding_the_quantized_latents(name, quantizer):
    model = build(name, quantizer=dict(kind=quantizer, fsq_levels=[5, 4, 4])).eval()
    images = clips()
    with torch.no_grad():
        q = model.quantize(model.encode_latent(model.batch_frames({"camera": images})))
        assert torch.equal(model.encode(images), q.indices)
        torch.testing.assert_close(model.indices_to_codes(q.indices), q.quantized, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.decode(q.indices), model.decode_codes(q.quantized), rtol=0, atol=1e-5)
    assert q.indices.shape == (2, 3, H // 4, W // 4) and model.decode(q.indices).shape == (2, 3, 3, H, W)
    assert model.reconstruct(images).dtype == torch.uint8 and model.reconstruct(images).shape == images.shape


def test_temporal_vq_is_causal_in_time():
    model = build("camera_temporal_vq").eval()
    images = clips(frames=4)
    changed = images.clone()
    changed[:, 3] = 255 - changed[:, 3]  # the last frame only
    with torch.no_grad():
        a, b = model.encode(images), model.encode(changed)
        assert torch.equal(a[:, :3], b[:, :3])
        assert not torch.equal(a[:, 3], b[:, 3])
        # Decoding is causal too: a later frame's codes never change an earlier frame's pixels.
        torch.testing.assert_close(model.decode(a)[:, :3], model.decode(b)[:, :3], rtol=0, atol=1e-5)
        # Unlike the per-frame VQ-GAN, an earlier frame does change a later frame's codes.
        first = images.clone()
        first[:, 0] = 255 - first[:, 0]
        assert not torch.equal(model.encode(first)[:, 1:], a[:, 1:])


def test_temporal_vq_needs_clips():
    model = build("camera_temporal_vq").eval()
    with pytest.raises(DrivewmError, match="clips"):
        model.encode(clips()[:, 0])


def test_vqvae2_bottom_codes_are_conditioned_on_the_top_codes():
    model = build("camera_vqvae2").eval()
    images = clips()
    top, bottom = model.encode(images)
    assert top.shape == (2, 3, H // 8, W // 8) and bottom.shape == (2, 3, H // 4, W // 4)
    assert torch.equal(model.bottom_indices(images, top), bottom)
    other_top = (top + 1) % model.quantize_t.codebook_size
    assert not torch.equal(model.bottom_indices(images, other_top), bottom)
    with torch.no_grad():
        qt, qb = model.quantize_t.indices_to_codes(top), model.quantize_b.indices_to_codes(bottom)
        torch.testing.assert_close(model.decode(top, bottom), model.decode_codes(qt, qb), rtol=0, atol=0)
        # Changing the top codes alone changes the picture: the decoder reads both levels.
        assert not torch.allclose(model.decode(other_top, bottom), model.decode(top, bottom))


def test_kl_autoencoder_encodes_posterior_means_and_decodes_them():
    model = build("camera_kl_autoencoder").eval()
    images = clips()
    z = model.encode(images)
    assert z.shape == (2, 3, 4, H // 4, W // 4)
    with torch.no_grad():
        post = model.encode_distribution(model.batch_frames({"camera": images}).flatten(0, 1))
        torch.testing.assert_close(z.flatten(0, 1), post.mean)
        assert model.decode(z).shape == (2, 3, 3, H, W)


def test_wrong_camera_input_is_a_one_line_error():
    model = build("camera_vqgan")
    with pytest.raises(DrivewmError, match=r"\[\.\.\., 16, 32, 3\]"):
        model.loss({"camera": torch.zeros(2, 3, 8, 32, 3, dtype=torch.uint8)})
    with pytest.raises(DrivewmError, match="batch\\['camera'\\]"):
        model.loss({"occ": torch.zeros(1)})
    with pytest.raises(DrivewmError, match="divisible"):
        build("camera_vqgan", image_size=[18, 32])


RECONSTRUCTION_LOG = {"camera_vqgan": "rec_l1", "camera_temporal_vq": "rec_l1", "camera_vqvae2": "mse", "camera_kl_autoencoder": "rec_l1"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_tokenizer_trains_and_its_reconstruction_loss_falls(name):
    model = build(name).train()
    batch = {"camera": clips(batch=2, frames=2)}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    history = []
    for step in range(30):
        out = model.loss(batch)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if hasattr(model, "on_step_end"):
            model.on_step_end(step, 30)
        history.append(float(out[RECONSTRUCTION_LOG[name]]))
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert last < 0.6 * first, (name, history)


def test_weight_ema_averages_the_autoencoder_weights_and_hands_them_over_at_the_last_step():
    model = build("camera_vqgan", weight_ema=0.2, gan=dict(_GAN, disc_start=0)).train()
    params = model.averaged_parameters()
    disc = list(model.adversary.parameters())
    assert len(params) + len(disc) == len(list(model.parameters())) and not {id(p) for p in params} & {id(p) for p in disc}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = [p.detach().clone() for p in params]
    total = 4
    for step in range(total):
        model.loss({"camera": clips(batch=2, frames=1, seed=step)})["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        n = step + 1
        decay = min(0.2, (1 + n) / (10 + n))  # LitEma's warm-up: 0.18 at n = 1, then the 0.2 cap
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, params)]
        trained, disc_before = [p.detach().clone() for p in params], [p.detach().clone() for p in disc]
        model.on_step_end(step, total)
        for e, a in zip(expected, model.weight_average.averages()):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-7)
        if step < total - 1:  # training never sees the average
            assert all(torch.equal(p, t) for p, t in zip(params, trained))
    # The last step hands the average to the autoencoder; the discriminator keeps its own weights.
    assert any(not torch.equal(p, t) for p, t in zip(params, trained))
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(p, d) for p, d in zip(disc, disc_before))


def test_weight_ema_covers_the_temporal_blocks_and_is_absent_when_off():
    temporal = build("camera_temporal_vq", weight_ema=0.99)
    names = [n for n, _ in temporal.named_parameters() if not n.startswith("adversary.")]
    assert len(temporal.weight_average.averages()) == len(names) and any(n.startswith("encoder_blocks.") for n in names)
    assert not any(k.startswith("weight_average") for k in build("camera_vqgan").state_dict())
    with pytest.raises(DrivewmError, match="weight_ema"):
        build("camera_vqgan", weight_ema=1.0)


@pytest.mark.parametrize("name", ["camera_vqgan", "camera_kl_autoencoder"])
def test_the_discriminator_learns_to_tell_frames_from_reconstructions(name):
    model = build(name, gan=dict(_GAN, disc_start=0)).train()
    batch = {"camera": clips(batch=4, frames=1)}
    opt = torch.optim.Adam(model.adversary.parameters(), lr=2e-3)  # the autoencoder stays as initialised
    torch.manual_seed(0)
    gaps = []
    for _ in range(15):
        out = model.loss(batch)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        gaps.append(float(out["logits_real"] - out["logits_fake"]))
    assert gaps[-1] > 0.5 and gaps[-1] > gaps[0] + 0.5, gaps
    assert float(out["d_weight"]) > 0 and float(out["disc_factor"]) == 1.0


@pytest.mark.parametrize("name", ["camera_vqgan", "camera_kl_autoencoder"])
def test_before_disc_start_the_gradients_are_taming_s_with_the_adversary_weighted_by_zero(name):
    """The warm-up skips the discriminator; taming computes both players and multiplies them by 0."""
    import copy

    from drivewm.tokenizers.gan import adaptive_weight

    model = build(name).train()  # disc_start 100
    reference = copy.deepcopy(model)
    batch = {"camera": clips()}
    torch.manual_seed(1)
    out = model.loss(batch)
    out["loss"].backward()
    assert float(out["disc_factor"]) == 0.0 and float(out["d_weight"]) == 0.0

    torch.manual_seed(1)
    x = reference.batch_frames(batch).flatten(0, 1)
    if name == "camera_vqgan":
        xrec, q = reference(x)
        extra = reference.cfg.codebook_weight * q.loss
        nll = (x - xrec).abs().mean()
    else:
        post = reference.encode_distribution(x)
        xrec = reference.decode_latents(post.sample() if reference.cfg.sample_posterior else post.mode())
        nll_full = (x - xrec).abs() / torch.exp(reference.logvar) + reference.logvar
        nll = nll_full.sum() / nll_full.shape[0]
        extra = reference.cfg.kl_weight * post.kl().sum() / x.shape[0]
    g_loss = reference.adversary.generator_loss(xrec)
    d_weight = adaptive_weight(nll, g_loss, reference.last_layer(), reference.adversary.cfg.disc_weight)
    d_raw = reference.adversary.discriminator_loss(x, xrec)[0]
    (nll + d_weight * 0.0 * g_loss + extra + 0.0 * d_raw).backward()
    # Every parameter has a gradient (zeros for the discriminator), so the optimizer steps it as taming's does.
    for (n, p), (_, p_ref) in zip(model.named_parameters(), reference.named_parameters()):
        assert p.grad is not None and p_ref.grad is not None, n
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-5, atol=1e-7, msg=n)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_engine_trains_the_vqgan_and_advances_its_gan_schedule(tmp_path):
    from torch.utils.data import Dataset

    from drivewm.train.config import TrainConfig
    from drivewm.train.engine import Trainer

    class Frames(Dataset):
        def __init__(self):
            self.data = clips(batch=8, frames=1)

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return {"camera": self.data[i]}

    model = build("camera_vqgan", gan=dict(_GAN, disc_start=3))
    cfg = TrainConfig(steps=5, batch_size=4, lr=2e-3, warmup_steps=0, log_every=1, ckpt_every=5, progress=False, device="cpu")
    result = Trainer(model, Frames(), cfg, tmp_path / "run").fit()
    assert result.steps == 5 and int(model.global_step) == 5
    import json

    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    factors = [rec["disc_factor"] for rec in logs if "disc_factor" in rec]
    assert factors == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert all(rec["d_weight"] > 0 for rec in logs if rec["disc_factor"] == 1.0)


def test_perceptual_term_uses_the_user_feature_network_and_is_not_part_of_the_weights(tmp_path):
    torch.manual_seed(0)
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU()))
    path = tmp_path / "features.pt"
    net.save(str(path))
    model = build("camera_vqgan", perceptual_network=str(path), perceptual_weight=0.5)
    keys = set(model.state_dict())
    out = model.loss({"camera": clips()})
    assert float(out["p_loss"]) == 0.0  # not attached until the files are loaded
    model.load_external_files()
    out = model.loss({"camera": clips()})
    assert float(out["p_loss"]) > 0
    torch.testing.assert_close(out["nll_loss"], out["rec_l1"] + 0.5 * out["p_loss"])
    assert set(model.state_dict()) == keys
    assert all(not p.requires_grad for p in model.perceptual.network.parameters())


def test_camera_presets_are_the_issue_sizes():
    from drivewm.config import preset_path
    from drivewm.train.config import load_run_config

    root = preset_path("tokenizer")
    paths = sorted(root.glob("camera_*.yaml"))
    assert {p.stem for p in paths} >= {"camera_vqgan_tiny", "camera_temporal_vq_tiny", "camera_vqvae2_tiny", "camera_kl_tiny"}
    for path in paths:
        cfg = load_run_config(path).model
        if hasattr(cfg, "quantizer"):
            assert 1024 <= cfg.quantizer.codebook_size <= 16384, path
        if path.stem.endswith("_tiny"):
            model = build_model(cfg)
            assert model.image_hw == (64, 128), path
            down = cfg.bottom.downsample if cfg.name == "camera_vqvae2" else cfg.cnn.downsample
            assert down == 4, path
