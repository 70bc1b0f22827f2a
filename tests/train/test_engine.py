import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.engine import NonFiniteError
from drivewm.report.results import read_metrics
from drivewm.train.rundir import ConfigChangedError, RunDirError
from drivewm.train.run import run_training
from drivewm.train.toy import ToyConfig

JOB = str(Path(__file__).with_name("toy_job.py"))
VENV_BIN = Path(sys.executable).parent


def _losses(run_dir) -> list[float]:
    return [m["loss"] for m in read_metrics(run_dir) if "loss" in m]


def _cfg(run_dir, steps=40, **train) -> RunConfig:
    t = dict(steps=steps, batch_size=16, lr=3e-3, warmup_steps=5, ckpt_every=20, log_every=1, progress=False, seed=3)
    t.update(train)
    return RunConfig(model=ToyConfig(samples=256), train=TrainConfig(**t), run_dir=str(run_dir))


def test_loss_decreases_and_seed_is_bit_identical(tmp_path):
    run_training(_cfg(tmp_path / "a"))
    run_training(_cfg(tmp_path / "b"))
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(a) == 40
    assert a == b  # bit-identical, not merely close
    assert sum(a[-5:]) < 0.7 * sum(a[:5])
    run_training(_cfg(tmp_path / "c", seed=4))
    assert _losses(tmp_path / "c") != a


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run([sys.executable, JOB, str(full), "35"], check=True)
    killed = subprocess.run([sys.executable, JOB, str(cut), "35", "--kill-at", "27"])
    assert killed.returncode == -9  # really killed with SIGKILL mid-run
    assert json.loads((cut / "checkpoints" / "index.json").read_text())["latest"] == "step_00000020"
    assert max(m["step"] for m in read_metrics(cut)) == 26  # it logged past its last checkpoint
    subprocess.run([sys.executable, JOB, str(cut), "35", "--resume"], check=True)
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 36))
    assert _losses(cut) == _losses(full)


def test_fresh_run_in_a_used_directory_refuses_unless_overwrite(tmp_path):
    run = tmp_path / "r"
    run_training(_cfg(run, steps=5))
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="--resume .*--overwrite"):
        run_training(_cfg(run, steps=5, seed=4))
    assert (run / "metrics.jsonl").read_text() == before  # nothing of the old run changed
    run_training(_cfg(run, steps=5, seed=4), overwrite=True)
    run_training(_cfg(tmp_path / "fresh", steps=5, seed=4))
    assert [m["step"] for m in read_metrics(run) if "loss" in m] == [1, 2, 3, 4, 5]  # one run's lines only
    assert _losses(run) == _losses(tmp_path / "fresh")
    with pytest.raises(RunDirError, match="no such run directory to resume"):  # a mistyped path
        run_training(_cfg(tmp_path / "typo", steps=5), resume=True)
    assert not (tmp_path / "typo").exists()


