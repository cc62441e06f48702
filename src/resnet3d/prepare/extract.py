"""One video -> one finished frame folder (or HDF5 file), or a reason why not.

The folder is written under a hidden temporary name and renamed into place once complete, with
``n_frames`` as its last file, so an interrupted run never leaves a folder that looks finished:

- a folder holding frames 1..n and ``n_frames`` = n is finished and skipped, untouched;
- a folder made by another tool (frames but no ``n_frames``) counts as finished when it holds
  as many frames as the video announces (the successor's own rule); it then gets the ``n_frames``
  and ``fps`` files it lacks. Otherwise it is partial and redone;
- a folder that holds anything besides frames, ``n_frames`` and ``fps`` is the user's: it is
  never replaced without ``--overwrite``;
- hidden ``.<name>.resnet3d-partial`` / ``.resnet3d-old`` leftovers of a killed run are removed.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from resnet3d.errors import UserError
from resnet3d.prepare.decode import PlaneConverter, ResizeRule, VideoError, VideoReader, fill_lost, resample
from resnet3d.prepare.frame_folders import (
    FPS_FILE,
    image_name,
    inspect_folder,
    old_path,
    partial_path,
    read_number,
    seed_fps,
    write_markers,
)

DEFAULT_QUALITY = 75
STOPPING_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclass(frozen=True)
class ExtractOptions:
    rule: ResizeRule = ResizeRule()
    fps: Optional[float] = None  # resample to this rate; None keeps every decoded frame
    quality: int = DEFAULT_QUALITY
    hdf5: bool = False  # one .hdf5 file per video instead of a JPEG folder
    overwrite: bool = False  # redo finished videos and replace folders holding other files
    threads: int = 1  # decoder threads


@dataclass(frozen=True)
class Outcome:
    status: str  # "done", "skipped" or "failed"
    frames: int = 0
    reason: str = ""  # why it failed
    adopted: bool = False  # skipped: finished by another tool, markers added
    seconds: float = 0.0
    lost: int = 0  # done: frames of the video lost to corrupt data (filled from their neighbours)


def encode_jpeg(planes: List[np.ndarray], quality: int) -> bytes:
    import simplejpeg

    return simplejpeg.encode_jpeg_yuv_planes(planes[0], planes[1], planes[2], quality=quality)


def extract_video(video: Path, output: Path, options: ExtractOptions) -> Outcome:
    """Extract ``video`` into the folder ``output`` (or ``output``.hdf5). Never raises for a bad
    video: the reason goes into the outcome."""
    start = time.perf_counter()
    try:
        if options.hdf5:
            outcome = _extract_hdf5(video, output, options)
        else:
            outcome = _extract_folder(video, output, options)
    except VideoError as error:
        outcome = Outcome("failed", reason=str(error))
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        if error.errno in STOPPING_ERRNOS:  # every later video would fail the same way
            raise UserError(f"cannot write frames{where}: {error.strerror}; make room and run again "
                            "(finished videos are kept)") from None
        outcome = Outcome("failed", reason=f"cannot write frames: {error.strerror or error}{where}")
    except Exception as error:  # noqa: BLE001 - one odd file must not stop a run of thousands
        outcome = Outcome("failed", reason=f"unexpected error, please report it: {type(error).__name__}: {error}")
    return dataclasses.replace(outcome, seconds=time.perf_counter() - start)


# -- JPEG folders ---------------------------------------------------------------------------------


def _extract_folder(video: Path, final: Path, options: ExtractOptions) -> Outcome:
    state = inspect_folder(final)
    if state.exists and not options.overwrite:
        if state.finished:
            return Outcome("skipped", frames=state.marker or 0)
        if not state.frame_output_only:
            shown = ", ".join(repr(n) for n in state.other_files[:3])
            return Outcome(
                "failed",
                reason=f"{final} exists and holds files other than frames ({shown}); "
                "move them away or pass --overwrite to replace the folder",
            )
        if state.marker is None and state.n_images and state.contiguous:
            adopted = _adopt_if_complete(video, final, state.n_images, options)
            if adopted is not None:
                return adopted
    _remove_leftovers(final)
    partial = partial_path(final)
    partial.mkdir(parents=True)
    try:
        n_frames, fps, lost = _write_frames(video, partial, options)
        write_markers(partial, n_frames, fps)
        _install_folder(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Outcome("done", frames=n_frames, lost=lost)


def _adopt_if_complete(video: Path, final: Path, n_images: int, options: ExtractOptions) -> Optional[Outcome]:
    """A folder of frames 1..n without ``n_frames`` (the successor's tool writes none) is finished
    when n reaches the frame count the video announces, the rule that tool resumes by."""
    with VideoReader(video) as reader:
        expected = reader.expected_frames(options.fps)
        duration = reader.duration_s
    if not expected or n_images < expected:
        return None
    fps = None
    if read_number(final / FPS_FILE) is None:
        fps = options.fps or (seed_fps(n_images, duration) if duration else None)
    write_markers(final, n_images, fps, atomic=True)
    return Outcome("skipped", frames=n_images, adopted=True)


class EncodedFrames:
    """The video's output frames as JPEG bytes, each with how many times it repeats (``--fps``,
    or frames lost to corrupt data, filled as ffmpeg fills them: ``fill_lost``).

    After iteration, ``end_time`` is where the last decoded frame ends (seconds from the first),
    and ``reader.stats.lost`` says how many frames were lost.
    """

    def __init__(self, reader: VideoReader, options: ExtractOptions) -> None:
        self.reader = reader
        self.options = options
        self.end_time = 0.0

    def _timed(self):
        for frame, seconds, duration, lost in self.reader.frames_and_losses():
            self.end_time = seconds + duration
            yield frame, seconds, duration, lost

    def __iter__(self) -> Iterator[Tuple[bytes, int]]:
        converter = PlaneConverter(self.options.rule, self.reader.sample_aspect_ratio())
        if self.options.fps:  # each instant takes the nearest decoded frame: a lost one needs no filling
            chosen = resample(((frame, seconds, duration) for frame, seconds, duration, _ in self._timed()),
                              self.options.fps)
        else:
            chosen = fill_lost(self._timed())
        for frame, repeat in chosen:
            yield encode_jpeg(converter.planes(frame), self.options.quality), repeat

    def fps(self, n_frames: int) -> Optional[float]:
        """The requested rate, else the seed's frames / duration (the span the frames cover)."""
        if self.options.fps:
            return self.options.fps
        if self.end_time > 0:
            return n_frames / self.end_time
        return self.reader.average_rate


