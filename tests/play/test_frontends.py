"""The front ends of `drivewm play` on the headless session: the web page (a real server on a free port), the
terminal (keys through a pseudo-terminal, the frame as half blocks), and the command with a replayed script."""

from __future__ import annotations

import io
import os
import threading
import urllib.error
import urllib.request

import imageio.v3 as iio
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from drivewm.cli import app
from drivewm.evaluation import load_forecaster
from drivewm.play import Session
from drivewm.play.render import UPPER_HALF, enlarge, fit, half_blocks
from drivewm.play.terminal import keys_mode, play_terminal, read_key
from drivewm.play.web import PlayServer


def _post(url: str, key: str):
    return urllib.request.urlopen(urllib.request.Request(url + "key", data=key.encode(), method="POST"), timeout=30)


def test_web_page_posts_keys_and_answers_with_the_next_frame(store, voxel_run):
    session = Session(load_forecaster(voxel_run), store, past=3)
    server = PlayServer(session, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = urllib.request.urlopen(server.url, timeout=30)
        html = page.read().decode()
        assert page.headers["Content-Type"].startswith("text/html")
        assert '<img id="frame" src="/frame.png"' in html and 'fetch("/key"' in html
        assert "http:" not in html and "https:" not in html  # no external assets
        shown = iio.imread(urllib.request.urlopen(server.url + "frame.png", timeout=30).read())
        assert np.array_equal(shown, enlarge(session.image()))

        answer = _post(server.url, "w")
        assert answer.headers["Content-Type"] == "image/png"
        assert session.steps == 1 and session.controls.action == (1.0, 0.0)
        assert np.array_equal(iio.imread(answer.read()), enlarge(session.image()))
        assert answer.headers["X-Drivewm-Status"].startswith("step 1 ")
        _post(server.url, "left")
        assert session.steps == 2 and session.controls.steer == pytest.approx(0.1)

        with pytest.raises(urllib.error.HTTPError) as bad:
            _post(server.url, "x")
        assert bad.value.code == 400 and "unknown key 'x'" in bad.value.read().decode()
        assert session.steps == 2

        assert _post(server.url, "q").read().decode().strip() == "stopped"
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        server.shutdown()
        server.server_close()


def test_terminal_reads_keys_and_arrows_from_a_tty(store, voxel_run):
    session = Session(load_forecaster(voxel_run), store, past=3)
    master, slave = os.openpty()
    hung_up = []

    def hang_up() -> None:  # a loop that waits for keys that never come ends, as at the end of input
        hung_up.append(True)
        os.close(master)

    watchdog = threading.Timer(30.0, hang_up)
    watchdog.start()
    try:
        os.write(master, b"w\x1b[Aa\x1b[Dzq")  # typed ahead: w, up, a, left, an unknown key, quit
        out = io.StringIO()
        console = Console(file=out, width=60, height=30, force_terminal=True, color_system="truecolor")
        assert play_terminal(session, fd=slave, console=console) == 4
        assert session.steps == 4 and session.controls.action == (2.0, pytest.approx(0.2))
        shown = out.getvalue()
        assert UPPER_HALF in shown and "unknown key 'z'" in shown and "step 4 " in shown
        with keys_mode(slave):  # the loop gave the terminal's settings back; read as it reads
            os.write(master, b"\x1b[C\x1bOB.")
            assert [read_key(slave, 1.0) for _ in range(3)] == ["right", "down", "."]
            assert read_key(slave, 0.01) is None
    finally:
        watchdog.cancel()
        if not hung_up:
            os.close(master)
        os.close(slave)
    assert not hung_up


def test_half_blocks_colour_the_top_pixel_over_the_bottom_one():
    image = np.array([[[255, 0, 0], [0, 0, 255]],
                      [[0, 255, 0], [10, 20, 30]]], np.uint8)  # [2, 2, 3]
    text = half_blocks(image)
    assert text.plain == UPPER_HALF * 2 + "\n"
    styles = [span.style for span in text.spans]
    assert [(s.color.triplet.hex, s.bgcolor.triplet.hex) for s in styles] == [("#ff0000", "#00ff00"),
                                                                              ("#0000ff", "#0a141e")]
    wide = np.zeros((64, 128, 3), np.uint8)
    assert fit(wide, 62, 40).shape == (30, 62, 3)  # the width limits: 62 columns, 31 rows made even
    assert fit(wide, 200, 20).shape == (20, 40, 3)  # the height limits


def test_play_command_replays_a_script_and_records_it(store, voxel_run, camera_store, tmp_path):
    runner = CliRunner()
    gif = tmp_path / "drive.gif"
    res = runner.invoke(app, ["play", str(voxel_run), f"data={store}", "script=wwad.", f"record={gif}", "past=3"])
    assert res.exit_code == 0, res.output
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 1 + 5 and "step 5 " in res.output

    res = runner.invoke(app, ["play", str(voxel_run), f"data={store}", "script=wwxd"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "drivewm: error: script: unknown key 'x' at position 2; keys: w/up accelerate, s/down brake, a/left steer "
        "left, d/right steer right, . hold, r reset, q quit"]
    res = runner.invoke(app, ["play", str(voxel_run), f"data={camera_store}", "script=w"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "forecasts 'occ' frames (occupancy), but" in res.output
    res = runner.invoke(app, ["play", str(voxel_run), f"data={store}", "speed=3"])
    assert res.exit_code == 2 and "speed" in res.output


def test_play_command_names_a_missing_run_or_store(store, voxel_run, tmp_path):
    runner = CliRunner()
    for args, name in (([str(tmp_path / "no_run"), f"data={store}"], "no_run"),
                       ([str(voxel_run), f"data={tmp_path / 'no_store'}"], "no_store"),
                       ([str(voxel_run)], "data=DIR")):
        res = runner.invoke(app, ["play", *args, "script=w"])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and name in lines[0], res.output
