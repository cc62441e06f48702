"""One line for the user from rank 0 of a run: ``say`` (stdout, or the stream given) and ``warn``
(stderr, as ``resnet3d: warning: ...``); every other rank stays quiet. ``logger_quiet`` holds a
logger's warnings back where they were said already (by rank 0, or before training)."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

from resnet3d.engine.distributed import DistInfo


def say(info: DistInfo, message: str, stream=None) -> None:
    """One line from rank 0 (every other rank stays quiet)."""
    if info.is_main:
        print(message, file=stream or sys.stdout, flush=True)


def warn(info: DistInfo, message: str) -> None:
    say(info, f"resnet3d: warning: {message}", sys.stderr)


@contextmanager
def logger_quiet(logger: logging.Logger) -> Iterator[None]:
    """``logger``'s warnings unsaid inside (its errors still said)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
