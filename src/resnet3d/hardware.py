"""Facts about this machine that defaults depend on (no torch: imported by configs and parsers)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# default_num_workers's rule in words, for the help of every flag that takes its default from it
DEFAULT_WORKERS_RULE = "usable cores - 1, all of 1 or 2, at most 16"


def default_num_workers(most: int = 16) -> int:
    """Loader worker processes when none are asked for: every usable core but one (the main
    process needs one to run the step loop and pin batches), at most ``most``; all cores on a
    machine of one or two.

    The loader is what bounds training and recognition on a GPU (about 400 clips/s per core at
    112 x 112 from 240p JPEGs), so a 16-core GPU machine gets 15 (the originals' default, 4,
    would cap it near 1,600 clips/s). At most 16: each worker holds ``prefetch_factor`` batches
    in shared memory. A distributed run divides the count among a machine's processes. The
    count never changes results: every clip's random draws depend on (seed, epoch, item) only.
    An explicit ``--n_threads``/``--workers`` is always taken as given.
    """
    cores = usable_cores()
    return max(1, min(most, cores - 1 if cores > 2 else cores))
