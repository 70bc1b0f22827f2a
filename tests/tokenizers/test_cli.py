"""`drivewm train tokenizer` then `drivewm eval tokenizer` end to end on a tiny store of structured scenes."""

import json

import numpy as np
from typer.testing import CliRunner

from drivewm.cli import app
from drivewm.data.spec import grid_preset
from drivewm.data.store import write_episode


def test_train_then_eval_tokenizer(toy_occ, tmp_path):
    grid = grid_preset("micro")
    store = tmp_path / "store"
    for ep in range(3):
        t = 4
        write_episode(store, {
            "occ": toy_occ(t, grid.shape, seed=ep).numpy(),
            "ego_pose": np.cumsum(np.ones((t, 3), np.float32), 0),
            "action": np.zeros((t, 2), np.float32),
        }, grid=grid)
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "tokenizer", "--config", "tokenizer/occ_micro.yaml",
                              f"data={store}", f"run_dir={run}", "train.steps=2", "train.batch_size=2",
                              "data.val_fraction=0.34"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "tokenizer", str(run), f"data={store}", "--which", "latest"])
    assert res.exit_code == 0, res.output
    assert "IoU" in res.output and "codebook usage" in res.output and "compression ratio" in res.output
    doc = json.loads((run / "results" / "tokenizer.json").read_text())
    values = dict(doc["rows"])
    assert 0 <= values["iou"] <= 100 and values["frames"] == 4 and values["bits_per_frame"] == 64 * 6
    assert (run / "results" / "tokenizer.png").stat().st_size > 1000
    res = runner.invoke(app, ["eval", "tokenizer", str(run)])
    assert res.exit_code == 2 and "data=DIR" in res.stderr
