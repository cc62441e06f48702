"""How a process that ``launch_local`` starts (``--nproc-per-node``) ends: a real two-process launch."""
import atexit
import sys

import pytest

from resnet3d.engine import distributed
from resnet3d.engine.worker_process import run_as_worker

pytestmark = pytest.mark.slow


def _work_that_leaves_an_exit_handler() -> int:
    atexit.register(lambda: print("interpreter shutdown ran", file=sys.stderr, flush=True))
    return 3


def _worker() -> int:
    return run_as_worker(_work_that_leaves_an_exit_handler, "interrupted")


def test_a_launched_process_ends_after_its_status_is_read_without_interpreter_shutdown(capfd):
    """The status reaches the launcher, and the process then ends without the interpreter's
    shutdown (which could abort it in torch's distributed runtime after a finished run)."""
    assert distributed.launch_local(2, _worker) == {0: 3, 1: 3}
    assert "interpreter shutdown ran" not in capfd.readouterr().err
