import json
import os

import pytest

from drivewm.demo.stages import StageRunner


def test_cached_stage_is_skipped_and_config_change_reruns(tmp_path):
    calls = []

    def fn(d, resume):
        calls.append(resume)
        (d / "out.txt").write_text("x")
        return {"value": len(calls)}

    r = StageRunner(tmp_path, echo=lambda m: None)
    assert r.run("a", {"steps": 1}, fn) == {"value": 1}
    r2 = StageRunner(tmp_path, echo=lambda m: None)
    assert r2.run("a", {"steps": 1}, fn) == {"value": 1} and len(calls) == 1
    msgs = []
    r3 = StageRunner(tmp_path, echo=msgs.append)
    assert r3.run("a", {"steps": 2}, fn) == {"value": 2}
    assert any("stale cache" in m for m in msgs)


def test_interrupted_stage_resumes(tmp_path):
    def boom(d, resume):
        (d / "partial").write_text("half")
        raise KeyboardInterrupt

    r = StageRunner(tmp_path, echo=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        r.run("train", {"k": 1}, boom)
    assert json.loads((tmp_path / "stages.json").read_text())["train"]["status"] == "running"
    seen = []
    msgs = []
    r2 = StageRunner(tmp_path, echo=msgs.append)
    r2.run("train", {"k": 1}, lambda d, resume: seen.append((resume, (d / "partial").exists())) or {})
    assert seen == [(True, True)] and any("continuing" in m for m in msgs)


def test_fresh_clears_and_unwritable_dir_is_clear(tmp_path):
    StageRunner(tmp_path, echo=lambda m: None).run("a", {}, lambda d, r: {})
    StageRunner(tmp_path, fresh=True, echo=lambda m: None)
    assert not (tmp_path / "a").exists()
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root ignores permission bits: use a path under a file instead
        blocker = tmp_path / "file"
        blocker.write_text("")
        ro = blocker / "sub"
    with pytest.raises(PermissionError, match="not writable"):
        StageRunner(ro, echo=lambda m: None)
