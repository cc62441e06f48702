"""One line for the user from rank 0 of a run: ``say`` (stdout, or the stream given) and ``warn``
(stderr, as ``resnet3d: warning: ...``); every other rank stays quiet. The data code's warnings
about what a machine holds (its video files, its shared memory) come from the first process of
each machine: ``data_warnings_per_machine``."""
from __future__ import annotations

import logging
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from resnet3d.engine.distributed import DistInfo


def say(info: DistInfo, message: str, stream=None) -> None:
    """One line from rank 0 (every other rank stays quiet)."""
    if info.is_main:
        print(message, file=stream or sys.stdout, flush=True)


def warn(info: DistInfo, message: str) -> None:
    say(info, f"resnet3d: warning: {message}", sys.stderr)


# the logger of the data code's warnings (resnet3d.data: dataset, loader, shared_memory, clip)
DATA_LOGGER = "resnet3d.data"


class _HeldBack(logging.Filter):
    """Holds back the warnings (and what is below them) logged by one thread, the one that made
    it; errors pass, and so does everything other threads log (tests run two ranks in threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.thread != self.thread


@contextmanager
def data_warnings_per_machine(info: DistInfo) -> Iterator[None]:
    """Inside, the data code's warnings come from the first process of each machine (local rank 0)
    alone; its errors from every process. For the steps every process of a machine takes alike on
    the same files (resolving the annotation's videos: "N entries have no frame folder ...;
    skipped"; fitting the loaders to the machine's shared memory), where each process said the same
    lines, once per process. Not rank 0 alone: on several machines (torchrun --nnodes) each may
    see other files, and what only one machine lacks is said there, where that machine's output is
    read (as ``distributed.say_failures`` says the ranks' errors). Not for what differs between a
    machine's processes (the videos of each one's share)."""
    if info.local_rank == 0:
        yield
        return
    logger, held_back = logging.getLogger(DATA_LOGGER), _HeldBack()
    logger.addFilter(held_back)
    try:
        yield
    finally:
        logger.removeFilter(held_back)
