"""What the camera tables add to the one evaluation loop: the Frechet protocol and extractor a user names
(`frechet_setup`). The camera tokenizer's bound row is `dynamics.TokenizerBound`, as for every modality.

A Frechet protocol is given by its name (`drivewm.metrics.video.FrechetProtocol.name`, which spells every
setting): ``fvd_i3d400_16f_224_bilinear_r-1to1_n2048``; a name may stop after the size
(``fvd_i3d400_16f_224``: the protocol's defaults for resize and range, or those of the named constant it
matches, such as FVD_I3D400_16F_224) and leave out the sample count, which is then the number of clips the
table scores (the name the result carries says it). The extractor is the user's file; nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch

from drivewm.errors import DrivewmError
from drivewm.metrics import FrechetProtocol, load_protocol_extractor
from drivewm.metrics.image import FeatureExtractor
from drivewm.metrics.video import FID_INCEPTION_299, FVD_I3D400_16F_224

KNOWN_PROTOCOLS = {"fvd_i3d400_16f_224": FVD_I3D400_16F_224, "fid_inception_299": FID_INCEPTION_299}
# The StyleGAN-V / TATS I3D TorchScript takes [N, C, T, H, W] and is called with these keywords so that it
# neither rescales nor resizes what the protocol already prepared (universome/stylegan-v,
# src/metrics/frechet_video_distance.py, `detector_kwargs`).
I3D_CALL = {"rescale": False, "resize": False, "return_features": True}

_FRAMES = re.compile(r"(\d+)f")
_SIZE = re.compile(r"(\d+)(?:x(\d+))?")
_RANGE = re.compile(r"r(-?[\d.]+)to(-?[\d.]+)")
_SAMPLES = re.compile(r"n(\d+)")


def parse_protocol(name: str) -> tuple[FrechetProtocol, bool]:
    """The protocol a name spells, and whether the name fixed the sample count ('_n<N>')."""
    if name in KNOWN_PROTOCOLS:
        return KNOWN_PROTOCOLS[name], True
    parts = name.split("_")
    bad = DrivewmError(f"fd_protocol={name!r}: expected METRIC_EXTRACTOR[_<T>f]_<H>[x<W>][_RESIZE][_r<LO>to<HI>]"
                       f"[_n<N>], e.g. {FVD_I3D400_16F_224.name}")
    if len(parts) < 3:
        raise bad
    known = next((p for k, p in KNOWN_PROTOCOLS.items() if name.startswith(k + "_")), None)
    if known is None:  # a published extractor's conventions (I3D: [-1, 1]; Inception: [0, 255]) by its tag
        known = next((p for p in KNOWN_PROTOCOLS.values() if (p.metric, p.extractor) == tuple(parts[:2])), None)
    fields: dict = {"metric": parts[0], "extractor": parts[1]}
    if known is not None:  # the named constant's settings unless the name says otherwise
        fields.update(frames=known.frames, resize=known.resize, value_range=known.value_range)
    rest = parts[2:]
    if rest and _FRAMES.fullmatch(rest[0]):
        fields["frames"] = int(rest.pop(0)[:-1])
    size = _SIZE.fullmatch(rest.pop(0)) if rest else None
    if size is None:
        raise bad
    fields["size"] = (int(size[1]), int(size[2] or size[1]))
    given = False
    for part in rest:
        if (r := _RANGE.fullmatch(part)) is not None:
            fields["value_range"] = (float(r[1]), float(r[2]))
        elif (n := _SAMPLES.fullmatch(part)) is not None:
            fields["samples"], given = int(n[1]), True
        elif part.isalpha():
            fields["resize"] = part
        else:
            raise bad
    if known is None and "value_range" not in fields:
        # An extractor reads values in the range it was made for; a default could silently shift every feature.
        raise DrivewmError(f"fd_protocol={name!r}: name the value range the extractor reads (_r<LO>to<HI>, as "
                           f"`drivewm export extractor` prints it, e.g. _r-1to1)")
    try:
        return FrechetProtocol(**fields), given
    except ValueError as err:
        raise DrivewmError(f"fd_protocol={name!r}: {err}") from None


def is_clip_protocol(protocol: FrechetProtocol) -> bool:
    """Whether a Frechet protocol takes clips (fvd, drivewm's fd) rather than single images (fid)."""
    return protocol.metric != "fid"


def frechet_setup(extractor: str | Path, fd_protocol: str, windows: int, horizon: int, *, blocks: bool = False,
                  device: str = "cpu") -> tuple[FrechetProtocol, FeatureExtractor]:
    """(protocol, extractor) of a table of `windows` forecasts of `horizon` frames: the protocol `fd_protocol`
    names, whose samples are the windows' clips (an image protocol: all their frames; with `blocks`, a rollout
    scored block by block, one clip or frame per window) unless its name fixes a count (then the two must agree),
    and the user's extractor file on `device` (where the frames are)."""
    if not fd_protocol:
        raise DrivewmError(f"extractor={extractor}: name the Frechet protocol too (fd_protocol=..., e.g. "
                           f"{FVD_I3D400_16F_224.name.rsplit('_n', 1)[0]})")
    protocol, given = parse_protocol(fd_protocol)
    if is_clip_protocol(protocol) and protocol.frames > horizon:
        raise DrivewmError(f"fd_protocol={fd_protocol}: {protocol.metric} takes clips of {protocol.frames} frames; "
                           f"the horizon is {horizon}")
    samples = windows if blocks or is_clip_protocol(protocol) else windows * horizon
    if given and protocol.samples != samples:
        raise DrivewmError(f"fd_protocol={fd_protocol}: the protocol needs {protocol.samples} samples, the table "
                           f"scores {samples}; choose the windows (max_windows) or leave the '_n' part out")
    if not given:
        if samples < 16:
            raise DrivewmError(f"fd_protocol={fd_protocol}: a Frechet distance needs >= 16 samples, the table scores "
                               f"{samples}; evaluate more windows")
        protocol = replace(protocol, samples=samples)
    i3d = protocol.extractor.startswith("i3d")
    net = load_protocol_extractor(extractor, protocol, call_kwargs=I3D_CALL if i3d else None,
                                  layout="NCTHW" if i3d else "NTCHW")
    return protocol, net.to(device)

