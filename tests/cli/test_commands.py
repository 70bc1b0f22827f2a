"""`--version`, `models`, `config show`, the `RUN... data=DIR key=value` parser, packaged presets, and defaults
that resolve from any working directory."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from drivewm import __version__
from drivewm.config import ConfigError, attribute_docs, config_fields, parse_run_args, preset_path, resolve_config_path
from drivewm.train.config import load_run_config, run_config_schema
from drivewm.planning.factory import PlanConfig


def test_version(drivewm):
    res = drivewm("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"drivewm {__version__}"


def test_models_lists_every_registered_model(drivewm):
    from drivewm.registry import registered_models

    res = drivewm("models")
    assert res.exit_code == 0, res.output
    for name, entry in registered_models().items():
        line = next(ln for ln in res.stdout.splitlines() if f" {name} " in ln)
        assert entry.kind in line and entry.config_cls.__qualname__ in line


def test_config_show_prints_fields_with_docstrings_and_defaults(drivewm):
    res = drivewm("config", "show", "gpt_world")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    i = lines.index("model.vocab_size: Optional[int] = None")
    assert lines[i + 1].strip().startswith("Scene codebook size. Unset: the tokenizer's")
    assert "model.sampling.temperature: float = 1.0" in lines  # nested configs as dotted keys


@dataclass
class _Inner:
    rate: float = 0.5
    """How fast.

    Second paragraph."""


@dataclass
class _Outer:
    size: int = 3
    """The size."""
    undocumented: str = "x"
    inner: _Inner = field(default_factory=_Inner)
    """Nested settings."""


def test_attribute_docs_and_config_fields_known_answer():
    assert attribute_docs(_Outer) == {"size": "The size.", "inner": "Nested settings."}
    fields = {f.name: f for f in config_fields(_Outer)}
    assert list(fields) == ["size", "undocumented", "inner", "inner.rate"]
    assert (fields["size"].type, fields["size"].default, fields["size"].doc) == ("int", 3, "The size.")
    assert fields["undocumented"].doc == "" and fields["inner"].nested and fields["inner"].default is None
    assert fields["inner.rate"].doc == "How fast.\n\nSecond paragraph." and fields["inner.rate"].default == 0.5


def test_parse_run_args_splits_and_validates():
    args = parse_run_args(["runs/a", "data=store", "runs/b", "cem.samples=8", "shaping=false"], PlanConfig())
    assert args.paths == ["runs/a", "runs/b"] and args.data == "store"
    assert args.overrides == ["cem.samples=8", "shaping=false"]
    with pytest.raises(ConfigError, match=r"unknown key 'cem.sample'.*valid keys here: .*samples"):
        parse_run_args(["cem.sample=8"], PlanConfig())
    with pytest.raises(ConfigError, match=r"bad value for 'cem.samples'"):
        parse_run_args(["cem.samples=many"], PlanConfig())
    with pytest.raises(ConfigError, match=r"unknown key 'foo'.*RUN\.\.\. data=DIR only"):
        parse_run_args(["run", "data=x", "foo=1"])
    assert parse_run_args(["run", "data=x"]).paths == ["run"]
    schema = run_config_schema("toy.yaml", ["model.depth=2"])
    with pytest.raises(ConfigError, match="'model.dept'"):
        parse_run_args(["model.dept=2"], schema)


def test_presets_resolve_from_any_directory_and_a_user_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = preset_path("world/gpt_tiny.yaml")
    assert packaged.is_file() and packaged.parent.name == "world" and packaged.parent.parent.name == "configs"
    assert resolve_config_path("world/gpt_tiny.yaml") == packaged
    assert load_run_config("world/gpt_tiny.yaml").model.name == "gpt_world"
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "gpt_tiny.yaml").write_text("model:\n  name: toy_forecaster\n")
    assert resolve_config_path("world/gpt_tiny.yaml").resolve() == tmp_path / "world" / "gpt_tiny.yaml"
    assert load_run_config("world/gpt_tiny.yaml").model.name == "toy_forecaster"
    with pytest.raises(ConfigError, match="no preset 'world/gpt_huge.yaml'.*world/gpt_tiny.yaml"):
        resolve_config_path("world/gpt_huge.yaml")


def test_default_planning_preset_resolves_from_a_temporary_directory(drivewm):
    """`drive` reads its default preset (planning/tiny.yaml) from the package, whatever the working directory."""
    res = drivewm("drive", "--planner", "constant-velocity", "--no-compare", "--preset", "micro", "--seeds", "1",
                  "--seconds", "1")
    assert res.exit_code == 0, res.output
    assert "constant-velocity" in res.stdout and "expert" in res.stdout


def test_bugs_are_not_turned_into_user_errors():
    from drivewm.cli import user_error_message

    assert user_error_message(RuntimeError("boom")) is None and user_error_message(KeyError("k")) is None
    assert user_error_message(ConfigError("a.yaml: bad\nsecond line")) == "a.yaml: bad"
    assert user_error_message(FileNotFoundError(2, "No such file or directory", "x.json")) == "No such file or directory: x.json"


def test_help_prints_brackets_as_written(drivewm):
    res = drivewm("data", "generate", "--help")
    assert res.exit_code == 0 and "SeedSequence([seed, i])" in res.stdout
    usage = drivewm("eval", "forecast", "--help").stdout.splitlines()[0]
    assert usage.endswith(" eval forecast [OPTIONS] RUN_DIR... data=DIR")


def test_warnings_reach_each_commands_stderr(drivewm, capsys):
    """Diagnostics go through the `drivewm` logger to the stderr of the command being run, every time."""
    from drivewm.cli.data import log

    for _ in range(2):
        res = drivewm("-v", "train", "toy.yaml", "model.foo=1")
        assert "drivewm: INFO: config toy.yaml: the packaged preset" in res.stderr
    log.warning("a warning after the commands")  # no handler holds the closed stream of a finished command
    assert "drivewm: WARNING: a warning after the commands" in capsys.readouterr().err
