"""A trained world-model run holds its tokenizer: copied elsewhere with the tokenizer run deleted, it evaluates
to the same numbers; a run of the old layout (tokenizer named by path only) loads while the path resolves,
converts, and otherwise fails with one line that says how to convert it."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from drivewm.train.config import load_run_config
from drivewm.errors import CheckpointError
from drivewm.evaluation import evaluate_forecast
from drivewm.hub import find_checkpoint, from_pretrained
from drivewm.train.checkpoint import convert_run, load_run
from drivewm.train.run import run_training

torch.set_num_threads(1)
TRAIN = ["train.steps=2", "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2", "train.warmup_steps=1",
         "train.progress=false", "train.device=cpu", "train.eval_batches=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A micro store, a 2-step tokenizer run and a 2-step OccWorld run started from it."""
    from drivewm.sim.generate import generate_store

    root = tmp_path_factory.mktemp("self_contained")
    generate_store(root / "data", preset="micro", episodes=2, frames=12, seed=0)
    data = [f"data.path={root / 'data'}", "data.past=5", "data.future=6"]
    tok = load_run_config(None, ["model.name=occ_vqvae", "model.grid=micro", "model.class_dim=4", "model.z_channels=16",
                                 "model.cnn.channels=8", "model.cnn.channel_mult=[1,2,2]", "model.cnn.attention=false",
                                 "model.quantizer.codebook_size=64", f"run_dir={root / 'tok'}", *data,
                                 "data.keys=[occ]", *TRAIN])
    run_training(tok)
    world = load_run_config(None, ["model.name=occworld", f"model.tokenizer_run={root / 'tok'}", "model.vocab_size=64",
                                   "model.token_shape=[8,8]", "model.dim=16", "model.depth=1", "model.heads=2",
                                   "model.dim_mult=[1,2]", "model.warp_prior=true", f"run_dir={root / 'wm'}", *data,
                                   *TRAIN])
    run_training(world)
    return root


def _evaluate(root, run):
    """Every row's metrics in table order (the model's row is named after its run directory)."""
    return list(evaluate_forecast([run], root / "data", past=5, horizon=6, max_windows=3, seed=1).results.values())


def _old_layout(run, dst):
    """A copy of `run` as runs were written before they were self-contained: the tokenizer named by path only."""
    shutil.copytree(run, dst)
    for config in [dst / "config.yaml", *(dst / "checkpoints").glob("step_*/config.yaml")]:
        d = yaml.safe_load(config.read_text())
        d["model"]["tokenizer"] = None
        config.write_text(yaml.safe_dump(d))
    for path in (dst / "checkpoints").glob("step_*/config.json"):
        path.unlink()
    return dst


def test_a_moved_run_without_its_tokenizer_run_evaluates_the_same(runs, tmp_path):
    want = _evaluate(runs, runs / "wm")
    recorded = yaml.safe_load((find_checkpoint(runs / "wm") / "config.yaml").read_text())["model"]
    assert recorded["tokenizer_run"] == str(runs / "tok") and recorded["tokenizer"]["name"] == "occ_vqvae"
    tok_weights = from_pretrained(runs / "tok").state_dict()
    wm_tok = from_pretrained(runs / "wm").tokenizer.state_dict()
    assert all(torch.equal(wm_tok[k], v) for k, v in tok_weights.items())  # the trained tokenizer was copied in

    old = _old_layout(runs / "wm", tmp_path / "old")
    stale = _old_layout(runs / "wm", tmp_path / "stale")
    assert _evaluate(runs, old) == want  # the tokenizer's path still resolves: the old layout loads
    convert_run(old)
    assert (find_checkpoint(old) / "config.json").is_file()

    moved = tmp_path / "elsewhere" / "wm"
    shutil.copytree(runs / "wm", moved)
    shutil.move(runs / "tok", tmp_path / "tok_away")  # the tokenizer run is gone
    try:
        assert _evaluate(runs, moved) == want
        assert _evaluate(runs, old) == want
        _, model = load_run(moved)
        assert model.tokenizer is not None
        with pytest.raises(CheckpointError, match=f"drivewm convert {stale} tokenizer_run=DIR") as err:
            from_pretrained(stale)
        assert "\n" not in str(err.value) and str(runs / "tok") in str(err.value)
        with pytest.raises(CheckpointError, match="drivewm convert"):
            load_run(stale)
        convert_run(stale, tokenizer_run=str(tmp_path / "tok_away"))  # pointed at where the tokenizer run now is
        assert _evaluate(runs, stale) == want
    finally:
        shutil.move(tmp_path / "tok_away", runs / "tok")
