from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DENG_FILE = SHARED / "data" / "deng-4x4-valid.txt"


@pytest.fixture(scope="session")
def tiny22():
    """A fresh tiny 2×2 model (untrained), shared across tests that only read it."""
    from mulinterp.models import MulModel, build_model, get_preset
    from mulinterp.task import MulTask

    task = MulTask(2, 2)
    return MulModel(build_model(task, "tiny", seed=0), task, get_preset("tiny"), {"name": "tiny22"})


def pytest_configure(config):
    # Small models run faster on one thread, and the suite shares a 2-core machine with
    # notebook kernels (which inherit OMP_NUM_THREADS); measured on a busy 2-core machine, a
    # d_model-512 forward took 263 ms with two threads and 18 ms with one.
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
