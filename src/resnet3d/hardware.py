"""Facts about this machine that defaults depend on (no torch: imported by configs and parsers)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_num_workers(most: int = 4) -> int:
    """Loader worker processes when none are asked for: ``min(most, usable cores)``.

    More workers than cores only queue for the same cores (and torch warns about "excessive
    worker creation"); an explicit ``--n_threads``/``--workers`` is always taken as given.
    """
    return max(1, min(most, usable_cores()))
