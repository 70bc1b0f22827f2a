"""`drivewm convert RUN [tokenizer_run=DIR]`: a world-model run written by an older drivewm (tokenizer named by
path only, `backbone` a bare kind, the removed min_context / prior_max_age / sampling.top_p) is refused on load in
one line naming the command; after the command it loads with the very weights it was written with."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from drivewm.errors import CheckpointError
from drivewm.hub import find_checkpoint, from_pretrained

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A micro tokenizer run and a GPT world-model run on it, both as the current code writes them."""
    from drivewm.config import to_yaml
    from drivewm.dynamics import GPTWorldConfig
    from drivewm.registry import build_model
    from drivewm.tokenizers.occ import OccTokenizerConfig
    from drivewm.train.checkpoint import build_model_from_sources, write_checkpoint
    from drivewm.train.config import RunConfig

    root = tmp_path_factory.mktemp("convert")
    tok_cfg = RunConfig(model=OccTokenizerConfig(grid="micro", class_dim=4, z_channels=16))
    tok_cfg.model.cnn.channels, tok_cfg.model.cnn.channel_mult, tok_cfg.model.cnn.attention = 8, [1, 2, 2], False
    tok_cfg.model.quantizer.codebook_size = 64
    torch.manual_seed(0)
    tok = build_model(tok_cfg.model)
    write_checkpoint(root / "tok" / "checkpoints" / "step_00000001", config_yaml=to_yaml(tok_cfg),
                     model_state=tok.state_dict(), optim_state=None, state={"step": 1})
    (root / "tok" / "checkpoints" / "index.json").write_text('{"latest": "step_00000001"}')
    cfg = RunConfig(model=GPTWorldConfig(tokenizer_run=str(root / "tok"), vocab_size=64, token_shape=[8, 8], dim=16,
                                         depth=1, heads=2))
    model = build_model_from_sources(cfg.model)
    write_checkpoint(root / "wm" / "checkpoints" / "step_00000001", config_yaml=to_yaml(cfg),
                     model_state=model.state_dict(), optim_state=None, state={"step": 1})
    (root / "wm" / "checkpoints" / "index.json").write_text('{"latest": "step_00000001"}')
    return root, model.state_dict()


def _old_layout(run, dst, **model):
    """A copy of `run` as an older drivewm wrote it, with `model` keys set in every config."""
    shutil.copytree(run, dst)
    for config in (dst / "checkpoints").glob("step_*/config.yaml"):
        d = yaml.safe_load(config.read_text())
        m = d["model"]
        del m["tokenizer"]
        m["backbone"] = m["backbone"]["kind"]
        m.update({"min_context": 1, "prior_max_age": 1, **model})
        m["sampling"]["top_p"] = 1.0
        config.write_text(yaml.safe_dump(d, sort_keys=False))
        (config.parent / "config.json").unlink()
        (config.parent / "README.md").unlink()
    return dst


def _one_line_error(res, *names: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drivewm: error: "), res.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_an_old_run_is_refused_until_converted_then_loads_its_own_weights(runs, drivewm, tmp_path):
    root, weights = runs
    old = _old_layout(root / "wm", tmp_path / "old")
    with pytest.raises(CheckpointError) as err:
        from_pretrained(old)
    message = str(err.value)
    assert "\n" not in message and f"drivewm convert {old}" in message
    assert all(f"model.{k}" in message for k in ("backbone", "min_context", "prior_max_age", "sampling.top_p"))
    _one_line_error(drivewm("eval", "forecast", old, f"data={tmp_path}"), f"drivewm convert {old}")

    res = drivewm("convert", old)
    assert res.exit_code == 0, res.output
    model = from_pretrained(old)
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    recorded = yaml.safe_load((find_checkpoint(old) / "config.yaml").read_text())["model"]
    assert recorded["backbone"]["kind"] == "attention" and recorded["tokenizer"]["name"] == "occ_vqvae"
    assert not {"min_context", "prior_max_age"} & set(recorded) and "top_p" not in recorded["sampling"]
    assert (find_checkpoint(old) / "config.json").is_file()


def test_a_removed_option_with_another_value_is_refused_by_name(runs, drivewm, tmp_path):
    root, _ = runs
    old = _old_layout(root / "wm", tmp_path / "aged", prior_max_age=2)
    _one_line_error(drivewm("convert", old), "model.prior_max_age=2")
    with pytest.raises(CheckpointError, match="prior_max_age=2"):
        from_pretrained(old)


def test_a_moved_tokenizer_run_is_named_on_the_command_line(runs, drivewm, tmp_path):
    root, weights = runs
    old = _old_layout(root / "wm", tmp_path / "moved")
    shutil.copytree(root / "tok", tmp_path / "tok_elsewhere")
    for config in (old / "checkpoints").glob("step_*/config.yaml"):  # the path it names no longer exists
        config.write_text(config.read_text().replace(str(root / "tok"), str(tmp_path / "gone")))
    _one_line_error(drivewm("convert", old), str(tmp_path / "gone"), f"drivewm convert {old} tokenizer_run=DIR")

    res = drivewm("convert", old, f"tokenizer_run={tmp_path / 'tok_elsewhere'}")
    assert res.exit_code == 0, res.output
    model = from_pretrained(old)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
