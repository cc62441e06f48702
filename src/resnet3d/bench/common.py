"""The JSON-lines output every benchmark prints.

One line per measurement: ``{"what": ..., "baseline": bool, <figures>, "machine": {...}}``.
Figures are plain numbers with their unit in the key (``clips_per_s``, ``frames_per_s_per_core``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict

from resnet3d.hardware import usable_cores


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "usable_cpus": usable_cores(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def emit(record: Dict[str, Any], stream=None) -> None:
    """Print one measurement as a JSON line, flushed so partial runs still report."""
    stream = sys.stdout if stream is None else stream
    line = dict(record)
    line.setdefault("machine", machine_info())
    stream.write(json.dumps(line) + "\n")
    stream.flush()


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended (the
    loader workers, joined at the end of each pass; an ffmpeg run, waited for): on a shared
    machine, the figure that other load changes least."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_call(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Seconds per call of ``fn`` (wall clock, best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The model and clip flags of the recognition benchmarks (``bench test``, ``bench classify``),
    named as the successor's: both sides of each build their model from them."""
    parser.add_argument("--model", default="resnet")
    parser.add_argument("--model_depth", type=int, default=18)
    parser.add_argument("--n_classes", type=int, default=400)
    parser.add_argument("--resnet_widen_factor", type=float, default=1.0, help="the successor's width multiplier")
    parser.add_argument("--sample_size", type=int, default=112)
    parser.add_argument("--sample_duration", type=int, default=16)
