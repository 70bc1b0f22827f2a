"""Every case of the malformed-input campaign (benchmarks/campaign_inputs.py): a one-line error naming the file,
key or value, exit code 2, and the store and runs already written unchanged (hashed before and after)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign_inputs.py"
_spec = importlib.util.spec_from_file_location("campaign_inputs", _PATH)
campaign = importlib.util.module_from_spec(_spec)
sys.modules["campaign_inputs"] = campaign  # dataclasses resolve the module's annotations through it
_spec.loader.exec_module(campaign)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return campaign.build_workspace(tmp_path_factory.mktemp("malformed"))


def test_the_campaign_covers_forty_inputs_of_every_group():
    groups = {c.group for c in campaign.CASES}
    assert len(campaign.CASES) >= 40 and len({c.name for c in campaign.CASES}) == len(campaign.CASES)
    assert groups == {"config", "run_dir", "checkpoint", "store", "episode"}


@pytest.mark.parametrize("case", campaign.CASES, ids=[c.name for c in campaign.CASES])
def test_malformed_input_is_refused_by_name_and_changes_nothing(case, workspace, tmp_path):
    result = campaign.run_case(case, workspace, tmp_path)
    assert result["ok"], result


def test_a_well_formed_command_passes_the_same_check(workspace, tmp_path):
    """The harness itself: a command that succeeds, or one that writes, is reported as not ok."""
    good = campaign.Case("good", "config", ["data", "inspect", "STORE"], ())
    assert campaign.run_case(good, workspace, tmp_path)["exit"] == 0
    writes = campaign.Case("writes", "store", ["data", "generate", "--out", "WS/more", "--preset", "micro", "-n", "1",
                                                "-t", "6"], ())
    result = campaign.run_case(writes, workspace, tmp_path)
    assert not result["ok"] and result["exit"] == 0 and "more/manifest.json" in result["changed"], result
