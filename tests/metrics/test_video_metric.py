"""FID / FVD under a named protocol: names, preprocessing, extractor files, torchmetrics and scipy
references, bootstrap intervals and the sample-count curve."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from drivewm.errors import DrivewmError
from drivewm.metrics import (
    FID_INCEPTION_299,
    FVD_I3D400_16F_224,
    FrechetProtocol,
    ProtocolFrechetDistance,
    frechet_bootstrap,
    frechet_sample_curve,
    load_protocol_extractor,
)


class TinyVideoNet(nn.Module):
    """A small random 3-D conv net taking [N, C, T, H, W] (the I3D layout)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(8, 12, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3, 4))


def save_script(module: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but is the files' format
        torch.jit.save(torch.jit.script(module), str(path))


def clips(n: int, seed: int, t: int = 5, h: int = 12, w: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, t, 3, h, w, generator=g)
    fake = (0.6 * real + 0.3 * torch.rand(n, t, 3, h, w, generator=g)).clamp(0, 1)
    return real, fake


def test_protocol_name_changes_with_every_setting():
    assert FVD_I3D400_16F_224.name == "fvd_i3d400_16f_224_bilinear_r-1to1_n2048"
    base = FrechetProtocol("fd", "vjepacam", size=(224, 224), frames=16, value_range=(-1.0, 1.0), samples=2048)
    assert base.name == "fd_vjepacam_16f_224_bilinear_r-1to1_n2048"
    changes = dict(extractor="randconv3d", size=(224, 256), frames=8, resize="bicubic", value_range=(0.0, 255.0), samples=1024)
    names = {base.name, FVD_I3D400_16F_224.name}  # the metric: fd vs fvd, the rest equal
    for key, value in changes.items():
        changed = dataclasses.replace(base, **{key: value})
        assert changed.name != base.name, key
        names.add(changed.name)
    assert len(names) == len(changes) + 2
    assert {f.name for f in dataclasses.fields(FrechetProtocol)} == {"metric", *changes}  # every field was varied
    fid = FrechetProtocol("fid", "inception", size=(299, 299), value_range=(0.0, 255.0), samples=50000)
    assert fid.name == "fid_inception_299_bilinear_r0to255_n50000"
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.frames = 8  # type: ignore[misc]
    with pytest.raises(ValueError, match="extractor tag"):
        FrechetProtocol("fvd", "i3d_400", size=(224, 224))


def test_fid_and_fvd_name_only_the_published_extractors_and_fd_every_other():
    fd = FrechetProtocol("fd", "vjepacam", size=(64, 128), frames=8, value_range=(-1.0, 1.0), samples=256)
    assert fd.name == "fd_vjepacam_8f_64x128_bilinear_r-1to1_n256"
    with pytest.raises(ValueError, match="fvd is measured with the i3d400 extractor only"):
        FrechetProtocol("fvd", "vjepacam", size=(64, 128), frames=8)
    with pytest.raises(ValueError, match="fid is measured with the inception extractor only"):
        FrechetProtocol("fid", "randconv2d", size=(64, 128))
    with pytest.raises(ValueError, match="the i3d400 extractor's distance is 'fvd'"):
        FrechetProtocol("fd", "i3d400", size=(224, 224), frames=16)
    with pytest.raises(ValueError, match="the inception extractor's distance is 'fid'"):
        FrechetProtocol("fd", "inception", size=(299, 299))
    assert FID_INCEPTION_299.name.startswith("fid_inception_299")


def test_preprocess_clip_resize_and_range():
    p = FrechetProtocol("fd", "x", size=(6, 10), frames=3, resize="bilinear", value_range=(-1.0, 1.0), samples=16)
    x = torch.rand(2, 5, 3, 12, 20)
    out = p.preprocess(x)
    want = torch.nn.functional.interpolate(x[:, :3].reshape(6, 3, 12, 20), size=(6, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, (want * 2 - 1).reshape(2, 3, 3, 6, 10))
    torch.testing.assert_close(p.preprocess((x * 255).round().to(torch.uint8)), p.preprocess((x * 255).round() / 255))
    with pytest.raises(ValueError, match="needs 3"):
        p.preprocess(x[:, :2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        p.preprocess(x * 255)


def test_missing_extractor_file_is_one_line_error(tmp_path):
    with pytest.raises(DrivewmError) as info:
        load_protocol_extractor(tmp_path / "i3d_torchscript.pt", FVD_I3D400_16F_224)
    message = str(info.value)
    assert "\n" not in message and "i3d_torchscript.pt" in message
    assert "StyleGAN-V / TATS I3D TorchScript" in message and FVD_I3D400_16F_224.name in message


def test_fvd_equals_torchmetrics_and_scipy_with_the_same_torchscript(tmp_path):
    path = tmp_path / "tiny3d.pt"
    save_script(TinyVideoNet(), path)
    protocol = FrechetProtocol("fd", "tiny3d", size=(8, 16), frames=4, resize="bilinear", value_range=(-1.0, 1.0), samples=48)
    extractor = load_protocol_extractor(path, protocol, layout="NCTHW")
    real, fake = clips(48, 0)
    ours = ProtocolFrechetDistance(protocol, extractor, resamples=20, batch_size=20)
    ours.update(real=real[:30])
    ours.update(real=real[30:], fake=fake)
    result = ours.compute()
    assert result["name"] == "fd_tiny3d_4f_8x16_bilinear_r-1to1_n48"
    assert result["value"] > 1e-4  # a real difference, not two zeros

    # torchmetrics' FID pipeline on the same module and the same protocol-preprocessed clips.
    module = extractor.net  # the same loaded TorchScript
    # normalize=True only picks a float dummy input: with a custom network the inputs pass unchanged.
    reference = FrechetInceptionDistance(feature=module, normalize=True, input_img_size=(3, 4, 8, 16))
    reference.update(protocol.preprocess(real).transpose(1, 2), real=True)
    reference.update(protocol.preprocess(fake).transpose(1, 2), real=False)
    assert result["value"] == pytest.approx(float(reference.compute()), rel=1e-6)

    # float64 scipy sqrtm reference on the same features.
    with torch.no_grad():
        fr = module(protocol.preprocess(real).transpose(1, 2)).double().numpy()
        ff = module(protocol.preprocess(fake).transpose(1, 2)).double().numpy()
    s1, s2 = np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = np.sum((fr.mean(0) - ff.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert result["value"] == pytest.approx(ref, rel=1e-6)

    # Every number comes with its interval and its sample-count curve.
    assert result["interval"]["low"] <= result["value"] <= result["interval"]["high"]
    assert [p["samples"] for p in result["curve"]] == [6, 12, 24, 48]
    assert result["curve"][-1]["value"] == pytest.approx(result["value"], rel=1e-9)


def test_sample_count_must_match_the_protocol(tmp_path):
    protocol = FrechetProtocol("fd", "tiny3d", size=(8, 16), frames=4, samples=48)
    path = tmp_path / "tiny3d.pt"
    save_script(TinyVideoNet(), path)
    metric = ProtocolFrechetDistance(protocol, load_protocol_extractor(path, protocol, layout="NCTHW"))
    real, fake = clips(40, 1)
    metric.update(real=real, fake=fake)
    with pytest.raises(DrivewmError, match="needs 48 real samples, got 40"):
        metric.compute()


def _gaussian_sets(n: int, seed: int, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n, d, generator=g, dtype=torch.float64)
    fake = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.3 + 0.5
    return real, fake


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_samples():
    widths = []
    for n in (200, 3200):
        real, fake = _gaussian_sets(n, seed=n)
        protocol = FrechetProtocol("fd", "gauss", size=(1, 1), samples=n)
        metric = ProtocolFrechetDistance(protocol, extractor=None, resamples=60, seed=3)  # type: ignore[arg-type]
        metric.update_features(real=real, fake=fake)
        r = metric.compute()
        assert r["interval"]["low"] < r["value"] < r["interval"]["high"]
        widths.append(r["interval"]["high"] - r["interval"]["low"])
        # The true distance: |mu|^2 = 6 * 0.25, trace term 6 * (1 + 1.69 - 2 * 1.3) = 6 * 0.09.
        assert abs(r["value"] - 2.04) < 4 * widths[-1]
        # Seeded: the same seed gives the same interval.
        again = frechet_bootstrap(real, fake, resamples=60, seed=3)
        assert again == r["interval"]
    assert widths[1] < widths[0] / 2  # 16x the samples: about 4x narrower


def test_sample_curve_points():
    real, fake = _gaussian_sets(64, seed=0)
    curve = frechet_sample_curve(real, fake, divisors=(8, 4, 2, 1))
    assert [p["samples"] for p in curve] == [8, 16, 32, 64]
    assert all(np.isfinite(p["value"]) for p in curve)
    with pytest.raises(ValueError, match="N/64"):
        frechet_sample_curve(real, fake, divisors=(64,))


def test_batched_frechet_equals_one_at_a_time():
    from drivewm.metrics.image import frechet_distance, frechet_distances

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 2, 40, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1, 1)
    mus = feats.mean(2)  # [3, 2, 5]
    covs = torch.stack([torch.stack([torch.cov(f.T) for f in pair]) for pair in feats])  # [3, 2, 5, 5]
    batched = frechet_distances(mus[:, 0], covs[:, 0], mus[:, 1], covs[:, 1])
    for i in range(3):
        assert float(batched[i]) == pytest.approx(frechet_distance(mus[i, 0], covs[i, 0], mus[i, 1], covs[i, 1]), rel=1e-12)
