import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from drivewm.data.config import DataConfig
from drivewm.sim.generate import episode_seed, generate_store, parse_shard
from drivewm.data.manifest import StoreError, read_manifest
from drivewm.data.merge import merge_stores
from drivewm.data.store import EpisodeStore
from drivewm.data.windows import WindowDataset

RUN = dict(preset="micro", episodes=3, frames=3, seed=7)


def checksums(path):
    return [(e["index"], e["checksum"]) for e in read_manifest(path)["episodes"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "ref"
    generate_store(path, **RUN, workers=1)
    return path


def test_seed_rule_and_shard_parsing():
    assert episode_seed(7, 3) == episode_seed(7, 3) != episode_seed(7, 4) != episode_seed(8, 3)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1-2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_generated_store_is_complete_and_windows_read(reference):
    st = EpisodeStore(reference)
    assert len(st) == 3 and all(r["frames"] == 3 for r in st.episodes)
    assert [r["seed"] for r in st.episodes] == [episode_seed(7, i) for i in range(3)]
    for i in range(3):
        st.verify(i)
    m = read_manifest(reference)
    assert m["generator"]["preset"] == "micro" and m["generator"]["settings"]["grid"] == "micro"
    assert m["grid"]["shape"] == [32, 32, 4] and m["sensors"]["lidar"]["beams"] == 8
    ds = WindowDataset(DataConfig(path=str(reference), past=2, future=1, keys=["occ", "agents", "lidar"]), "train")
    item = ds[len(ds) - 1]
    assert item["agents"].shape[1] == ds.agent_slots and item["lidar_count"].min() > 0


def test_same_bytes_whatever_workers_and_shards(reference, tmp_path):
    generate_store(tmp_path / "w2", **RUN, workers=2)
    assert checksums(tmp_path / "w2") == checksums(reference)
    for i in range(2):
        generate_store(tmp_path / f"shard{i}", **RUN, shard=(i, 2))
    assert [e[0] for e in checksums(tmp_path / "shard0")] == [0, 2]  # disjoint episode sets
    assert [e[0] for e in checksums(tmp_path / "shard1")] == [1]
    merge_stores(tmp_path / "merged", [tmp_path / "shard0", tmp_path / "shard1"])
    assert checksums(tmp_path / "merged") == checksums(reference)
    np.testing.assert_array_equal(EpisodeStore(tmp_path / "merged").read(2, "occ"), EpisodeStore(reference).read(2, "occ"))


def test_resume_after_interrupt(reference, tmp_path):
    out = tmp_path / "r"

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_store(out, **RUN, on_progress=interrupt)
    assert len(read_manifest(out)["episodes"]) == 2  # what was complete is listed and readable
    assert len(EpisodeStore(out)) == 2
    stale = out / "episodes" / ".tmp-ep_000002-deadbeef"
    stale.mkdir()
    (stale / "zarr.json").write_text("{half")
    seen = []
    generate_store(out, **RUN, on_progress=lambda d, t: seen.append(d))
    assert seen[0] == 2 and not stale.exists()
    assert checksums(out) == checksums(reference)
    with pytest.raises(StoreError, match="holds a different generation"):
        generate_store(out, **{**RUN, "frames": 4})


def test_skip_bad_reports_never_silently(tmp_path, monkeypatch):
    import drivewm.sim

    real = drivewm.sim.simulate_episode

    def flaky(cfg, seed, frames):
        arrays = real(cfg, seed, frames)
        if seed == episode_seed(7, 2):  # the last episode, so the failing run wrote 0 and 1 first
            arrays["ego_pose"][1, 2] = np.nan
        return arrays

    monkeypatch.setattr(drivewm.sim, "simulate_episode", flaky)
    with pytest.raises(StoreError, match=r"ep_000002 \(seed \d+\).*'ego_pose'.*NaN.*--skip-bad"):
        generate_store(tmp_path / "a", **RUN)
    assert len(EpisodeStore(tmp_path / "a")) == 2  # nothing already written is lost
    seen = []
    m = generate_store(tmp_path / "b", **RUN, skip_bad=True, report=seen.append)
    assert [e["index"] for e in m["episodes"]] == [0, 1]
    assert [s["index"] for s in read_manifest(tmp_path / "b")["skipped"]] == [2] and "ep_000002" in seen[0]


def test_cli_generate_inspect_png(tmp_path):
    import imageio.v3 as iio

    from drivewm.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(app, ["data", "generate", "--preset", "micro", "--episodes", "2", "--frames", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["data", "inspect", str(out), "--png", str(tmp_path / "f.png"), "--frame", "2", "--verify"])
    assert r.exit_code == 0, r.output
    assert "episodes" in r.output and "driveable_surface" in r.output and "lidar points / frame" in r.output
    img = iio.imread(tmp_path / "f.png")
    assert img.ndim == 3 and img.shape[1] > 2 * img.shape[0]  # three panels side by side
    m = json.loads((out / "manifest.json").read_text())
    m["episodes"][0]["checksum"] = "sha256:0"
    (out / "manifest.json").write_text(json.dumps(m))
    r = runner.invoke(app, ["data", "inspect", str(out)])
    assert r.exit_code == 2 and "ep_000000" in r.output and "checksum" in r.output


def test_expert_noise_recorded_and_changes_actions(tmp_path, reference):
    noisy = tmp_path / "noisy"
    generate_store(noisy, **RUN, expert_noise=1.0)
    assert read_manifest(noisy)["generator"]["settings"]["expert_noise"] == 1.0
    assert read_manifest(reference)["generator"]["settings"]["expert_noise"] == 0.0
    clean_a, noisy_a = EpisodeStore(reference).read(0, "action"), EpisodeStore(noisy).read(0, "action")
    assert not np.allclose(clean_a, noisy_a)  # the OU noise moves the executed actions
    with pytest.raises(StoreError, match="different generation"):  # resuming with other noise is refused
        generate_store(noisy, **RUN)
    with pytest.raises(ValueError, match="expert_noise"):
        generate_store(tmp_path / "bad", **RUN, expert_noise=-1.0)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids |= {int(k) for k in (task / "children").read_text().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status is left


def _episodes(out: Path) -> set[str]:
    return {d.name for d in (out / "episodes").glob("ep_*")}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the workers")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_parent(tmp_path, sig):
    out = tmp_path / "s"
    # Episodes of 100 frames take about a second each: killed, both workers are mid-episode.
    code = f"from drivewm.sim.generate import generate_store; generate_store({str(out)!r}, preset='micro', episodes=12, frames=100, workers=2)"
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (out / "episodes").is_dir() or not _episodes(out):  # the workers are running episodes
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert len(workers) >= 2
        parent.send_signal(sig)
        parent.wait(timeout=30)
        written = _episodes(out)
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)]
        # A worker that outlived its parent would have finished its episode: none may appear.
        assert _episodes(out) == written
    finally:
        parent.kill()
    if sig == signal.SIGTERM:  # a clean stop: the manifest lists the episodes written
        assert parent.returncode == 128 + signal.SIGTERM
        assert {e["name"] for e in read_manifest(out)["episodes"]} == written
