"""One process of a launch (``distributed.launch_local``, what ``--nproc-per-node`` starts): its
exit status, its own error said once, and its end when the launcher is gone.

``resnet3d train``/``main`` and ``resnet3d test`` start their processes the same way; each
process runs its work through ``run_as_worker``.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from typing import Callable, Iterator, NoReturn, Tuple

from resnet3d.engine.signals import signal_of, stop_with_the_launcher
from resnet3d.errors import AlreadySaid, UserError, user_error_text


def run_as_worker(work: Callable[[], int], interrupted: str) -> int:
    """Run ``work`` in a launched process; its exit status. ``interrupted``: what rank 0 says
    when the work is stopped at once (a second Ctrl-C) and the interruption says nothing itself."""
    # (torch starts these processes with spawn, which becomes their default too: their loader
    # workers are spawned. A plain fork beside the launcher's and gloo's threads can deadlock in
    # CPython 3.11 (a review saw a continued 2-process run hang for good, 1 of 5); a fork server
    # is the parent torch's workers watch instead of this process, so they outlived a failed run.)
    launcher = os.getppid()
    stop_with_the_launcher(launcher)
    status, alone = _status(work, interrupted)
    if alone or os.getppid() != launcher:
        # - an error of this process alone (data only it reads, its loader worker killed): the
        #   others may be waiting for it in a collective, and torch's wrapper around this function
        #   would wait for the launcher to read its status, which it does once all are done: each
        #   waited for the other for ever. Ended, the process is a failure the launcher sees at
        #   once: it stops the others, and says nothing more (``launch_local``: this line said it).
        # - the launcher is gone (kill -9): nobody reads this status, and that wrapper would wait
        #   for ever, holding the process (and its GPU memory)
        end_process(status)
    # Returned: torch's wrapper hands ``status`` to the launcher and waits until it is read, then
    # the interpreter shuts down, which could abort the process inside torch's distributed runtime
    # (see ``cli.main``): the launcher counted that as a failure of a finished run. So the first
    # exit handler ends the process, with the 0 a normal end gives.
    atexit.register(end_process, 0)
    return status


def end_process(status: int) -> NoReturn:
    """End this process now with ``status``, after what it printed and logged is written: no
    interpreter shutdown (no atexit handlers, no destructors), which every caller has a reason to
    skip. Files the run writes are flushed and closed by their owners before this."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader left (a closed pipe), or the stream is closed
            pass
    os._exit(status)


def _status(work: Callable[[], int], interrupted: str) -> Tuple[int, bool]:
    """This process's exit status, and whether it ended by an error of its own (said here)."""
    from resnet3d.engine.distributed import peer_gone

    try:
        return work(), False
    except AlreadySaid as said:  # every process knows of the failure and ends with it
        return said.status, False
    except KeyboardInterrupt as interrupt:  # a second Ctrl-C, or recognition stopped: the launcher exits with it
        if os.environ.get("RANK", "0") == "0":
            print(f"resnet3d: interrupted: {str(interrupt) or interrupted}", file=sys.stderr, flush=True)
        return 128 + signal_of(interrupt), False
    except Exception as error:
        if peer_gone(error):  # it followed another process's end: the launcher tells the two apart
            raise
        # said here, by the process that met it: the launcher learns of a process's error only if
        # it sees the process end before the others (whose collectives fail as its group closes)
        text, status = failure_line(error)
        say_error(text)
        return status, True


def failure_line(error: BaseException) -> Tuple[str, int]:
    """An error as one process of a run says it, as (line, exit status): a bad input or a file the
    system refused: its line, 2; a dead loader worker: its cause and fix, 1; any other error: its
    type and message in one line, 1, after its traceback (printed here, for a bug report)."""
    from resnet3d.data.loader import worker_death
    from resnet3d.errors import describe_os_error

    if isinstance(error, UserError):
        return user_error_text(error), 2
    if isinstance(error, OSError) and error.filename is not None:  # a file the system refused (a full disk)
        return describe_os_error(error), 2
    died = worker_death(error)
    if died is not None:  # (the line `resnet3d` says on one process, not the loader's traceback)
        return died, 1
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)  # (3.9's form)
    return _one_line(error), 1


def _one_line(error: BaseException) -> str:
    """'Type: message' in one line: a loader worker's error carries the worker's traceback in its
    message, whose last line is that (its first line says only where it was caught)."""
    message = str(error)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if "Original Traceback" in message and lines:
        return lines[-1]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# A folder our launcher (``distributed.launch_local``) gives its processes, where each error a
# process says on its own is recorded: the same error met by several processes at once (a GPU out
# of memory at the first step on every GPU) is said once, by the first, and the launcher adds
# which processes met it too. Unset (torchrun, one process): each says its own.
SAID_FOLDER_ENV = "RESNET3D_LAUNCH_SAID"


def say_error(text: str) -> None:
    """This launched process's own error, ``resnet3d: error (rank R): text``, unless another
    process of the launch said the same text already (then its rank is recorded for the launcher)."""
    import hashlib

    rank = os.environ.get("RANK", "?")
    folder = os.environ.get(SAID_FOLDER_ENV)
    if folder:
        record = os.path.join(folder, hashlib.sha1(text.encode("utf-8")).hexdigest()[:16])
        if _said_already(record, rank):
            return
    say_once(f"resnet3d: error (rank {rank}): {text}")


def _said_already(record: str, rank: str) -> bool:
    """Record ``rank`` in ``record``, the file of one error's text; whether another process met
    that error first (and said it). The first makes the file, its rank on the first line, as a
    link made whole; the others append theirs. A folder that cannot serve (gone, no links): False,
    so that the error is said."""
    mine = f"{record}.{rank}"
    try:
        with open(mine, "w", encoding="utf-8") as first:
            first.write(f"{rank}\n")
        try:
            os.link(mine, record)
            return False
        except FileExistsError:
            with open(record, "a", encoding="utf-8") as ranks:  # (one short append: whole, beside others')
                ranks.write(f"{rank}\n")
            return True
        finally:
            os.unlink(mine)
    except OSError:  # the launcher's folder is gone, or no links there
        return False


def another_process_of_the_machine() -> bool:
    """A process torchrun started, other than its machine's first (LOCAL_RANK 0). torchrun gives
    each process the same command line, so what follows from it alone is said by the first."""
    return {"RANK", "WORLD_SIZE"} <= os.environ.keys() and os.environ.get("LOCAL_RANK", "0") != "0"


# How long a process that leaves a mistake they share to its machine's first process waits before
# it ends. Ended at once, it could be the first process torchrun saw end, and torchrun then stopped
# the first process before that had said the mistake: nothing was said (seen in CI). torchrun
# stops the waiting ones as soon as the first process ends.
QUIET_END_WAIT_S = 60.0


def left_to_the_first_process(status: int) -> int:
    """``status``, after the wait that lets the machine's first process say what this one leaves
    to it (``QUIET_END_WAIT_S``)."""
    import time

    time.sleep(QUIET_END_WAIT_S)
    return status


@contextlib.contextmanager
def said_by_the_machines_first_process() -> Iterator[None]:
    """For what every process of a machine does alike before the processes meet (reading the
    command line's settings, its config file, its lr.lua): a UserError there is said by the
    machine's first process; the others end with the same status and keep quiet (each said it,
    eight lines on eight GPUs)."""
    try:
        yield
    except UserError:
        if another_process_of_the_machine():
            raise AlreadySaid(left_to_the_first_process(2)) from None
        raise


def say_once(line: str) -> None:
    """One write: two processes' lines printed with print() (text, then newline) ran together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
