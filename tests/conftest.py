"""Shared test settings.

pytest-xdist runs two workers on CI's two cores; with torch's default of one intra-op thread per
core, each worker's OpenMP threads spin against the other's and single tests swing from 0.5 s to
15 s. One intra-op thread per test process is steady. Subprocesses the tests start (DDP,
torchrun, the CLI) choose their own.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """A short base for the tests' folders. Many tests give the processes they start a TMPDIR in
    their own folder, and a loader worker hands batches over through a socket at
    TMPDIR/pymp-*/listener-*, a path of at most 107 bytes: pytest's default base
    (/tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/<test name>), under a TMPDIR of 20 bytes or
    more, left no room, and such runs stopped at their first batch. (An explicit --basetemp is
    used as it is.)"""
    if hasattr(config, "workerinput") or config.option.basetemp:
        return  # (xdist's workers take theirs from the controller: <base>/gw<k>)
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) > 20 and os.access("/tmp", os.W_OK):
        base = "/tmp"
    config.option.basetemp = config._resnet3d_basetemp = tempfile.mkdtemp(prefix="r3d-", dir=base)


def pytest_unconfigure(config):
    made = getattr(config, "_resnet3d_basetemp", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)


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