def test_kill_before_first_checkpoint_then_resume_starts_at_zero(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run([sys.executable, JOB, str(full), "12"], check=True)
    killed = subprocess.run([sys.executable, JOB, str(cut), "12", "--kill-at", "6"])
    assert killed.returncode == -9 and not (cut / "checkpoints").exists()
    assert len(read_metrics(cut)) == 5  # killed inside step 6
    # A fresh start would mix two runs' lines: refused.
    refused = subprocess.run([sys.executable, JOB, str(cut), "12"], capture_output=True, text=True)
    assert refused.returncode != 0 and "metrics.jsonl exists" in refused.stderr
    resumed = subprocess.run([sys.executable, JOB, str(cut), "12", "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint to resume from; starting from step 0" in resumed.stderr
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 13))
    assert _losses(cut) == _losses(full)


def test_resume_refuses_a_changed_setting_unless_allowed(tmp_path):
    run = tmp_path / "r"
    run_training(_cfg(run, steps=10, ckpt_every=5))
    config_before, metrics_before = (run / "config.yaml").read_text(), (run / "metrics.jsonl").read_text()
    with pytest.raises(ConfigChangedError, match=r"train\.lr: 0\.003 in the run, 0\.01 now; pass --allow-change train\.lr"):
        run_training(_cfg(run, steps=10, lr=0.01), resume=True)
    with pytest.raises(ConfigChangedError, match=r"model\.hidden: 64 in the run, 32 now"):
        cfg = _cfg(run, steps=10)
        cfg.model.hidden = 32
        run_training(cfg, resume=True)
    assert (run / "metrics.jsonl").read_text() == metrics_before
    # Settings that only decide what is logged or kept change freely; others with --allow-change.
    run_training(_cfg(run, steps=14, ckpt_every=5, lr=0.01, log_every=2), resume=True, allow_change=["train.lr", "train.steps"])
    assert (run / "config.yaml").read_text() == config_before  # the run's first config is kept
    segments = yaml.safe_load((run / "config.segments.yaml").read_text())
    assert segments == [
        {"start_step": 0},
        {"start_step": 10, "changes": {"train.log_every": [1, 2], "train.lr": [0.003, 0.01], "train.steps": [10, 14]}},
    ]
    state = json.loads((run / "checkpoints" / "step_00000014" / "state.json").read_text())
    assert state["segments"] == segments
    assert "lr: 0.01" in (run / "checkpoints" / "step_00000014" / "config.yaml").read_text()


def test_an_exploding_update_is_never_checkpointed(tmp_path):
    fresh = tmp_path / "fresh"
    with pytest.raises(NonFiniteError, match=r"step 1 of 3: non-finite or exploded weights \(max \|w\| = .*\); stopped without saving it\. Last good checkpoint: none yet"):
        run_training(_cfg(fresh, steps=3, ckpt_every=1, log_every=100, lr=1e20))  # checked as it is saved
    assert not (fresh / "checkpoints").exists()
    run = tmp_path / "r"
    run_training(_cfg(run, steps=10, ckpt_every=5))
    with pytest.raises(NonFiniteError, match=r"step 11 of 20: .*exploded.*/step_00000010 \(10 completed steps\)"):
        run_training(_cfg(run, steps=20, ckpt_every=1, lr=1e20), resume=True, allow_change=["train.lr", "train.steps"])
    assert json.loads((run / "checkpoints" / "index.json").read_text())["latest"] == "step_00000010"
    from drivewm.train.checkpoint import load_run

    _, model = load_run(run, "latest")
    assert max(float(p.detach().abs().max()) for p in model.parameters()) < 100


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    run = tmp_path / "nan"
    proc = subprocess.run([sys.executable, JOB, str(run), "30", "--nan-at", "23"], capture_output=True, text=True)
    assert proc.returncode != 0
    # The 24th step (0-based 23) fails; checkpoints are named by completed steps, so is the step.
    assert "step 24 of 30: non-finite loss" in proc.stderr
    assert "Last good checkpoint: " in proc.stderr and "step_00000020 (20 completed steps)" in proc.stderr
    idx = json.loads((run / "checkpoints" / "index.json").read_text())
    assert idx["latest"] == "step_00000020"
    from drivewm.train.checkpoint import load_run

    _, model = load_run(run, "latest")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_torchrun_ddp_matches_single_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, JOB, str(single), "12", "--dropout", "0"], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", JOB, str(ddp), "12", "--dropout", "0"],
        check=True,
        env=env,
        capture_output=True,
    )
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 12
    # Same global batch, gradients averaged over 2 x 8 samples instead of 16: equal up to float rounding.
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5


def test_loader_workers_give_the_same_batches(tmp_path):
    run_training(_cfg(tmp_path / "main", steps=6))
    run_training(_cfg(tmp_path / "workers", steps=6, num_workers=2))
    assert _losses(tmp_path / "workers") == _losses(tmp_path / "main")


