import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVEWM = str(Path(sys.executable).parent / "drivewm")


def _run(*args, cwd=ROOT):
    return subprocess.run([DRIVEWM, *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_commands_and_options():
    out = _run("--help")
    assert out.returncode == 0 and "train" in out.stdout and "data" in out.stdout and "eval" in out.stdout
    train_help = _run("train", "--help")
    assert "--resume" in train_help.stdout and "--config" in train_help.stdout


def test_train_toy_from_yaml_with_overrides(tmp_path):
    out = _run("train", "configs/toy.yaml", f"run_dir={tmp_path / 'r'}", "train.steps=12", "model.depth=3")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "checkpoints" / "step_00000012" / "model.safetensors").exists()
    assert "depth: 3" in (tmp_path / "r" / "config.yaml").read_text()


def test_train_config_error_exit_code_and_message(tmp_path):
    out = _run("train", "configs/toy.yaml", "model.widht=3", f"run_dir={tmp_path}")
    assert out.returncode == 2
    assert "unknown key 'model.widht'" in out.stderr
    kind = _run("train", "tokenizer", "--config", "configs/toy.yaml", f"run_dir={tmp_path}")
    assert kind.returncode == 2 and "not a tokenizer" in kind.stderr
