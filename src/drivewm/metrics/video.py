"""FID and FVD under a named preprocessing protocol, with bootstrap intervals and a sample-count curve.

A Frechet number means little without the preprocessing that produced it: the same model scores
249.7, 160.1 or 89.4 FVD depending on frames and samples (Vista issue #60). So a
``FrechetProtocol`` fixes every setting that shapes the extractor's input (clip length, resize rule
and size, value range) and the sample count, and its ``name`` spells all of them
(``fvd_i3d400_16f_224_bilinear_r-1to1_n2048``): two numbers with the same name were measured the
same way, and changing any setting changes the name. "fid" and "fvd" are the published extractors'
names only (Inception, Kinetics-400 I3D); a distance on any other extractor, such as drivewm's own
V-JEPA camera encoder (``drivewm.jepa.video_encoder``), is "fd" under its own tag
(``fd_vjepacam_8f_64x128_bilinear_r-1to1_n256``), so it is never read as an FVD.

The extractor is a file the user supplies (``load_protocol_extractor``: TorchScript or
``torch.export``); drivewm never downloads weights, and a missing file is a one-line
``DrivewmError`` that says which file the protocol needs. The distance itself is
``drivewm.metrics.image.frechet_distance`` on the same float64 Gaussian fit as
``FrechetDistance``; what this metric adds is that it keeps the features, so every number comes
with a seeded bootstrap interval (both sample sets resampled with replacement) and the distance
at N/8, N/4, N/2 and N samples, which shows how far the number still moves with N.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from drivewm.errors import DrivewmError
from drivewm.metrics.distributed import check_finite, is_distributed
from drivewm.metrics.image import ExportedFeatures, FeatureExtractor, frechet_distance, frechet_distances, gaussian_from_sums

RESIZE_RULES = ("bilinear", "bicubic", "area", "nearest")
METRICS = ("fid", "fvd", "fd")
# The published extractor behind each published metric name: FID is Inception's, FVD is I3D's.
PUBLISHED_EXTRACTORS = {"fid": "inception", "fvd": "i3d400"}
_PUBLISHED_METRIC = {e: m for m, e in PUBLISHED_EXTRACTORS.items()}
VIDEO_METRICS = ("fvd", "fd")

# What each extractor tag's file is, for the error a missing file raises.
EXTRACTOR_FILES = {
    "i3d400": "the StyleGAN-V / TATS I3D TorchScript (i3d_torchscript.pt, Kinetics-400 I3D)",
    "inception": "the StyleGAN2-ADA / clean-fid Inception-v3 TorchScript (inception-2015-12-05.pt)",
}


def _range_tag(lo: float, hi: float) -> str:
    return f"r{lo:g}to{hi:g}"


@dataclass(frozen=True)
class FrechetProtocol:
    """Every setting between a clip (or image) in [0, 1] and the extractor's input, plus the sample count.

    ``metric`` is "fid" (images [N, C, H, W], ``frames`` = 1, the Inception extractor), "fvd" (videos
    [N, T, C, H, W], the first ``frames`` frames of each clip, the I3D extractor) or "fd" (videos as
    "fvd", any other extractor, e.g. a drivewm encoder). Frames are resized to ``size`` (H, W) with ``resize``
    (``torch.nn.functional.interpolate``, ``align_corners=False``, no antialiasing) and mapped
    linearly from [0, 1] to ``value_range``. ``samples`` clips per side are required.
    """

    metric: str
    extractor: str
    size: tuple[int, int]
    frames: int = 1
    resize: str = "bilinear"
    value_range: tuple[float, float] = (0.0, 1.0)
    samples: int = 2048

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not self.extractor.isalnum():
            # Tags are joined by "_" in the name, so a tag must not hold one (the name stays unambiguous).
            raise ValueError(f"extractor tag must be letters and digits, got {self.extractor!r}")
        published = PUBLISHED_EXTRACTORS.get(self.metric)
        if published is not None and self.extractor != published:
            raise ValueError(f"{self.metric} is measured with the {published} extractor only, got {self.extractor!r}; "
                             f"a distance on another extractor is metric 'fd'")
        if self.metric == "fd" and self.extractor in _PUBLISHED_METRIC:
            raise ValueError(f"the {self.extractor} extractor's distance is {_PUBLISHED_METRIC[self.extractor]!r}, not 'fd'")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) >= 1, got {self.size}")
        if self.metric == "fid" and self.frames != 1:
            raise ValueError(f"an fid protocol takes single images (frames=1), got frames={self.frames}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, got {self.resize!r}")
        if not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        if self.samples < 16:
            raise ValueError(f"samples must be >= 16 (the curve's N/8 needs 2), got {self.samples}")

    @property
    def name(self) -> str:
        h, w = self.size
        size = f"{h}" if h == w else f"{h}x{w}"
        clip = [f"{self.frames}f"] if self.metric in VIDEO_METRICS else []
        return "_".join([self.metric, self.extractor, *clip, size, self.resize, _range_tag(*self.value_range), f"n{self.samples}"])

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Clips [N, T, C, H, W] (fvd, fd) or images [N, C, H, W] (fid), float in [0, 1] or uint8, to the
        extractor's input: [N, frames, C, *size] or [N, C, *size] in ``value_range``, float32."""
        want = 5 if self.metric in VIDEO_METRICS else 4
        if x.ndim != want:
            kind = "videos [N, T, C, H, W]" if want == 5 else "images [N, C, H, W]"
            raise ValueError(f"{self.name}: input must be {kind}, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float() / 255
        else:
            check_finite("input", x)
            lo, hi = (float(v) for v in torch.aminmax(x))
            if lo < 0 or hi > 1:
                raise ValueError(f"{self.name}: input values must lie in [0, 1] (or be uint8), got [{lo:.4g}, {hi:.4g}]")
            x = x.float()
        if self.metric in VIDEO_METRICS:
            if x.shape[1] < self.frames:
                raise ValueError(f"{self.name}: clips have {x.shape[1]} frames, the protocol needs {self.frames}")
            x = x[:, : self.frames]
        lead = x.shape[:-3]
        frames = x.reshape(-1, *x.shape[-3:])
        if tuple(frames.shape[-2:]) != tuple(self.size):
            align = False if self.resize in ("bilinear", "bicubic") else None
            frames = F.interpolate(frames, size=tuple(self.size), mode=self.resize, align_corners=align)
        lo, hi = self.value_range
        return frames.mul(hi - lo).add_(lo).reshape(*lead, *frames.shape[-3:])


FVD_I3D400_16F_224 = FrechetProtocol("fvd", "i3d400", size=(224, 224), frames=16, resize="bilinear", value_range=(-1.0, 1.0), samples=2048)
FID_INCEPTION_299 = FrechetProtocol("fid", "inception", size=(299, 299), resize="bilinear", value_range=(0.0, 255.0), samples=50000)


def load_protocol_extractor(path: str | Path, protocol: FrechetProtocol, *, call_kwargs: dict | None = None,
                            layout: str = "NTCHW") -> ExportedFeatures:
    """The user's extractor file for ``protocol`` (never downloaded). I3D TorchScripts take
    ``layout="NCTHW"``; ``call_kwargs`` such as ``{"return_features": True}`` follow the file."""
    needs = EXTRACTOR_FILES.get(protocol.extractor, f"the feature network file of extractor '{protocol.extractor}' "
                                                    f"(TorchScript or .pt2; `drivewm export extractor RUN FILE` writes a trained one)")
    return ExportedFeatures(path, name=protocol.extractor, call_kwargs=call_kwargs, layout=layout,
                            needs=f"{needs}, for {protocol.name}")


def export_extractor(module: torch.nn.Module, example: torch.Tensor, path: str | Path) -> ExportedFeatures:
    """Write a frozen feature network to ``path`` so that ``ExportedFeatures`` / ``load_protocol_extractor``
    load it like a published extractor: ``.pt2`` is ``torch.export`` with a free batch size, any other
    suffix a TorchScript trace. ``example`` is one input batch of the protocol's shape. The file is written
    atomically, loaded back and checked to give the module's features on ``example``; returns the loaded file."""
    path = Path(path)
    module = module.eval()
    with torch.no_grad():
        want = module(example)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix picks the loader
    if path.suffix == ".pt2":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
        torch.export.save(program, str(tmp))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, but it is the published extractors' format
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(tmp))
    loaded = ExportedFeatures(tmp, name=path.stem)
    got = loaded(example)
    if not torch.allclose(got, want.double(), rtol=1e-4, atol=1e-5):
        tmp.unlink()
        raise DrivewmError(f"{path}: the exported extractor's features differ from the module's "
                           f"(max {float((got - want.double()).abs().max()):.3g}); not written")
    tmp.replace(path)
    return ExportedFeatures(path, name=path.stem)


