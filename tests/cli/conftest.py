"""The `drivewm` app in-process (typer's CliRunner, the root command's error handler included), run from a
temporary working directory, and a tiny trained run plus a copy of it with a corrupt checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drivewm.cli import app


@pytest.fixture
def drivewm(tmp_path, monkeypatch):
    """`drivewm(*args)` -> typer Result, with the working directory a fresh temporary one."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "toy"
    res = CliRunner().invoke(app, ["train", "toy.yaml", f"run_dir={run}", "train.steps=2", "train.progress=false"])
    assert res.exit_code == 0, res.output
    return run


@pytest.fixture(scope="session")
def corrupt_run(toy_run, tmp_path_factory) -> Path:
    """The toy run with garbage written into every model.safetensors."""
    run = tmp_path_factory.mktemp("runs") / "corrupt"
    shutil.copytree(toy_run, run)
    for f in run.glob("checkpoints/*/model.safetensors"):
        f.write_bytes(b"this is not a safetensors file")
    return run
