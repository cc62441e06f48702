"""Run the model tests on one intra-op thread.

These tests run many small convolutions; with pytest-xdist's two workers on two shared cores,
OpenMP's spinning threads made single tests swing from 0.5 s to 15 s. One thread per worker is
steady. The previous setting is restored after each module.
"""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