def protocol_features(protocol: FrechetProtocol, extractor: FeatureExtractor, x: torch.Tensor,
                      batch_size: int = 64) -> torch.Tensor:
    """The extractor's features [N, D] (float64, CPU) of clips or images ``x`` under ``protocol``, batch by batch."""
    parts = []
    for start in range(0, x.shape[0], batch_size):
        f = extractor(protocol.preprocess(x[start : start + batch_size]))
        if f.ndim != 2:
            raise ValueError(f"{protocol.name}: features must be [N, D], got shape {tuple(f.shape)}")
        parts.append(f.detach().double().cpu())
    return torch.cat(parts)


def _fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian fit of features [N, D] in float64."""
    n = torch.tensor(float(features.shape[0]), dtype=torch.float64)
    return gaussian_from_sums(n, features.sum(0), features.T @ features)


def _resampled_fits(features: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian fits [R, D], [R, D, D] of R resamples given as counts [R, N] (each row sums to N)."""
    n = features.shape[0]
    outer = (features * counts[..., None]).mT @ features
    return gaussian_from_sums(torch.tensor(float(n), dtype=torch.float64), counts @ features, outer)


def frechet_of_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets [N, D], float64."""
    return frechet_distance(*_fit(real.double()), *_fit(fake.double()))


# Resamples per batched eigendecomposition: bounds the [R, D, D] covariances held at once.
_RESAMPLE_CHUNK = 25


def frechet_bootstrap(real: torch.Tensor, fake: torch.Tensor, *, resamples: int = 100, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Bootstrap interval of the Frechet distance: both sets resampled with replacement, seeded.

    A resample repeats samples, which inflates the covariance spread and the mean gap, so the
    bootstrap distribution sits above the point estimate (its ``bias`` is reported). The interval
    is the bootstrap's spread around its median, placed on the point estimate:
    ``[d + q_lo - median, d + q_hi - median]``; it contains the estimate by construction and its width
    is the percentile interval's.
    """
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    real, fake = real.double(), fake.double()
    point = frechet_of_features(real, fake)
    g = torch.Generator().manual_seed(seed)
    draws = []
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        r = min(_RESAMPLE_CHUNK, resamples - start)
        fits = []
        for f in (real, fake):
            n = f.shape[0]
            picks = torch.randint(0, n, (r, n), generator=g) + n * torch.arange(r)[:, None]
            counts = torch.bincount(picks.flatten(), minlength=r * n).reshape(r, n).double()
            fits += _resampled_fits(f, counts)
        draws.append(frechet_distances(*fits))
    d = torch.cat(draws)
    alpha = (1 - level) / 2
    q_lo, median, q_hi = (float(v) for v in torch.quantile(d, torch.tensor([alpha, 0.5, 1 - alpha], dtype=torch.float64)))
    return {"low": point + q_lo - median, "high": point + q_hi - median, "level": level, "resamples": resamples,
            "seed": seed, "bias": float(d.mean()) - point}


