import pytest

from drivewm.config import ConfigError
from drivewm.train.config import load_run_config


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_loads_model_schema_from_registry_with_overrides(tmp_path):
    p = _write(tmp_path, "model:\n  name: toy_forecaster\n  hidden: 16\ntrain:\n  steps: 5\n")
    cfg = load_run_config(p, ["model.depth=4", "train.lr=1e-3"])
    assert (cfg.model.hidden, cfg.model.depth, cfg.train.steps, cfg.train.lr) == (16, 4, 5, 1e-3)
    assert type(cfg.model).__name__ == "ToyConfig"


def test_unknown_key_names_the_key_and_valid_choices(tmp_path):
    p = _write(tmp_path, "model:\n  name: toy_forecaster\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.dept'.*valid keys here: .*depth"):
        load_run_config(p, ["model.dept=4"])
    p2 = _write(tmp_path, "model:\n  name: toy_forecaster\ntrian:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*train"):
        load_run_config(p2)


def test_wrong_type_names_the_key(tmp_path):
    p = _write(tmp_path, "model:\n  name: toy_forecaster\n")
    with pytest.raises(ConfigError, match=r"bad value for 'train.steps'"):
        load_run_config(p, ["train.steps=many"])


def test_unknown_model_and_bad_override_form(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*toy_forecaster"):
        load_run_config(_write(tmp_path, "model:\n  name: nope\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_run_config(_write(tmp_path, "model:\n  name: toy_forecaster\n"), ["depth"])
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")


def test_a_key_given_twice_in_a_yaml_file_is_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model:\n  name: toy_forecaster\ntrain:\n  lr: 0.1\n  steps: 3\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: key 'lr' given twice in one mapping \(lines 4 and 6\)"):
        load_run_config(path)
    path.write_text("model: {name: toy_forecaster, name: toy_forecaster}\n")
    with pytest.raises(ConfigError, match="key 'name' given twice"):
        load_run_config(path)
