"""Shared test settings.

pytest-xdist runs two workers on CI's two cores; with torch's default of one intra-op thread per
core, each worker's OpenMP threads spin against the other's and single tests swing from 0.5 s to
15 s. One intra-op thread per test process is steady. Subprocesses the tests start (DDP,
torchrun, the CLI) choose their own.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_intra_op_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def no_report_markers_left():
    """``resnet3d.data.clip`` removes its folder of "reported once" markers at exit (atexit), but
    pytest-xdist's workers end without running atexit handlers: remove it here."""
    yield
    import sys

    clip = sys.modules.get("resnet3d.data.clip")
    if clip is not None:
        clip._remove_markers()
