import sys
from pathlib import Path

import pytest
import torch

# The synthetic scenes helper lives beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and reproducibly) on one thread of the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
