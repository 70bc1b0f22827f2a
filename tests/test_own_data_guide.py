"""docs/own-data.md runs: its worked example's code blocks, in order, from arrays (made with numpy, not by
drivewm's simulator) to a forecast table, through the `drivewm` app in-process."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from drivewm.cli import app

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"

torch.set_num_threads(1)


def worked_example() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the guide's "Worked example" section, in order."""
    text = GUIDE.read_text()
    section = text[text.index("## Worked example"):]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_the_guide_links_from_the_readme_and_keeps_its_sections():
    readme = (GUIDE.parents[1] / "README.md").read_text()
    assert "(docs/own-data.md)" in readme
    text = GUIDE.read_text()
    for heading in ("## The data contract", "### Units", "## Choosing the grid", "## Choosing the downsampling",
                    "## Worked example", "## Converters"):
        assert heading in text
    assert [lang for lang, _ in worked_example()] == ["python", "yaml", "bash"]


def test_the_worked_example_runs_from_arrays_to_a_forecast_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    outputs = []
    for lang, code in worked_example():
        if lang == "python":
            exec(compile(code, str(GUIDE), "exec"), {"__name__": "guide"})
        elif lang == "yaml":
            name = re.match(r"# file: (\S+)\n", code).group(1)
            (tmp_path / name).write_text(code)
        else:
            for line in code.splitlines():
                args = shlex.split(line)
                assert args[0] == "drivewm", line
                res = runner.invoke(app, args[1:])
                assert res.exit_code == 0, f"{line}\n{res.output[-3000:]}"
                outputs.append(res.output)
    manifest = json.loads((tmp_path / "data/mine/manifest.json").read_text())
    assert manifest["grid"]["shape"] == [32, 32, 2] and manifest["grid"]["voxel_size"] == 2.0
    inspect, baselines, *_ = outputs
    assert "32x32x2 voxels of 2 m" in inspect
    assert "mIoU present" in baselines and "of the semantic classes are absent" in baselines
    # The run records the store's grid written out, and the world model the tokenizer's vocabulary and tokens.
    tok_cfg = (tmp_path / "runs/my_tokenizer/config.yaml").read_text()
    assert "voxel_size: 2.0" in tok_cfg and "from_store" not in tok_cfg
    world_cfg = (tmp_path / "runs/my_world/config.yaml").read_text()
    assert "vocab_size: 64" in world_cfg and re.search(r"token_shape:\n\s*- 16\n\s*- 16", world_cfg)
    table = json.loads((tmp_path / "runs/my_world/results/forecast.json").read_text())
    names = [row[0] for row in table["rows"]]
    assert "copy_last" in names and any(n.startswith("occworld") for n in names)
    assert table["columns"][-2:] == ["mIoU present 3s", "classes absent 3s (%)"]
    absent = {row[-1] for row in table["rows"]}
    assert len(absent) == 1 and 60 < absent.pop() < 90  # 4 of 17 semantic classes occur: 13/17 = 76 % absent


def test_a_model_on_another_grid_stops_before_the_first_step_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    python, yaml_block, _ = worked_example()
    exec(compile(python[1].replace("EPISODES, FRAMES, HZ = 8, 24", "EPISODES, FRAMES, HZ = 2, 12"), str(GUIDE),
                 "exec"), {"__name__": "guide"})
    (tmp_path / "my_tokenizer.yaml").write_text(yaml_block[1])
    res = CliRunner().invoke(app, ["train", "tokenizer", "--config", "my_tokenizer.yaml", "data=data/mine",
                                   "model.grid={shape: [32, 32, 2], voxel_size: 1.0}"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "(voxel size differs)" in line
    assert "model.grid is 32x32x2 voxels of 1 m" in line and "data/mine holds 32x32x2 voxels of 2 m" in line
    assert not (tmp_path / "runs/my_tokenizer").exists()


@pytest.mark.parametrize("override", ["model.grid=micro", "model.grid=nowhere"])
def test_a_grid_preset_that_is_not_the_stores_is_refused(tmp_path, monkeypatch, override):
    monkeypatch.chdir(tmp_path)
    python, yaml_block, _ = worked_example()
    exec(compile(python[1].replace("EPISODES, FRAMES, HZ = 8, 24", "EPISODES, FRAMES, HZ = 2, 12"), str(GUIDE),
                 "exec"), {"__name__": "guide"})
    (tmp_path / "my_tokenizer.yaml").write_text(yaml_block[1])
    res = CliRunner().invoke(app, ["train", "tokenizer", "--config", "my_tokenizer.yaml", "data=data/mine", override])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert ("shape differs" if override.endswith("micro") else "'nowhere' is no grid") in res.output


def test_a_world_model_at_odds_with_its_tokenizer_stops_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    python, yaml_block, _ = worked_example()
    exec(compile(python[1].replace("EPISODES, FRAMES, HZ = 8, 24", "EPISODES, FRAMES, HZ = 3, 14"), str(GUIDE),
                 "exec"), {"__name__": "guide"})
    (tmp_path / "my_tokenizer.yaml").write_text(yaml_block[1])
    runner = CliRunner()
    assert runner.invoke(app, ["train", "tokenizer", "--config", "my_tokenizer.yaml", "data=data/mine",
                               "train.steps=2"]).exit_code == 0
    world = ["train", "world", "--config", "world/occworld_tiny.yaml", "data=data/mine",
             "model.tokenizer_run=runs/my_tokenizer", "train.steps=2", "run_dir=runs/w"]
    for extra, message in ((["model.vocab_size=512"], "has vocab_size=64, token_shape=[16, 16] but the world model "
                                                      "is configured for vocab_size=512"),
                           (["data.keys=[ego_pose,action]"], "the world model's tokenizer reads 'occ' frames")):
        res = runner.invoke(app, world + extra)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and message in res.output
        assert not (tmp_path / "runs/w/checkpoints").exists()
