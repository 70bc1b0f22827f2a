"""PSNR / SSIM against numpy references; Frechet distance against scipy.linalg.sqrtm; extractor naming."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.signal import convolve2d

from drivewm.errors import DrivewmError
from drivewm.metrics import ExportedFeatures, FrechetDistance, ImageQualityMetric, RandomConvFeatures, frechet_distance


def ref_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. 2004 SSIM: 11x11 Gaussian (sigma 1.5), valid windows, mean over channels and positions."""
    ax = np.arange(11) - 5
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for x, y in zip(a, b):
        f = lambda im: convolve2d(im, w, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        vals.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    return float(np.mean(vals))


def test_psnr_ssim_reference_and_split():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(4, 3, 24, 24, generator=g)
    pred = (target + 0.1 * torch.randn(4, 3, 24, 24, generator=g)).clamp(0, 1)
    whole, split = ImageQualityMetric(), ImageQualityMetric()
    whole.update(pred, target)
    split.update(pred[:1], target[:1])
    split.update(pred[1:], target[1:])
    r = whole.compute()
    p, t = pred.double().numpy(), target.double().numpy()
    psnr = [10 * np.log10(1 / np.mean((p[i] - t[i]) ** 2)) for i in range(4)]
    assert r["psnr"] == pytest.approx(np.mean(psnr))
    assert r["ssim"] == pytest.approx(np.mean([ref_ssim(p[i], t[i]) for i in range(4)]), abs=1e-6)
    rs = split.compute()
    assert rs["psnr"] == pytest.approx(r["psnr"]) and rs["ssim"] == pytest.approx(r["ssim"])


def test_identical_images_and_bad_input():
    x = torch.rand(2, 3, 16, 16)
    m = ImageQualityMetric()
    m.update(x, x)
    r = m.compute()
    assert r["psnr"] == float("inf") and r["ssim"] == pytest.approx(1.0) and r["identical_images"] == 2
    with pytest.raises(ValueError, match="target shape"):
        m.update(x, x[:, :1])
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred contains NaN"):
        m.update(bad, x)


def test_frechet_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    got = frechet_distance(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(ref, rel=1e-8)
    # Streaming, batch-split statistics give the same number.
    fd = FrechetDistance(RandomConvFeatures())
    for i in range(0, 300, 70):
        fd.update_features(real=torch.from_numpy(a[i : i + 70]))
    fd.update_features(fake=torch.from_numpy(b))
    r = fd.compute()
    assert r["value"] == pytest.approx(ref, rel=1e-8)
    assert r["name"] == "frechet_randconv2d-seed0-d64" and "FID" not in r["name"]


def test_frechet_identical_sets_zero_and_singular_covariance():
    x = torch.randn(50, 4, dtype=torch.float64)
    x = torch.cat([x, x[:, :1] * 2], 1)  # rank-deficient covariance
    fd = FrechetDistance(RandomConvFeatures())
    fd.update_features(real=x, fake=x)
    assert abs(fd.compute()["value"]) < 1e-6  # sqrt of ~0 eigenvalues: ~sqrt(machine eps) noise


def test_extractor_naming_and_file(tmp_path):
    imgs = torch.rand(6, 3, 32, 32)
    ext = RandomConvFeatures(dim=16, seed=3)
    assert torch.equal(ext(imgs), RandomConvFeatures(dim=16, seed=3)(imgs))  # seeded ruler
    video = RandomConvFeatures(dim=16, video=True)
    assert video(torch.rand(2, 4, 3, 16, 16)).shape == (2, 16)
    # A local TorchScript network (the published Inception / I3D files are TorchScript) is reported
    # under its own name: FID / FVD names come only with a protocol (drivewm.metrics.video).
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    path = tmp_path / "feat.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but is the files' format
        torch.jit.save(torch.jit.script(net), str(path))
    fd = FrechetDistance(ExportedFeatures(path))
    fd.update(real=imgs, fake=imgs.flip(0))
    assert fd.compute()["name"] == "frechet_feat"
    with pytest.raises(DrivewmError, match="nothere"):
        ExportedFeatures(tmp_path / "nothere.pt2")
