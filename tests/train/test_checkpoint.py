import pickle
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from drivewm.errors import CheckpointError
from drivewm.train.checkpoint import find_checkpoint, load_run
from drivewm.train.config import RunConfig, TrainConfig
from drivewm.train.run import run_training
from drivewm.train.toy import ToyConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = RunConfig(
        model=ToyConfig(samples=64),
        train=TrainConfig(steps=6, batch_size=8, ckpt_every=3, log_every=1, progress=False, keep_last=1),
        run_dir=str(run),
    )
    run_training(cfg)
    return run


def _copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst, find_checkpoint(dst, "latest")


def test_round_trip_restores_weights_exactly(trained):
    _, model = load_run(trained, "latest")
    saved = load_file(str(find_checkpoint(trained, "latest") / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])


def test_keep_last_prunes_old_checkpoints(trained):
    names = sorted(p.name for p in (trained / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step_00000006"]  # keep_last=1; best is the final step here


def test_missing_tensor_is_named(trained, tmp_path):
    run, ck = _copy(trained, tmp_path)
    sd = load_file(str(ck / "model.safetensors"))
    sd.pop("net.0.weight")
    save_file(sd, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing tensors: net\.0\.weight"):
        load_run(run, "latest")


def test_wrong_shape_is_named(trained, tmp_path):
    run, ck = _copy(trained, tmp_path)
    sd = load_file(str(ck / "model.safetensors"))
    sd["net.0.bias"] = torch.zeros(3)
    save_file(sd, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"net\.0\.bias: file \(3,\) vs model \(64,\)"):
        load_run(run, "latest")


def test_truncated_file(trained, tmp_path):
    run, ck = _copy(trained, tmp_path)
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        load_run(run, "latest")


def test_config_that_does_not_match_the_weights(trained, tmp_path):
    run, ck = _copy(trained, tmp_path)
    cfg = yaml.safe_load((ck / "config.yaml").read_text())
    cfg["model"]["hidden"] = 32
    (ck / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="do not match the model built from the checkpoint's config"):
        load_run(run, "latest")


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


def test_loading_never_executes_code(trained, tmp_path, monkeypatch):
    run, ck = _copy(trained, tmp_path)
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    (ck / "model.safetensors").write_bytes(pickle.dumps({"net.0.weight": _Payload()}))
    with pytest.raises(CheckpointError):
        load_run(run, "latest")
    (ck / "config.yaml").write_text("model: !!python/object/apply:os.system ['touch " + str(marker) + "']\n")
    with pytest.raises(CheckpointError):
        load_run(run, "latest")
    assert not marker.exists()


def test_missing_run_dir():
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_run("/nonexistent/run")
