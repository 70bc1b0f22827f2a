import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from drivewm.report.browser import check_in_browser, find_chromium
from drivewm.report.results import read_results

DRIVEWM = str(Path(sys.executable).parent / "drivewm")


def _finite_numbers(rows):
    for row in rows:
        for v in row:
            if isinstance(v, float):
                yield v


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    # From a directory that is not the repository: the presets come from the package.
    proc = subprocess.run([DRIVEWM, "demo", "--preset", "micro", "--minutes", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_writes_report_with_finite_numbers(demo_out):
    out, stdout = demo_out
    assert (out / "report.html").stat().st_size > 10_000
    docs = {d["_name"]: d for d in read_results(out)}
    for name in ("data", "tokenizer", "forecast", "headline", "forecast_classes", "plan_open_loop", "drive", "stage_times"):
        assert name in docs, f"missing result {name}"
    for name in ("forecast", "tokenizer", "drive"):
        nums = list(_finite_numbers(docs[name]["rows"]))
        assert nums and all(math.isfinite(v) for v in nums), name
    forecast_rows = {r[0] for r in docs["forecast"]["rows"]}
    assert {"copy_last", "ego_warp_copy_last"} <= forecast_rows
    assert any(r.startswith("voxel_unet") for r in forecast_rows)  # the learned reference without tokens
    assert "baselines on mIoU at 3 s" in stdout  # the demo says plainly whether the models beat the baselines
    stages = json.loads((out / "stages.json").read_text())
    assert all(s["status"] == "done" for s in stages.values())
    # The report times every stage and shows the best model's forecast beside the truth and the best baseline.
    assert [r[0] for r in docs["stage_times"]["rows"]] == [*stages, "total"]
    assert docs["headline"]["images"] == ["best/forecast.png", "best/forecast.gif"]
    panels = (out / "forecast" / "results" / "best" / "forecast_gif_panels.txt").read_text()
    truth, baseline, model = panels.removeprefix("left to right: ").strip().split(", ", 2)
    assert truth == "truth" and baseline in forecast_rows and model.startswith(("occworld", "voxel_unet"))
    assert "car" in docs["forecast_classes"]["columns"]


def test_demo_rerun_reuses_stages(demo_out):
    out, _ = demo_out
    proc = subprocess.run([DRIVEWM, "demo", "--preset", "micro", "--minutes", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=out.parent)
    assert proc.returncode == 0
    assert proc.stdout.count("cached") >= 9


def test_demo_report_in_browser(demo_out, tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (the report tests say whether it should be)")
    out, _ = demo_out
    check = check_in_browser(out / "report.html", tmp_path / "demo.png")
    assert check.broken_images == 0 and check.images >= 8 and check.console == []


def test_demo_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run([DRIVEWM, "demo", "--preset", "micro", "--out", str(blocker / "out")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "not writable" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_scaling_sweep_on_the_demo_output(demo_out, tmp_path):
    out, _ = demo_out
    res = tmp_path / "scaling"
    proc = subprocess.run(
        [DRIVEWM, "scaling", "--from-demo", str(out), "--out", str(res), "--widths", "8,16,32,64", "--steps", "4",
         "model.vocab_size=64", "model.token_shape=[8,8]", "model.depth=1", "model.heads=2", "train.batch_size=4"],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "exponent b =" in proc.stdout
    (doc,) = [d for d in read_results(res) if d["_name"] == "scaling"]
    params = [r[1] for r in doc["rows"]]
    assert params == sorted(params) and len(set(params)) == 4  # four distinct sizes, growing with width
    assert all(math.isfinite(r[2]) for r in doc["rows"])
    assert (res / "results" / "scaling.png").stat().st_size > 1000
