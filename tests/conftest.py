import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DIGIT_DENOISE_QUIET", "1")

REPO = Path(__file__).resolve().parents[1]
FSDD = (REPO / ".." / "shared" / "data" / "fsdd").resolve()


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """The shared Free Spoken Digit Dataset, used in place (skip when absent)."""
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {FSDD} (expected ../shared/data/fsdd beside the repo)")
    return FSDD


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: much faster on a busy 2-core machine, same results."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
