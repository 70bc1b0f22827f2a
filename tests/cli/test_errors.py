"""Every command, run from a temporary directory with a bad path, a bad key or a corrupt checkpoint, prints
exactly one line `drivewm: error: ...` naming what is wrong on stderr and exits with code 2."""

from __future__ import annotations

import pytest

MISSING = "no_such_dir"


def _one_line_error(res, *names: str) -> str:
    """The one stderr line of a command that failed on the user's input (exit 2), naming every one of `names`."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drivewm: error: "), res.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in res.output
    return lines[0]


BAD_PATH = {
    "train": (["train", "no_such.yaml"], ["no_such.yaml"]),
    "train resume": (["train", "toy.yaml", f"run_dir={MISSING}", "--resume"], [MISSING]),
    "eval forecast run": (["eval", "forecast", MISSING, "data=."], [MISSING]),
    "eval forecast data": (["eval", "forecast", "RUN", f"data={MISSING}"], [MISSING]),
    "eval baselines": (["eval", "baselines", f"data={MISSING}"], [MISSING]),
    "eval tokenizer": (["eval", "tokenizer", MISSING, "data=."], [MISSING]),
    "eval probe": (["eval", "probe", MISSING, "data=."], [MISSING]),
    "eval plan": (["eval", "plan", MISSING], [MISSING]),
    "eval plan config": (["eval", "plan", "--config", "no_such_plan.yaml"], ["no_such_plan.yaml"]),
    "drive": (["drive", MISSING], [MISSING]),
    "scaling": (["scaling", f"data={MISSING}"], [MISSING]),
    "data inspect": (["data", "inspect", MISSING], [MISSING]),
    "data merge": (["data", "merge", "out", MISSING], [MISSING]),
    "data convert": (["data", "convert", "nuscenes-lidar", "--samples", "no_such.json", "--out", "o"], ["no_such.json"]),
    "report": (["report", MISSING], [MISSING]),
    "demo": (["demo", "--configs", MISSING], [MISSING]),
    "convert": (["convert", MISSING], [MISSING]),
}


@pytest.mark.parametrize("case", sorted(BAD_PATH))
def test_bad_path_is_one_line(drivewm, toy_run, case):
    args, names = BAD_PATH[case]
    args = [str(toy_run) if a == "RUN" else a for a in args]
    assert _one_line_error(drivewm(*args), *names)


BAD_KEY = {
    "train": (["train", "toy.yaml", "model.foo=1"], ["'model.foo'", "depth"]),
    "eval forecast": (["eval", "forecast", "RUN", "data=.", "model.foo=1"], ["'model.foo'"]),
    "eval baselines": (["eval", "baselines", "data=.", "past=3"], ["'past'"]),
    "eval tokenizer": (["eval", "tokenizer", "RUN", "data=.", "split=val"], ["'split'"]),
    "eval probe": (["eval", "probe", "RUN", "data=.", "data.pats=1"], ["'data.pats'", "past"]),
    "eval plan": (["eval", "plan", "cem.foo=1"], ["'cem.foo'", "samples"]),
    "drive": (["drive", "cem.samples=many"], ["'cem.samples'"]),
    "scaling": (["scaling", "data=.", "model.foo=1"], ["'model.foo'"]),
    "sim preset": (["sim", "preview", "--preset", "huge"], ["'huge'"]),
    "data preset": (["data", "generate", "--out", "s", "--preset", "huge"], ["'huge'"]),
    "data shard": (["data", "generate", "--out", "s", "--shard", "3/2"], ["3/2"]),
    "demo preset": (["demo", "--preset", "huge"], ["'huge'"]),
    "config show": (["config", "show", "no_such_model"], ["'no_such_model'", "gpt_world"]),
    "convert": (["convert", "RUN", "tokenizer=x"], ["'tokenizer'", "tokenizer_run"]),
}


@pytest.mark.parametrize("case", sorted(BAD_KEY))
def test_bad_key_is_one_line(drivewm, toy_run, case):
    args, names = BAD_KEY[case]
    args = [str(toy_run) if a == "RUN" else a for a in args]
    assert _one_line_error(drivewm(*args), *names)


CORRUPT = {
    "train resume": ["train", "toy.yaml", "run_dir=RUN", "train.steps=2", "--resume"],  # the run's own steps
    "eval forecast": ["eval", "forecast", "RUN", "data=."],
    "eval tokenizer": ["eval", "tokenizer", "RUN", "data=."],
    "eval probe": ["eval", "probe", "RUN", "data=."],
    "eval plan": ["eval", "plan", "RUN"],
    "drive": ["drive", "RUN"],
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_checkpoint_is_one_line(drivewm, corrupt_run, case):
    args = [a.replace("RUN", str(corrupt_run)) for a in CORRUPT[case]]
    assert _one_line_error(drivewm(*args), "model.safetensors", "corrupt")


def test_a_run_of_the_wrong_kind_is_one_line(drivewm, toy_run):
    assert _one_line_error(drivewm("eval", "tokenizer", toy_run, "data=."), "toy_forecaster")
    assert _one_line_error(drivewm("drive", toy_run), "toy_forecaster")


def test_debug_shows_the_traceback(drivewm):
    res = drivewm("--debug", "train", "toy.yaml", "model.foo=1")
    from drivewm.config import ConfigError

    assert res.exit_code == 1 and isinstance(res.exception, ConfigError) and "model.foo" in str(res.exception)
    assert "drivewm: error" not in res.stderr
