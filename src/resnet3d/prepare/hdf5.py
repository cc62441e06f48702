"""The successor's ``--file_type hdf5`` video file: ``<frame folder path>.hdf5`` holding a dataset
``video``, a 1-D array of variable-length uint8 arrays, each one JPEG-encoded frame, in order.

h5py is optional: it is imported only when HDF5 output is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from resnet3d.errors import missing_package

DATASET = "video"
CHUNK = 64  # frames appended per write


def require_h5py():
    try:
        import h5py
    except ImportError:
        raise missing_package("HDF5 output", "h5py", "hdf5") from None
    return h5py


def hdf5_path(output: Path) -> Path:
    return output.with_name(output.name + ".hdf5")


@dataclass(frozen=True)
class FileState:
    complete: bool
    n_frames: int = 0
    foreign: bool = False  # a readable HDF5 file that is not a video of this format


def inspect_file(path: Path) -> FileState:
    """Complete: every element of ``video`` holds bytes. The successor's generator sizes the
    dataset first and fills it frame by frame, so a killed run leaves empty elements at the end;
    ours writes to a temporary name, so an unreadable file can only be someone's broken output."""
    h5py = require_h5py()
    try:
        with h5py.File(path, "r") as handle:
            if DATASET not in handle:
                return FileState(complete=False, foreign=True)
            video = handle[DATASET]
            n_frames = len(video)
            complete = n_frames > 0 and len(video[n_frames - 1]) > 0
            return FileState(complete=complete, n_frames=n_frames)
    except OSError:
        return FileState(complete=False)


def write_video(path: Path, frames: Iterable[bytes]) -> int:
    """Write JPEG frames to a new file at ``path``; returns how many."""
    h5py = require_h5py()
    count = 0
    with h5py.File(path, "w") as handle:
        video = handle.create_dataset(
            DATASET, shape=(0,), maxshape=(None,), chunks=(CHUNK,), dtype=h5py.vlen_dtype(np.dtype("uint8"))
        )
        batch = []

        def flush() -> None:
            nonlocal count
            video.resize((count + len(batch),))
            video[count : count + len(batch)] = batch
            count += len(batch)
            batch.clear()

        for data in frames:
            batch.append(np.frombuffer(data, dtype=np.uint8))
            if len(batch) == CHUNK:
                flush()
        if batch:
            flush()
    return count


def set_fps(path: Path, fps: Optional[float]) -> None:
    """Keep the frame rate with the frames (an attribute; the successor's reader ignores it)."""
    if fps is None:
        return
    h5py = require_h5py()
    with h5py.File(path, "r+") as handle:
        handle[DATASET].attrs["fps"] = round(float(fps), 2)


def read_n_frames(path: Path) -> int:
    h5py = require_h5py()
    with h5py.File(path, "r") as handle:
        return len(handle[DATASET])
