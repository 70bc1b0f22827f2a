"""What a video extractor measures: its Frechet distance under temporal vs per-frame corruption of equal PSNR.

A video metric should see time. Shuffling a clip's frames or freezing its motion (the first frame
repeated) leaves every frame a real frame, so an extractor that reads frames one at a time barely
moves; per-frame corruption (Gaussian noise) damages every frame. ``corruption_sensitivity``
puts the two on the same footing: for each temporal corruption it measures the clips' PSNR against
the originals, finds the noise level with the same PSNR (to 0.01 dB, by false position),
and reports ``FD(temporal) / FD(per-frame)``: above 1, the extractor weighs a change of motion more
than the same pixel error spread over single frames.

PSNR here is over the whole clip set, ``10 log10(1 / mean squared error)`` on pixels in [0, 1]: the
corruption's energy. (A per-frame average of PSNR is undefined for frozen clips, whose first frame is
exact.) The noise is one seeded draw scaled by the searched sigma and clipped to [0, 1], so the error
grows monotonically with sigma.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from drivewm.metrics.video import FrechetProtocol, frechet_of_features, protocol_features

TEMPORAL = ("shuffled", "frozen")


def unit_clips(clips: torch.Tensor) -> torch.Tensor:
    """Clips [N, T, C, H, W], uint8 or float in [0, 1] -> float32 in [0, 1]."""
    if clips.ndim != 5:
        raise ValueError(f"clips must be [N, T, C, H, W], got shape {tuple(clips.shape)}")
    return clips.float() / 255 if clips.dtype == torch.uint8 else clips.float()


def set_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of b against a over the whole set, pixels in [0, 1]: 10 log10(1 / mean squared error)."""
    mse = float((a.float() - b.float()).square().sum(dtype=torch.float64)) / a.numel()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def temporal_corruption(clips: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    """'shuffled': each clip's frames in a seeded random order other than the original;
    'frozen': the first frame repeated over the clip (no motion)."""
    if kind == "frozen":
        return clips[:, :1].expand_as(clips).clone()
    if kind != "shuffled":
        raise ValueError(f"temporal corruption must be one of {TEMPORAL}, got {kind!r}")
    n, t = clips.shape[:2]
    if t < 2:
        raise ValueError("shuffling needs clips of at least 2 frames")
    g = torch.Generator().manual_seed(seed)
    order = []
    for _ in range(n):
        perm = torch.randperm(t, generator=g)
        while torch.equal(perm, torch.arange(t)):
            perm = torch.randperm(t, generator=g)
        order.append(perm)
    return torch.gather(clips, 1, torch.stack(order).view(n, t, 1, 1, 1).expand_as(clips))


def noise_corruption(clips: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Per-frame corruption: clips + sigma * N(0, 1) (a seeded draw), clipped to [0, 1]."""
    noise = torch.randn(clips.shape, generator=torch.Generator().manual_seed(seed))
    return torch.addcmul(clips, noise, torch.tensor(float(sigma))).clamp_(0, 1)


def match_psnr(clips: torch.Tensor, psnr: float, *, seed: int = 0, tol_db: float = 0.01) -> tuple[torch.Tensor, float]:
    """Gaussian noise on ``clips`` (float in [0, 1]) whose set PSNR is ``psnr`` within ``tol_db``: returns
    (noisy clips, sigma), the clips equal to ``noise_corruption(clips, sigma, seed)``. Without clipping the
    error would be sigma^2, so the search starts at sigma = 10^(-psnr / 20); clipping only lowers the
    error, so the answer lies above. Illinois false position on log sigma."""
    if not math.isfinite(psnr):
        return clips.clone(), 0.0
    noise = torch.randn(clips.shape, generator=torch.Generator().manual_seed(seed))

    def at(log_sigma: float) -> tuple[torch.Tensor, float]:
        out = torch.addcmul(clips, noise, torch.tensor(math.exp(log_sigma))).clamp_(0, 1)
        return out, set_psnr(clips, out) - psnr  # > 0: not noisy enough

    lo = -psnr / 20 * math.log(10)
    out, f_lo = at(lo)
    hi, f_hi = lo, f_lo
    while f_hi > tol_db:
        lo, f_lo = hi, f_hi
        hi += math.log(2)
        if hi > math.log(64):
            raise ValueError(f"noise cannot bring the clips down to {psnr:.2f} dB PSNR (sigma <= 64)")
        out, f_hi = at(hi)
    while f_lo < -tol_db:  # one noise draw can exceed sigma^2 by chance
        hi, f_hi = lo, f_lo
        lo -= math.log(2)
        out, f_lo = at(lo)
    for log_sigma, f in ((hi, f_hi), (lo, f_lo)):
        if abs(f) <= tol_db:
            return at(log_sigma)[0], math.exp(log_sigma)
    side = 0
    for _ in range(100):
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        out, f_mid = at(mid)
        if abs(f_mid) <= tol_db:
            return out, math.exp(mid)
        if f_mid > 0:
            lo, f_lo = mid, f_mid
            f_hi = f_hi / 2 if side == -1 else f_hi
            side = -1
        else:
            hi, f_hi = mid, f_mid
            f_lo = f_lo / 2 if side == 1 else f_lo
            side = 1
    raise ValueError(f"noise: no sigma gives {psnr:.2f} dB PSNR within {tol_db} dB")


def corruption_sensitivity(clips: torch.Tensor, protocol: FrechetProtocol,
                           extractor: Callable[[torch.Tensor], torch.Tensor], *, temporal=TEMPORAL,
                           seed: int = 0, batch_size: int = 32) -> list[dict]:
    """FD of the clips' features against their corrupted copies, temporal vs per-frame noise at equal PSNR.

    ``clips`` [N, T, C, H, W] (uint8 or [0, 1]; the first ``protocol.frames`` frames are used) go through
    ``protocol.preprocess`` and ``extractor``. One row per temporal corruption: both PSNRs, the noise
    sigma, both distances and ``ratio`` = FD(temporal) / FD(noise).
    """
    x = unit_clips(clips)
    if x.shape[1] < protocol.frames:
        raise ValueError(f"{protocol.name}: clips have {x.shape[1]} frames, the protocol needs {protocol.frames}")
    x = x[:, : protocol.frames]
    real = protocol_features(protocol, extractor, x, batch_size)

    def fd(corrupted: torch.Tensor) -> float:
        return frechet_of_features(real, protocol_features(protocol, extractor, corrupted, batch_size))

    rows = []
    for kind in temporal:
        moved = temporal_corruption(x, kind, seed)
        psnr = set_psnr(x, moved)
        noisy, sigma = match_psnr(x, psnr, seed=seed)
        fd_t, fd_p = fd(moved), fd(noisy)
        rows.append({"temporal": kind, "per_frame": "noise", "psnr_temporal": psnr, "psnr_per_frame": set_psnr(x, noisy),
                     "sigma": sigma, "fd_temporal": fd_t, "fd_per_frame": fd_p, "ratio": fd_t / fd_p})
    return rows
