"""Settings shared by the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The suite's models are tiny: one intra-op thread beats thread hand-offs on the 2-core machine and
    keeps timings steady when other work shares the cores. Subprocess tests keep torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
