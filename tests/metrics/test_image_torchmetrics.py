"""drivewm.metrics.image against torchmetrics' implementations (an independent reference, the `test` extra)."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance

from drivewm.metrics.image import FrechetDistance, ImageQualityMetric, RandomConvFeatures, ssim_per_image


def _pair(shape, seed, data_range=1.0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(*shape, generator=g, dtype=torch.float64) * data_range
    pred = (target + noise * data_range * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(0, data_range)
    return pred, target


@pytest.mark.parametrize("shape,data_range,seed", [((3, 3, 24, 30), 1.0, 0), ((2, 1, 11, 11), 1.0, 1),
                                                   ((2, 3, 17, 40), 255.0, 2)])
def test_ssim_equals_torchmetrics_on_the_valid_windows(shape, data_range, seed):
    """torchmetrics reflect-pads by the window radius (5) and averages the full map; its map cropped to the
    valid windows is Wang et al.'s SSIM, which drivewm computes."""
    pred, target = _pair(shape, seed, data_range)
    padded_mean, full = structural_similarity_index_measure(pred, target, data_range=data_range, reduction="none",
                                                            return_full_image=True)
    valid = full[..., 5:-5, 5:-5].flatten(1).mean(1)  # [N]
    torch.testing.assert_close(ssim_per_image(pred, target, data_range), valid, rtol=1e-12, atol=1e-12)
    # The padded border shifts torchmetrics' own mean: why drivewm does not report it.
    if shape[-1] > 11:
        assert (padded_mean - valid).abs().max() > 1e-4
    metric = ImageQualityMetric(data_range=data_range)
    metric.update(pred, target)
    assert metric.compute()["ssim"] == pytest.approx(float(valid.mean()), rel=1e-12)


def test_frechet_distance_equals_torchmetrics_fid_with_the_same_features():
    """Both fit Gaussians to the extractor's features of the same images; torchmetrics' FID pipeline with a
    custom feature network computes the same distance (its result comes back in float32)."""
    extractor = RandomConvFeatures(dim=16, seed=0)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 32, 32, generator=g)
    fake = (0.7 * real + 0.2 * torch.rand(40, 3, 32, 32, generator=g)).clamp(0, 1)
    reference = FrechetInceptionDistance(feature=extractor, normalize=True, input_img_size=(3, 32, 32))
    reference.update(real[:25], real=True)
    reference.update(real[25:], real=True)
    reference.update(fake, real=False)
    ours = FrechetDistance(extractor)
    ours.update(real=real, fake=fake)
    value = ours.compute()["value"]
    assert value > 1e-3  # a real difference, not two zeros
    assert value == pytest.approx(float(reference.compute()), rel=1e-6)