def frechet_sample_curve(real: torch.Tensor, fake: torch.Tensor, *, divisors: tuple[int, ...] = (8, 4, 2, 1),
                         seed: int = 0) -> list[dict]:
    """Frechet distance on the first N/k samples of a seeded shuffle of each set, for k in ``divisors``."""
    g = torch.Generator().manual_seed(seed)
    real = real.double()[torch.randperm(real.shape[0], generator=g)]
    fake = fake.double()[torch.randperm(fake.shape[0], generator=g)]
    n = min(real.shape[0], fake.shape[0])
    curve = []
    for k in divisors:
        m = n // k
        if m < 2:
            raise ValueError(f"the curve point N/{k} has {m} samples; a covariance needs at least 2")
        curve.append({"samples": m, "value": frechet_of_features(real[:m], fake[:m])})
    return curve


class ProtocolFrechetDistance:
    """FID / FVD under ``protocol`` with ``extractor``: ``update(real=x, fake=y)`` per batch, then ``compute()``.

    Features are kept (float64, CPU) because the bootstrap and the curve resample them; with a
    process group they are gathered in rank order. ``compute()`` refuses sample counts other than
    the protocol's, so a number never carries a name it was not measured under.
    """

    def __init__(self, protocol: FrechetProtocol, extractor: FeatureExtractor, *, resamples: int = 100,
                 level: float = 0.95, seed: int = 0, batch_size: int = 64) -> None:
        self.protocol = protocol
        self.extractor = extractor
        self.resamples, self.level, self.seed, self.batch_size = resamples, level, seed, batch_size
        self.features: dict[str, list[torch.Tensor]] = {"real": [], "fake": []}

    @property
    def metric_name(self) -> str:
        return self.protocol.name

    def update(self, real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> None:
        for side, x in (("real", real), ("fake", fake)):
            if x is not None:
                self._add(side, protocol_features(self.protocol, self.extractor, x, self.batch_size))

    def update_features(self, real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> None:
        """Features [N, D] the extractor already produced from protocol-preprocessed inputs."""
        for side, f in (("real", real), ("fake", fake)):
            if f is not None:
                self._add(side, f)

    def _add(self, side: str, f: torch.Tensor) -> None:
        if f.ndim != 2:
            raise ValueError(f"{side} features must be [N, D], got shape {tuple(f.shape)}")
        check_finite(f"{side} features", f)
        self.features[side].append(f.detach().double().cpu())

    def _gathered(self, side: str) -> torch.Tensor:
        parts = self.features[side]
        local = torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float64)
        if not is_distributed():
            return local
        everyone: list = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, local)
        return torch.cat([t for t in everyone if t.numel() > 0])

    def reset(self) -> None:
        self.features = {"real": [], "fake": []}

    def compute(self) -> dict:
        real, fake = self._gathered("real"), self._gathered("fake")
        for side, f in (("real", real), ("fake", fake)):
            if f.shape[0] != self.protocol.samples:
                raise DrivewmError(f"{self.protocol.name}: the protocol needs {self.protocol.samples} {side} samples, got {f.shape[0]}")
        if real.shape[1] != fake.shape[1]:
            raise ValueError(f"real features have dimension {real.shape[1]}, fake ones {fake.shape[1]}")
        return {"name": self.protocol.name, "value": frechet_of_features(real, fake), "extractor": self.protocol.extractor,
                "real_samples": real.shape[0], "fake_samples": fake.shape[0],
                "interval": frechet_bootstrap(real, fake, resamples=self.resamples, level=self.level, seed=self.seed),
                "curve": frechet_sample_curve(real, fake, seed=self.seed)}
