"""Image and video metrics: PSNR, SSIM and the Frechet distance between Gaussian fits of features.

* PSNR = 10 log10(data_range^2 / MSE) per image, averaged over images.
* SSIM (Wang et al., IEEE TIP 2004, and its reference ``ssim_index.m``): 11 x 11 Gaussian window,
  sigma 1.5, K1 = 0.01, K2 = 0.03, per channel, mean over the *valid* window positions
  (``filter2(..., 'valid')``; also what scikit-image's crop gives), averaged over images.
  torchmetrics averages over reflect-padded borders instead, which shifts the value, so it is
  not used here.
* Frechet distance (Heusel et al., arXiv 1706.08500 for FID; Unterthiner et al., arXiv
  1812.01717 for FVD): ``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` between Gaussians
  fitted to features of real and generated samples. The trace of the matrix square root is
  computed as ``sum sqrt(eig(S_r^(1/2) S_f S_r^(1/2)))`` from symmetric eigendecompositions
  in float64, which is real, PSD by construction and stable where ``scipy.linalg.sqrtm`` of the
  non-symmetric product can return complex noise.

The feature extractor is pluggable and nothing is downloaded. ``FrechetDistance`` reports
``frechet_<extractor name>``; a score is called FID or FVD only under a named preprocessing protocol
(``drivewm.metrics.video.FrechetProtocol``), whose name it carries.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from drivewm.errors import DrivewmError
from drivewm.metrics.distributed import StreamingMetric, check_finite

VIDEO_LAYOUTS = ("NTCHW", "NCTHW")


def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4:
        raise ValueError(f"pred must be images [N, C, H, W], got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
    check_finite("pred", pred)
    check_finite("target", target)


def _gaussian_taps(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The normalised 1-D Gaussian [size]; the SSIM window is its outer product with itself."""
    ax = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_filter_matrix(n: int, taps: torch.Tensor) -> torch.Tensor:
    """[n - k + 1, n] banded matrix whose product with a signal [n] is its valid correlation with taps [k]."""
    k = taps.shape[0]
    rows = torch.arange(n - k + 1, device=taps.device)
    out = torch.zeros(n - k + 1, n, dtype=taps.dtype, device=taps.device)
    for i in range(k):
        out[rows, rows + i] = taps[i]
    return out


