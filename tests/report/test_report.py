import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drivewm.report import environment_info, read_results, write_result
from drivewm.report.browser import check_in_browser, find_chromium
from drivewm.report.html import build_report


def _make_run(root: Path, mious) -> Path:
    import imageio.v2 as imageio

    write_result(root, "forecast", title="Forecast", protocol="OccWorld", columns=["model", "mIoU 3 s"],
                 rows=[["copy last", mious[0]], ["gpt", mious[1]]], images=["frames.gif"])
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(4)]
    imageio.mimsave(root / "results" / "frames.gif", frames, duration=0.2)
    (root / "environment.json").write_text(json.dumps(environment_info(seed=0)))
    run = root / "train_run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "rankme": s}) + "\n" for s in range(1, 6)))
    return root


def test_results_round_trip_and_row_check(tmp_path):
    write_result(tmp_path, "t", title="T", columns=["a", "b"], rows=[[1, float("nan")]])
    (doc,) = read_results(tmp_path)
    assert doc["rows"] == [[1, "nan"]] and doc["title"] == "T"
    with pytest.raises(ValueError, match="has 1 cells for 2 columns"):
        write_result(tmp_path, "bad", title="T", columns=["a", "b"], rows=[[1]])


def test_report_is_self_contained_and_compares_runs(tmp_path):
    a = _make_run(tmp_path / "a", [0.1, 0.2])
    (tmp_path / "b").mkdir()
    b = _make_run(tmp_path / "b", [0.1, 0.3])
    out = build_report([a, b], tmp_path / "r.html")
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched when viewed
    assert text.count("data:image/gif;base64") == 2 and "data:image/png;base64" in text
    assert "<td>a</td>" in text and "<td>b</td>" in text and "0.3" in text


def test_missing_image_is_named(tmp_path):
    write_result(tmp_path, "x", title="X", columns=["a"], rows=[[1]], images=["nope.png"])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        build_report([tmp_path], tmp_path / "r.html")


def _need_chromium():
    if find_chromium() is None:
        if shutil.which("apt-get") is None:
            pytest.skip("neither Chromium nor apt-get exists here: the browser check cannot run")
        raise AssertionError("Chromium is missing but apt-get exists: `make test` installs it (Debian package chromium)")


def test_report_in_real_browser(tmp_path):
    _need_chromium()
    run = _make_run(tmp_path / "run", [0.1, 0.2])
    html = build_report([run], run / "report.html")
    check = check_in_browser(html, tmp_path / "shot.png")
    assert check.screenshot is not None and check.screenshot.stat().st_size > 5000
    assert check.images >= 2 and check.broken_images == 0
    assert check.console == []


def test_browser_check_catches_broken_image(tmp_path):
    _need_chromium()
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="data:image/png;base64,AAAA"><img src="missing.png"></body></html>')
    check = check_in_browser(page, tmp_path / "shot.png")
    assert check.images == 2 and check.broken_images == 2
