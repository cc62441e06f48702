"""One line for the user from rank 0 of a run: ``say`` (stdout, or the stream given) and ``warn``
(stderr, as ``resnet3d: warning: ...``); every other rank stays quiet."""
from __future__ import annotations

import sys

from resnet3d.engine.distributed import DistInfo


def say(info: DistInfo, message: str, stream=None) -> None:
    """One line from rank 0 (every other rank stays quiet)."""
    if info.is_main:
        print(message, file=stream or sys.stdout, flush=True)


def warn(info: DistInfo, message: str) -> None:
    say(info, f"resnet3d: warning: {message}", sys.stderr)
