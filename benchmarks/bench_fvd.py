"""FVD speed: drivewm's protocol metric vs torchmetrics' FID pipeline on the same extractor, one JSON line each.

The issue's target: an FVD of 2048 clips x 16 frames at 64 x 128 per side computes within 2
minutes on 2 cores. No I3D file is assumed: the script builds a small seeded random 3-D conv net
(a 2 x 4 x 4 patch conv, then two 3 x 3 x 3 stride-2 convs, 128 features; named ``randconv3d``,
it is not I3D and its numbers are not FVD on any published scale), saves it as TorchScript and
loads it back through ``load_protocol_extractor`` as a user's file would be.

* ours: ``ProtocolFrechetDistance`` under ``fd_randconv3d_16f_64x128_bilinear_r-1to1_n<N>`` (metric "fd":
  "fvd" is the I3D extractor's name only):
  preprocessing, features, the distance, its 100-resample bootstrap interval and sample-count curve.
* reference: torchmetrics' ``FrechetInceptionDistance`` given the same TorchScript module and the
  same preprocessed clips (preprocessing included in its time too); the two distances are checked
  to agree to 1e-5 relative (torchmetrics returns float32).

Clip generation and two warm-up calls of the network are outside both timings. ``--quick`` uses 256 clips per side (under a minute).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from drivewm.metrics import FrechetProtocol, ProtocolFrechetDistance, load_protocol_extractor


class RandConv3dFeatures(nn.Module):
    """Seeded random 3-D conv features of clips [N, C, T, H, W]; a stand-in ruler, not I3D."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([nn.Conv3d(3, 32, (2, 4, 4), stride=(2, 4, 4)),
                                    nn.Conv3d(32, 64, 3, stride=2, padding=1),
                                    nn.Conv3d(64, 128, 3, stride=2, padding=1)])
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / conv.weight[0].numel()) ** 0.5)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x.mean((2, 3, 4))


def batches(n: int, batch: int, seed: int):
    """Seeded (real, fake) clip batches [B, 16, 3, 64, 128] in [0, 1]; fake = a blend of real and noise."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        b = min(batch, n - start)
        real = torch.rand(b, 16, 3, 64, 128, generator=g)
        yield real, (0.8 * real + 0.2 * torch.rand(b, 16, 3, 64, 128, generator=g))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 clips per side instead of 2048")
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    n = args.clips or (256 if args.quick else 2048)
    protocol = FrechetProtocol("fd", "randconv3d", size=(64, 128), frames=16, resize="bilinear",
                               value_range=(-1.0, 1.0), samples=n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "randconv3d.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but is the files' format
            torch.jit.save(torch.jit.script(RandConv3dFeatures()), str(path))
        extractor = load_protocol_extractor(path, protocol, layout="NCTHW")

    ours = ProtocolFrechetDistance(protocol, extractor, batch_size=args.batch)
    reference = FrechetInceptionDistance(feature=extractor.net, normalize=True, input_img_size=(3, 16, 64, 128))
    # TorchScript's profiling executor specialises on the first calls of a shape: warm it up, untimed.
    with torch.no_grad():
        for _ in range(2):
            extractor(protocol.preprocess(next(batches(args.batch, args.batch, seed=1))[0]))
    ours_t = ref_t = 0.0
    for real, fake in batches(n, args.batch, seed=0):
        start = time.perf_counter()
        ours.update(real=real, fake=fake)
        ours_t += time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            reference.update(protocol.preprocess(real).transpose(1, 2), real=True)
            reference.update(protocol.preprocess(fake).transpose(1, 2), real=False)
        ref_t += time.perf_counter() - start
    start = time.perf_counter()
    result = ours.compute()
    ours_t += time.perf_counter() - start
    start = time.perf_counter()
    ref_value = float(reference.compute())
    ref_t += time.perf_counter() - start
    if abs(result["value"] - ref_value) > 1e-5 * abs(ref_value):
        raise AssertionError(f"FVD mismatch: ours {result['value']} vs torchmetrics {ref_value}")
    case = f"{protocol.name}_{torch.get_num_threads()}threads"
    print(json.dumps({"bench": "fvd", "case": case, "unit": "s", "ours": round(ours_t, 2), "reference": round(ref_t, 2),
                      "ratio": round(ref_t / ours_t, 3), "target": 120.0 if n == 2048 else None}))
    interval = result["interval"]
    print(json.dumps({"bench": "fvd", "case": f"{protocol.name}_value", "unit": "frechet", "ours": round(result["value"], 6),
                      "reference": round(ref_value, 6), "ratio": round(ref_value / result["value"], 6), "target": None,
                      "interval": [round(interval["low"], 6), round(interval["high"], 6)],
                      "curve": [[p["samples"], round(p["value"], 6)] for p in result["curve"]]}))


if __name__ == "__main__":
    main()
