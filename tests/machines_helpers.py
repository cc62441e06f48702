"""Helpers shared by the tests of several folders: runs on several "machines" on this one.

Imported as ``from machines_helpers import ...``: pytest puts this folder (that of
tests/conftest.py) on sys.path.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import List, Mapping, Optional, Sequence, Tuple


def two_machines(commands: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]],
                 cwds: Sequence[Optional[os.PathLike]] = (None, None), timeout: float = 300) -> List[Tuple[str, str]]:
    """Start one command per 'machine' on localhost (in ``cwds``, each in a session of its own);
    wait for both and return their outputs, (stdout, stderr) each. A machine that does not finish
    within ``timeout`` seconds, or ends with a status other than 0, is an AssertionError."""
    ended = two_machines_ended(commands, envs, cwds, timeout)
    for rank, (out, err, status) in enumerate(ended):
        assert status == 0, f"machine {rank}:\n{out}\n{err}"
    return [(out, err) for out, err, _ in ended]


def two_machines_ended(commands: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]],
                       cwds: Sequence[Optional[os.PathLike]] = (None, None),
                       timeout: float = 300) -> List[Tuple[str, str, int]]:
    """As ``two_machines``, for runs that may fail: (stdout, stderr, exit status) of each machine;
    only a machine that does not finish within ``timeout`` seconds is an AssertionError."""
    launchers = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, start_new_session=True)
                 for command, env, cwd in zip(commands, envs, cwds)]
    try:
        try:
            outputs = [launcher.communicate(timeout=timeout) for launcher in launchers]
        except subprocess.TimeoutExpired:  # both launchers' words, not only the first's timeout
            _kill(launchers)
            outputs = [launcher.communicate() for launcher in launchers]
            raise AssertionError("the two machines did not finish:\n" + "\n".join(
                f"machine {rank}:\n{out}\n{err}" for rank, (out, err) in enumerate(outputs))) from None
    finally:  # (a rank waiting for a peer that never comes would outlive the test, torchrun's children too)
        _kill(launchers)
    return [(out, err, launcher.returncode) for launcher, (out, err) in zip(launchers, outputs)]


def _kill(launchers: Sequence[subprocess.Popen]) -> None:
    """Each launcher still running, with its whole process group (torchrun's ranks, loader workers)."""
    for launcher in launchers:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


# Loaded at start-up by every interpreter of a run (through PYTHONPATH): FAIL_TARGET
# ("module:attribute", a function or a class's method) raises in rank FAIL_RANK ("*": every rank)
# at its FAIL_AT-th call, as a GPU out of memory part way through a run would; FAIL_OOM set: torch's
# own OutOfMemoryError. (The rank is read at each call: the processes --nproc-per-node starts learn
# theirs after start-up.)
_FAILING_RANK = """
import os
if "FAIL_TARGET" in os.environ:
    import importlib
    module_name, _, attribute = os.environ["FAIL_TARGET"].partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = [0]
    def failing(*args, **kwargs):
        calls[0] += 1
        if os.environ["FAIL_RANK"] in ("*", os.environ.get("RANK")) and calls[0] == int(os.environ["FAIL_AT"]):
            if os.environ.get("FAIL_OOM"):
                import torch
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                                  "total capacity of 8.00 GiB of which 1.00 MiB is free.")
            raise RuntimeError("out of memory (made by the test)")
        return original(*args, **kwargs)
    setattr(owner, name, failing)
"""

FAILURE_TEXT = "RuntimeError: out of memory (made by the test)"


def failing_rank(folder: os.PathLike, target: str, rank: Optional[int], at: int, oom: bool = False) -> dict:
    """Environment variables that make ``target`` ("module:attribute") fail in rank ``rank`` (None:
    every rank) at its ``at``-th call (``FAILURE_TEXT``, or with ``oom`` torch's out of memory); the
    start-up module that does it is written into ``folder``."""
    site = os.path.join(folder, "failing-rank")
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w") as file:
        file.write(_FAILING_RANK)
    path = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "FAIL_TARGET": target, "FAIL_RANK": "*" if rank is None else str(rank),
            "FAIL_AT": str(at), **({"FAIL_OOM": "1"} if oom else {})}
