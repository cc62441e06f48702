"""Helpers of the CUDA tests (imported by name: tests have no packages).

Everything in tests/gpu runs only where CUDA is available (``requires_cuda``, each module's
``pytestmark``); on a machine without a GPU they are reported as skipped.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (tests/gpu)")

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")

# A tiny model and clip: every CUDA path runs in seconds, cuDNN's choices included.
TINY_MODEL = ["--model", "resnet", "--model-depth", "10", "--widen-factor", "0.25"]
TINY_CLIP = ["--sample-size", "32", "--sample-duration", "8", "--train-crop", "center"]

# Where measured figures go (JSON lines), for the device script to bring back; unset: nowhere.
MEASURES_ENV = "RESNET3D_GPU_MEASURES"


def record(test: str, **figures: Any) -> None:
    """Append one JSON line of measured figures to $RESNET3D_GPU_MEASURES (if set) and print it
    (pytest -s or -rA shows it): the tolerances of these tests are checked against them."""
    line = json.dumps({"test": test, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                       "torch": torch.__version__, **figures}, sort_keys=True)
    print(line)
    target = os.environ.get(MEASURES_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def data_flags(info) -> list:
    """--video-path/--annotation-path/--dataset of a ``make_action_dataset`` JPEG data set."""
    return ["--video-path", info.jpg_path, "--annotation-path", info.annotation_path, "--dataset", info.dataset]


def subprocess_env() -> Dict[str, str]:
    """This interpreter's import path, so the CLI sees the same resnet3d (an editable install, or
    PYTHONPATH=src on the GPU machine)."""
    paths = [p for p in sys.path if p]
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(paths))


def resnet3d(*argv: Any, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m resnet3d ARGV`` in a fresh process; returns it whatever its exit code."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "resnet3d", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())
    done.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return done


def describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"


def in_process(*argv: Any) -> int:
    """``resnet3d ARGV`` in this process (no second torch import and CUDA start-up)."""
    from resnet3d.cli import main

    return main([str(a) for a in argv])


def read_checkpoint(path: Path) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_difference(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], keys: Sequence[str] = ()) -> float:
    """The largest absolute difference between two state dicts' floating-point tensors."""
    keys = keys or [k for k, v in a.items() if v.is_floating_point()]
    return max(float((a[k].float().cpu() - b[k].float().cpu()).abs().max()) for k in keys)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """No TF32 inside (cuBLAS matmuls, cuDNN convolutions); the settings as they were after.

    Not ``monkeypatch.setattr``: ``torch.backends.cuda.matmul`` answers ``allow_tf32`` through
    ``__getattr__`` (no instance attribute), so pytest 9 records no old value and its undo deletes
    the attribute instead, an AttributeError at every test's teardown."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
