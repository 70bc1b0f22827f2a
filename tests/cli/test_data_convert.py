"""`drivewm data convert video` and `data export video` from the command line: a store that verifies, an MP4 that
reads back at the store's rate, and a bad size that is one line with exit code 2."""

from __future__ import annotations

import numpy as np

from drivewm.data.store import EpisodeStore
from drivewm.data.video import read_video, write_video


def _frames(t: int = 12, h: int = 32, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 4 + k * 8) % 256, (y * 8) % 256, np.full_like(x, 90)], -1)
                     for k in range(t)]).astype(np.uint8)


def test_convert_video_then_verify_and_export(drivewm, tmp_path):
    write_video(_frames(), tmp_path / "clip.mp4", fps=4.0)
    res = drivewm("data", "convert", "video", "clip.mp4", "--out", "store", "--hz", "2", "--size", "16x32")
    assert res.exit_code == 0, res.output
    assert "store: 1 episodes, 0 skipped" in res.stdout
    st = EpisodeStore(tmp_path / "store")
    assert st.hz == 2.0 and st.read(0, "camera").shape == (6, 16, 32, 3)

    res = drivewm("data", "inspect", "store", "--verify")
    assert res.exit_code == 0, res.output

    res = drivewm("data", "export", "video", "store", "out.mp4")
    assert res.exit_code == 0, res.output
    frames, fps = read_video(tmp_path / "out.mp4", hz=2.0)
    assert fps == 2.0 and frames.shape == (6, 16, 32, 3)


def test_convert_video_bad_size_is_one_line(drivewm, tmp_path):
    write_video(_frames(), tmp_path / "clip.mp4", fps=4.0)
    res = drivewm("data", "convert", "video", "clip.mp4", "--out", "store", "--size", "16by32")
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "--size" in res.stderr
    assert not (tmp_path / "store").exists()