def _write_frames(video: Path, folder: Path, options: ExtractOptions) -> Tuple[int, Optional[float], int]:
    """Decode, resize and write ``image_%05d.jpg`` into ``folder``; returns (n_frames, fps,
    frames lost to corrupt data)."""
    count = 0
    with VideoReader(video, threads=options.threads) as reader:
        frames = EncodedFrames(reader, options)
        for data, repeat in frames:
            for _ in range(repeat):
                count += 1
                with open(folder / image_name(count), "wb") as handle:
                    handle.write(data)
        reader.check_complete()
        return count, frames.fps(count), reader.stats.lost


def _remove_leftovers(final: Path) -> None:
    """Temporary folders a killed run left behind (named by us, so ours to delete)."""
    for leftover in (partial_path(final), old_path(final)):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()


def _install_folder(partial: Path, final: Path) -> None:
    """Rename the finished folder into place; an existing one is moved aside first and deleted
    after, so that at every instant ``final`` is either the old folder or the complete new one."""
    if final.exists() or final.is_symlink():
        aside = old_path(final)
        os.rename(final, aside)
        os.rename(partial, final)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink()
    else:
        os.rename(partial, final)


# -- HDF5 -----------------------------------------------------------------------------------------


def _extract_hdf5(video: Path, output: Path, options: ExtractOptions) -> Outcome:
    from resnet3d.prepare import hdf5

    final = hdf5.hdf5_path(output)
    if final.exists() and not options.overwrite:
        state = hdf5.inspect_file(final)
        if state.complete:
            return Outcome("skipped", frames=state.n_frames)
        if state.foreign:
            return Outcome(
                "failed",
                reason=f"{final} is an HDF5 file without a 'video' dataset; move it away or pass --overwrite",
            )
    _remove_leftovers(final)
    partial = partial_path(final)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        with VideoReader(video, threads=options.threads) as reader:
            frames = EncodedFrames(reader, options)
            count = hdf5.write_video(partial, (data for data, repeat in frames for _ in range(repeat)))
            reader.check_complete()
            hdf5.set_fps(partial, frames.fps(count))
            lost = reader.stats.lost
        os.replace(partial, final)
    except BaseException:
        if partial.exists():
            partial.unlink()
        raise
    return Outcome("done", frames=count, lost=lost)

