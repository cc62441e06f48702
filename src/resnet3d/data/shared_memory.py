"""Room in shared memory for the batches that loader workers hand to the main process.

A worker writes each batch into a shared-memory block (``/dev/shm`` on Linux), and the block lives
until the main process has pinned or used the batch: up to ``workers x prefetch_factor`` batches
are in flight at once, each 38.5 MB for 64 clips of 16 x 112 x 112 x 3 uint8. Containers often
give ``/dev/shm`` only 64 MB (Docker's default), and running out does not fail at start: a worker
dies with a bus error somewhere in the first epoch. So the loader checks the room up front,
prefetches fewer batches per worker when that fits, and otherwise stops with the fix.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from resnet3d.errors import UserError

log = logging.getLogger("resnet3d.data")

SHM_PATH = "/dev/shm"
# Besides the prefetched batches: the one the pin-memory thread is copying and the one in use.
BATCHES_BEYOND_PREFETCH = 2


def free_shared_memory(path: str = SHM_PATH) -> Optional[int]:
    """Bytes free for an unprivileged process in ``path``, or None where there is no such folder
    (macOS, Windows: torch shares memory another way there)."""
    try:
        stats = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


def shared_bytes_needed(batch_bytes: int, workers: int, prefetch_factor: int) -> int:
    return (workers * prefetch_factor + BATCHES_BEYOND_PREFETCH) * batch_bytes


def fit_prefetch(batch_bytes: int, workers: int, prefetch_factor: int, *, sharers: int = 1,
                 free: Optional[int] = None) -> int:
    """The ``prefetch_factor`` to use: the one asked for when its batches fit in this process's
    part of the free shared memory (``sharers`` processes of one machine share it), else the
    largest that fits, with a warning. Raises ``UserError`` when not even one batch per worker fits.
    """
    free = free_shared_memory() if free is None else free
    if free is None or workers <= 0 or batch_bytes <= 0:
        return prefetch_factor
    room = free // max(sharers, 1)
    if shared_bytes_needed(batch_bytes, workers, prefetch_factor) <= room:
        return prefetch_factor
    fitting = (room // batch_bytes - BATCHES_BEYOND_PREFETCH) // workers
    mib = 1 << 20
    where = f"{SHM_PATH} has {free / mib:.0f} MiB free" + (f", shared by {sharers} processes" if sharers > 1 else "")
    if fitting < 1:
        raise UserError(
            f"{where}: {workers} loader workers with batches of {batch_bytes / mib:.1f} MiB need at least "
            f"{shared_bytes_needed(batch_bytes, workers, 1) * max(sharers, 1) / mib:.0f} MiB there. Give the "
            f"machine more shared memory (in Docker: docker run --shm-size=8g ...), or use fewer workers "
            f"(--n_threads) or a smaller --batch_size")
    log.warning("%s: each of %d loader workers prefetches %d batch(es) of %.1f MiB instead of %d. For full speed, "
                "give the machine more shared memory (in Docker: docker run --shm-size=8g ...)",
                where, workers, fitting, batch_bytes / mib, prefetch_factor)
    return int(fitting)
