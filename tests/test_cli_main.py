"""The installed `drivewm` script end to end, as a subprocess from a directory that is not the repository."""

import subprocess
import sys
from pathlib import Path

DRIVEWM = str(Path(sys.executable).parent / "drivewm")


def _run(*args, cwd):
    return subprocess.run([DRIVEWM, *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands_and_options(tmp_path):
    out = _run("--help", cwd=tmp_path)
    assert out.returncode == 0 and "train" in out.stdout and "data" in out.stdout and "eval" in out.stdout
    train_help = _run("train", "--help", cwd=tmp_path)
    assert "--resume" in train_help.stdout and "--config" in train_help.stdout


def test_train_toy_preset_from_any_directory_with_overrides(tmp_path):
    out = _run("train", "toy.yaml", "run_dir=r", "train.steps=12", "model.depth=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "checkpoints" / "step_00000012" / "model.safetensors").exists()
    assert "depth: 3" in (tmp_path / "r" / "config.yaml").read_text()


def test_train_config_error_is_one_line_with_exit_code_2(tmp_path):
    out = _run("train", "toy.yaml", "model.widht=3", f"run_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [out.stderr.strip()] and "unknown key 'model.widht'" in out.stderr
    kind = _run("train", "tokenizer", "--config", "toy.yaml", f"run_dir={tmp_path}", cwd=tmp_path)
    assert kind.returncode == 2 and "not a tokenizer" in kind.stderr
    debug = _run("--debug", "train", "toy.yaml", "model.widht=3", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_module_entry_point_and_version(tmp_path):
    out = subprocess.run([sys.executable, "-m", "drivewm.cli", "--version"], capture_output=True, text=True, cwd=tmp_path)
    import drivewm

    assert out.returncode == 0 and out.stdout.strip() == f"drivewm {drivewm.__version__}"