def _gaussian_filter_valid(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """x [..., H, W] filtered by the size x size Gaussian over the valid positions: [..., H - size + 1, W - size + 1].
    The window is separable, so rows then columns as two matrix products (float64 depthwise convolutions on
    CPU are ~30x slower)."""
    taps = _gaussian_taps(size, sigma, x.dtype).to(x.device)
    h, w = x.shape[-2:]
    return _valid_filter_matrix(h, taps) @ x @ _valid_filter_matrix(w, taps).mT


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM [N] of images [N, C, H, W] (H, W >= 11), Wang et al. 2004 with valid windows."""
    n, c, h, w = pred.shape
    if h < 11 or w < 11:
        raise ValueError(f"pred: SSIM needs images of at least 11 x 11 pixels, got {h} x {w}")
    stack = torch.cat([pred, target, pred * pred, target * target, pred * target])  # [5N, C, H, W]
    mu_p, mu_t, e_pp, e_tt, e_pt = _gaussian_filter_valid(stack).split(n)  # valid windows
    var_p, var_t, cov = e_pp - mu_p**2, e_tt - mu_t**2, e_pt - mu_p * mu_t
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(1)


class ImageQualityMetric(StreamingMetric):
    """Streaming per-image PSNR (dB) and SSIM averaged over images; ``update(pred, target)`` [N, C, H, W].

    With ``steps`` = S > 0 it scores forecast clips instead: ``update(pred, target)`` [N, S, C, H, W], and
    ``compute()`` adds the averages of each step (``psnr_per_step``, ``ssim_per_step``, ``identical_per_step``)
    beside those over all frames."""

    def __init__(self, *, data_range: float = 1.0, steps: int = 0) -> None:
        super().__init__()
        if data_range <= 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.data_range, self.steps = data_range, steps
        for name in ("psnr_sum", "ssim_sum", "n", "identical"):  # one slot per step (one in all without steps)
            self._add_state(name, torch.zeros(max(steps, 1), dtype=torch.float64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if self.steps:
            if pred.ndim != 5 or pred.shape[1] != self.steps:
                raise ValueError(f"pred must be clips [N, {self.steps}, C, H, W], got shape {tuple(pred.shape)}")
            if pred.shape != target.shape:
                raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
            pred, target = pred.flatten(0, 1), target.flatten(0, 1)  # [N * S, C, H, W], step fastest
        _check_images(pred, target)
        p, t = pred.double(), target.double()
        step = torch.arange(p.shape[0]) % max(self.steps, 1)  # [N * S]: each image's step slot
        mse = (p - t).square().flatten(1).mean(1).cpu()  # [N]
        # An exact copy has infinite PSNR; it is counted apart so one copy does not make the mean inf.
        exact = mse == 0
        psnr = torch.where(exact, 0.0, 10 * torch.log10(self.data_range**2 / mse.masked_fill(exact, 1.0)))
        ssim = ssim_per_image(p, t, self.data_range).cpu()
        self.psnr_sum.index_add_(0, step, psnr)
        self.ssim_sum.index_add_(0, step, ssim)
        self.n.index_add_(0, step, torch.ones_like(psnr))
        self.identical.index_add_(0, step, exact.double())

    @staticmethod
    def _means(s: dict[str, torch.Tensor]) -> tuple[float, float]:
        finite = s["n"] - s["identical"]
        psnr = float(s["psnr_sum"] / finite) if finite > 0 else float("inf")
        return psnr, float(s["ssim_sum"] / s["n"])

    def compute(self) -> dict:
        s = self._reduced()
        if s["n"].sum() == 0:
            raise ValueError("compute() called before any update()")
        psnr, ssim = self._means({k: v.sum() for k, v in s.items()})
        out = {"psnr": psnr, "ssim": ssim, "images": int(s["n"].sum()), "identical_images": int(s["identical"].sum())}
        if self.steps:
            per_step = [self._means({k: v[i] for k, v in s.items()}) for i in range(self.steps)]
            out.update(psnr_per_step=[p for p, _ in per_step], ssim_per_step=[q for _, q in per_step],
                       identical_per_step=[int(v) for v in s["identical"]])
        return out


class FeatureExtractor(Protocol):
    """Maps a batch of images [N, C, H, W] or videos [N, T, C, H, W] to features [N, D]."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class RandomConvFeatures(nn.Module):
    """A weight-free, seeded random conv net (no download): features for a Frechet distance that is not FID.

    Images [N, C, H, W] go through 3 strided conv + ReLU layers and global average pooling;
    videos [N, T, C, H, W] use 3D convolutions over (T, H, W). The weights come from ``seed`` alone,
    so two runs with the same seed measure with the same ruler.
    """

    def __init__(self, *, in_channels: int = 3, dim: int = 64, seed: int = 0, video: bool = False) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        conv = nn.Conv3d if video else nn.Conv2d
        widths = [in_channels, dim // 2, dim, dim]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            layer = conv(cin, cout, kernel_size=3, stride=2, padding=1)
            with torch.no_grad():
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                layer.bias.zero_()
            layers += [layer, nn.ReLU()]
        self.net = nn.Sequential(*layers).requires_grad_(False)
        self.video = video
        self.name = f"randconv{'3d' if video else '2d'}-seed{seed}-d{dim}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.video:
            if x.ndim != 5:
                raise ValueError(f"x must be videos [N, T, C, H, W], got shape {tuple(x.shape)}")
            x = x.transpose(1, 2)  # [N, C, T, H, W]
        elif x.ndim != 4:
            raise ValueError(f"x must be images [N, C, H, W], got shape {tuple(x.shape)}")
        return self.net(x.float()).flatten(2).mean(2)  # [N, D]


class ExportedFeatures(nn.Module):
    """A feature network loaded from a local file: ``torch.export`` (.pt2) or TorchScript (e.g. the
    published ``inception-2015-12-05.pt`` / ``i3d_torchscript.pt``). Neither format runs Python
    code on load, and nothing is downloaded: a missing file is a ``DrivewmError`` that says which
    file is needed (``needs``). ``call_kwargs`` are passed on each call (e.g.
    ``{"return_features": True}``). Videos arrive as [N, T, C, H, W]; ``layout="NCTHW"`` hands them
    to networks (I3D) that take channels before time. Values and sizes are passed as given:
    preprocessing is the protocol's job (``drivewm.metrics.video``).
    """

    def __init__(self, path: str | Path, *, name: str | None = None, call_kwargs: dict | None = None,
                 layout: str = "NTCHW", needs: str = "a TorchScript or torch.export feature network") -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise DrivewmError(f"feature network file not found: {path} (needs {needs}; drivewm never downloads weights)")
        if layout not in VIDEO_LAYOUTS:
            raise ValueError(f"layout must be one of {VIDEO_LAYOUTS}, got {layout!r}")
        if path.suffix == ".pt2":
            self.net = torch.export.load(str(path)).module()
        else:
            with warnings.catch_warnings():
                # torch.jit is deprecated, but the published FID / FVD networks ship in its format.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(path), map_location="cpu")
        self.call_kwargs = dict(call_kwargs or {})
        self.layout = layout
        self.name = name or path.stem

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5 and self.layout == "NCTHW":
            x = x.transpose(1, 2)
        feats = self.net(x, **self.call_kwargs)
        return feats.flatten(1).double()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), stable symmetric-eigh form."""
    return float(frechet_distances(mu1, sigma1, mu2, sigma2))


def frechet_distances(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """``frechet_distance`` over leading batch dimensions: means [..., D], covariances [..., D, D] -> [...]
    (one batched eigendecomposition, e.g. for bootstrap resamples)."""
    mu1, mu2, s1, s2 = (x.double() for x in (mu1, mu2, sigma1, sigma2))
    s1 = (s1 + s1.mT) / 2
    s2 = (s2 + s2.mT) / 2
    w, v = torch.linalg.eigh(s1)
    sqrt_s1 = (v * w.clamp_min(0).sqrt().unsqueeze(-2)) @ v.mT
    # sqrt(S1) S2 sqrt(S1) is symmetric PSD and similar to S1 S2: same eigenvalues, same trace of sqrt.
    middle = sqrt_s1 @ s2 @ sqrt_s1
    tr_covmean = torch.linalg.eigvalsh((middle + middle.mT) / 2).clamp_min(0).sqrt().sum(-1)
    trace = torch.diagonal(s1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(s2, dim1=-2, dim2=-1).sum(-1)
    return (mu1 - mu2).square().sum(-1) + trace - 2 * tr_covmean


def gaussian_from_sums(n: torch.Tensor, total: torch.Tensor, outer: torch.Tensor, side: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (as numpy.cov / the FID reference code) from the sample count,
    the sum of features [D] and the sum of their outer products [D, D], in float64 (a scalar count:
    one fit; leading batch dimensions pass through)."""
    if n < 2:
        raise ValueError(f"{side}: a covariance needs at least 2 samples, got {int(n)}")
    mu = total / n
    return mu, (outer - n * mu.unsqueeze(-1) * mu.unsqueeze(-2)) / (n - 1)


class FrechetDistance(StreamingMetric):
    """Streaming Frechet distance of extractor features: ``update(real=x, fake=y)`` then ``compute()``.

    The state is (count, sum, sum of outer products) per side in float64, so it is exact under any
    batch split and all-reduces across processes. ``update_features`` takes features directly.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.dim: int | None = None
        for side in ("real", "fake"):
            self._add_state(f"{side}_n", torch.zeros((), dtype=torch.float64))
            self._add_state(f"{side}_sum", torch.zeros(0, dtype=torch.float64))
            self._add_state(f"{side}_outer", torch.zeros(0, 0, dtype=torch.float64))

    @property
    def metric_name(self) -> str:
        return f"frechet_{self.extractor.name}"

    def update(self, real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> None:
        for side, x in (("real", real), ("fake", fake)):
            if x is not None:
                check_finite(side, x)
                self._add_features(side, self.extractor(x))

    def update_features(self, real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> None:
        for side, f in (("real", real), ("fake", fake)):
            if f is not None:
                self._add_features(side, f)

    def _add_features(self, side: str, f: torch.Tensor) -> None:
        if f.ndim != 2:
            raise ValueError(f"{side} features must be [N, D], got shape {tuple(f.shape)}")
        check_finite(f"{side} features", f)
        f = f.detach().double().cpu()
        if self.dim is None:
            self.dim = f.shape[1]
            for s in ("real", "fake"):
                setattr(self, f"{s}_sum", torch.zeros(self.dim, dtype=torch.float64))
                setattr(self, f"{s}_outer", torch.zeros(self.dim, self.dim, dtype=torch.float64))
        elif f.shape[1] != self.dim:
            raise ValueError(f"{side} features have dimension {f.shape[1]}, earlier ones {self.dim}")
        getattr(self, f"{side}_sum").add_(f.sum(0))
        getattr(self, f"{side}_outer").add_(f.T @ f)
        getattr(self, f"{side}_n").add_(f.shape[0])

    def compute(self) -> dict:
        s = self._reduced()
        stats = []
        for side in ("real", "fake"):
            stats += gaussian_from_sums(s[f"{side}_n"], s[f"{side}_sum"], s[f"{side}_outer"], side)
        value = frechet_distance(*stats)
        return {"name": self.metric_name, "value": value, "extractor": self.extractor.name,
                "real_samples": int(s["real_n"]), "fake_samples": int(s["fake_n"])}
