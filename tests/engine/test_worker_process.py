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


def test_a_peers_end_is_told_from_other_errors(monkeypatch):
    """gloo's and NCCL's words for a collective whose peer process ended become one line from each
    machine's first process (the others keep quiet); any other error, and any error of a process
    that no launcher started, keeps its traceback."""
    from resnet3d.engine.distributed import peer_gone, peer_gone_line

    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1")
    nccl = RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1, remote process exited or there was a network error")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not peer_gone(gloo)  # one process: no peers
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert peer_gone(gloo) and peer_gone(nccl)
    assert not peer_gone(RuntimeError("CUDA out of memory")) and not peer_gone(ValueError("Connection closed by peer"))
    line = peer_gone_line("train")
    assert line.startswith("resnet3d train: error (rank 2): another process of the run ended") and "--resume auto" in line
    assert "continue with --resume" in peer_gone_line("test")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert peer_gone_line("train") is None


def test_a_launch_says_the_failure_that_others_followed():
    """Under --nproc-per-node, rank 0's collective can fail with gloo's "Connection closed by peer"
    before the launcher stops it, after rank 1's error: rank 0 only followed, so its failure (and
    its traceback) is not said beside rank 1's; where every failure is such, all are said."""
    from types import SimpleNamespace

    from resnet3d.engine.distributed import _failure_text, causes_of

    gloo = {"message": "RuntimeError: [gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:5",
            "extraInfo": {"py_callstack": "Traceback ...", "timestamp": "0"}}
    bug = {"message": "KeyError: 'x'", "extraInfo": {"py_callstack": "Traceback ...", "timestamp": "0"}}
    followed = SimpleNamespace(exitcode=1, message=gloo)
    cause = SimpleNamespace(exitcode=1, message=bug)
    killed = SimpleNamespace(exitcode=-9, message="Signal 9 (SIGKILL) received by PID 7")
    assert causes_of({0: followed, 1: cause}) == {1: cause}
    assert causes_of({0: followed, 1: killed}) == {1: killed}
    assert causes_of({0: followed}) == {0: followed}
    # said so, when the launcher saw only the follower end (not gloo's words, which read as the cause)
    assert _failure_text(followed) == ("its collective failed as another process of the run ended (that "
                                       "process's lines say why)")
    assert _failure_text(cause) == "KeyError: 'x'"
