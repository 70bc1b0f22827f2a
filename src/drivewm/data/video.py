"""Video files in and out of an episode store through PyAV (FFmpeg): `drivewm data convert video`, `data export video`.

Import: each file becomes one camera-only episode: frames decoded, brought to the store's rate
``hz`` (Hz) by selecting the frame nearest to each tick t0 + k / hz (no blending; a video slower than
``hz`` is refused) and resized to ``size`` = (height, width) pixels. A video has no pose log, so the
episode holds ``camera`` only (the data contract allows that for camera-only episodes); models that
need poses or actions refuse such a store by name.

Export: one episode's ``camera`` frames as H.264 in an MP4 at the store's rate, written to a
temporary name and renamed. H.264 is lossy: at the default ``crf`` 18 a round trip through
``export_video`` and ``read_video`` keeps >= 30 dB PSNR on the test's textured frames.

PyAV (``av``) is one of drivewm's dependencies.
"""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from drivewm.data.camera import nearest_in_time, parse_size, resize_image
from drivewm.data.convert import write_scenes
from drivewm.data.spec import GridSpec
from drivewm.errors import DrivewmError

def _import_av():
    # Imported on first use: FFmpeg's libraries load only when a video is read or written.
    import av

    return av


def read_video(path: str | Path, *, hz: float, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """(uint8 [T, H, W, 3] frames at ``hz``, the file's frame rate in Hz); DrivewmError naming the file."""
    av = _import_av()
    path = Path(path)
    if not path.is_file():
        raise DrivewmError(f"{path}: video file not found")
    if not hz > 0:
        raise DrivewmError(f"hz must be > 0, got {hz}")
    size = parse_size(size, "size") if size is not None else None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DrivewmError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if fps and hz > fps * (1 + 1e-6):
                raise DrivewmError(f"{path}: {fps:g} frames/s is slower than the store's {hz:g} Hz; lower hz")
            decoded = ((f.time if f.time is not None else i / (fps or 1.0), f) for i, f in enumerate(container.decode(stream)))
            frames = [f.to_ndarray(format="rgb24") for f in nearest_in_time(decoded, hz)]
    except av.error.FFmpegError as e:
        raise DrivewmError(f"{path}: not a readable video ({type(e).__name__}: {e})") from None
    if not frames:
        raise DrivewmError(f"{path}: no video frames")
    if size is not None:
        frames = [resize_image(f, size) for f in frames]
    return np.stack(frames), fps


def convert_video(
    files: Iterable[str | Path],
    out: str | Path,
    *,
    hz: float = 2.0,
    size: tuple[int, int] = (64, 128),
    grid: GridSpec | None = None,
    skip_bad: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Video files -> camera-only episodes (one per file, source = the path) in the store ``out``; the manifest.

    Resumable: a rerun skips files already converted; more files can be added later with the same
    ``hz`` and ``size``. ``grid`` only fills the manifest (default ``tiny``; a camera store has no voxels).
    """
    from drivewm.data.spec import grid_preset

    h, w = parse_size(size, "size")
    files = [Path(f) for f in files]
    if not files:
        raise DrivewmError("convert video: no video files given")
    generator = {"name": "convert video", "hz": float(hz), "size": [h, w], "resample": "nearest frame"}

    def build(path: Path) -> Callable[[], dict[str, np.ndarray]]:
        return lambda: {"camera": read_video(path, hz=hz, size=(h, w))[0]}

    return write_scenes(out, [(str(f), build(f)) for f in files], grid=grid or grid_preset("tiny"), hz=hz,
                        generator=generator, sensors={"camera": {"height": h, "width": w}},
                        skip_bad=skip_bad, report=report)


def write_video(frames: np.ndarray, path: str | Path, *, fps: float, crf: int = 18) -> Path:
    """uint8 [T, H, W, 3] frames -> an H.264 MP4 at ``fps`` (temporary name, then rename); the path."""
    av = _import_av()
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise DrivewmError(f"{path}: frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {list(frames.shape)}")
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:  # 4:2:0 chroma halves both axes
        raise DrivewmError(f"{path}: H.264 in yuv420p needs an even height and width, got {H} x {W}")
    if not 0 <= crf <= 51:
        raise DrivewmError(f"crf must be in 0..51 (lower is better quality), got {crf}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))  # flush the encoder's delayed frames
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def export_video(store: str | Path, out: str | Path, *, episode: int = 0, crf: int = 18) -> Path:
    """The ``camera`` frames of one episode (position in the store) as an MP4 at the store's rate."""
    from drivewm.data.store import EpisodeStore

    st = EpisodeStore(store)
    if not 0 <= episode < len(st):
        raise DrivewmError(f"{store}: episode {episode} out of range; the store has {len(st)} episodes")
    if "camera" not in st.episodes[episode]["arrays"]:
        raise DrivewmError(f"{store}: episode {episode} has no 'camera' key; it has {sorted(st.episodes[episode]['arrays'])}")
    return write_video(st.read(episode, "camera"), out, fps=st.hz, crf=crf)