def test_a_corrupt_checkpoint_index_is_a_one_line_error(tmp_path):
    from drivewm.train.checkpoint import CheckpointError

    run = tmp_path / "r"
    run_training(_cfg(run, steps=5))
    (run / "checkpoints" / "index.json").write_text('{"latest": "step_0')
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=r"checkpoints/index\.json: not valid JSON") as err:
        run_training(_cfg(run, steps=5), resume=True)
    assert "\n" not in str(err.value) and (run / "metrics.jsonl").read_text() == metrics


def test_resume_drops_a_metrics_line_cut_by_a_kill(tmp_path):
    run = tmp_path / "r"
    run_training(_cfg(run, steps=10, ckpt_every=5))
    before = [(m["step"], m.get("loss")) for m in read_metrics(run)]
    # As if killed while writing step 8's line, with step 5 its last checkpoint.
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:7]) + "\n" + lines[7][:15])
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    (run / "checkpoints" / "index.json").write_text(json.dumps({**index, "latest": "step_00000005"}))
    run_training(_cfg(run, steps=10, ckpt_every=5), resume=True)
    assert [(m["step"], m.get("loss")) for m in read_metrics(run)] == before


def test_a_non_finite_gradient_with_a_finite_loss_is_stopped_before_the_update(tmp_path):
    from drivewm.train.engine import Trainer
    from drivewm.train.toy import ToyForecaster, toy_datasets

    class SqrtAtZero(ToyForecaster):
        def loss(self, batch):
            out = super().loss(batch)
            # d sqrt(u)/du is infinite at u = 0: the loss stays finite, the gradient is NaN.
            out["loss"] = out["loss"] + torch.sqrt(self.net[0].bias * 0).sum()
            return out

    model = SqrtAtZero(ToyConfig(samples=64))
    before = [p.detach().clone() for p in model.parameters()]
    train, _ = toy_datasets(model.cfg, 0)
    trainer = Trainer(model, train, TrainConfig(steps=3, batch_size=8, progress=False, device="cpu"), tmp_path / "r")
    with pytest.raises(NonFiniteError, match="step 1 of 3: non-finite gradient norm nan"):
        trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not updated


@pytest.mark.parametrize(
    "setting, words",
    [
        (dict(steps=0), "train.steps must be > 0, got 0"),
        (dict(steps=-5), "train.steps must be > 0, got -5"),
        (dict(log_every=0), "train.log_every must be > 0"),
        (dict(precision="fp16"), "train.precision must be one of 'auto', 'bf16', 'fp32', got 'fp16'"),
        (dict(parallel="zero"), "train.parallel must be one of 'ddp', 'fsdp'"),
        (dict(batch_size=15, grad_accum=2), "train.batch_size=15 must be divisible by processes x grad_accum = 1 x 2"),
        (dict(device="tpu"), "train.device must be 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_a_setting_the_loop_cannot_run_is_refused_before_the_run_dir_is_touched(tmp_path, setting, words):
    from drivewm.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(words)):
        run_training(_cfg(tmp_path / "r", **setting))
    assert not (tmp_path / "r").exists()


def test_a_corrupt_checkpoint_index_is_named_when_loading_a_run(tmp_path):
    from drivewm.train.checkpoint import CheckpointError, load_run

    run = tmp_path / "r"
    run_training(_cfg(run, steps=2))
    (run / "checkpoints" / "index.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/index\.json: not valid JSON"):
        load_run(run)


def test_a_failed_restore_leaves_the_logs_whole(tmp_path):
    from drivewm.train.checkpoint import CheckpointError

    run = tmp_path / "r"
    run_training(_cfg(run, steps=10, ckpt_every=5))
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    (run / "checkpoints" / "index.json").write_text(json.dumps({**index, "latest": "step_00000005"}))
    (run / "checkpoints" / "step_00000005" / "optim.safetensors").write_bytes(b"truncated")
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=r"step_00000005/optim\.safetensors: not a readable safetensors file"):
        run_training(_cfg(run, steps=10, ckpt_every=5), resume=True)
    assert (run / "metrics.jsonl").read_text() == metrics  # steps 6-10 are not cut for a restore that failed
