"""`drivewm sim preview` / `drive` end to end through the real CLI."""

from __future__ import annotations

from typer.testing import CliRunner

from drivewm.cli import app


def test_preview_writes_a_png_and_drive_prints_stats(tmp_path):
    runner = CliRunner()
    out = tmp_path / "p.png"
    res = runner.invoke(app, ["sim", "preview", "--preset", "micro", "--frames", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["sim", "drive", "--preset", "micro", "--seeds", "1", "--steps", "4"])
    assert res.exit_code == 0 and "seed 0: route" in res.output and "collisions 0" in res.output
    res = runner.invoke(app, ["sim", "preview", "--preset", "huge"])
    assert res.exit_code == 2 and "unknown sim preset 'huge'" in res.output
