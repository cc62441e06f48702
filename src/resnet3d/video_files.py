"""Which files are videos: one answer for data preparation, training on video files and classify."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import FrozenSet, Iterator, Optional, Union

import numpy as np

# Containers PyAV (FFmpeg) opens; compared in lower case.
# (.ts, .mts, .m2ts: MPEG transport streams, as camcorders and broadcast recordings write them.)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                    ".ts", ".mts", ".m2ts")


def is_video_file(path: Union[str, "os.PathLike[str]"]) -> bool:
    """A video container's extension and not a hidden file (macOS leaves ``._name.mp4``
    metadata files beside copied videos; they are not videos)."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def video_files_below(folder: Path, min_depth: int = 0, max_depth: Optional[int] = None) -> Iterator[Path]:
    """Every video file under ``folder``: each folder's files by name, then its subfolders by name.

    Symlinked folders are followed (a data set is often a tree of links), except one that leads
    back to a folder above it, so a link cycle ends. Hidden files and folders are passed over. A
    dangling link with a video's name is listed too: reading it then fails with a message naming
    it, where leaving it out would drop a video without a word. ``min_depth``/``max_depth`` count
    folders below ``folder`` (its own files are at depth 0).
    """
    def walk(directory: Path, above: FrozenSet[str], depth: int) -> Iterator[Path]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:  # unreadable folder: nothing of it can be listed
            return
        if depth >= min_depth:
            yield from (Path(entry.path) for entry in entries
                        if is_video_file(entry.name) and not _is_dir(entry))
        if max_depth is not None and depth >= max_depth:
            return
        for entry in entries:
            if entry.name.startswith(".") or not _is_dir(entry):
                continue
            real = os.path.realpath(entry.path)
            if real not in above:
                yield from walk(Path(entry.path), above | {real}, depth + 1)

    yield from walk(Path(folder), frozenset({os.path.realpath(folder)}), 0)


def _is_dir(entry: "os.DirEntry[str]") -> bool:
    try:
        return entry.is_dir()  # follows links; False for a dangling one
    except OSError:
        return False


class DisplayFrames:
    """Decoded frames of one video stream as uint8 RGB (H, W, 3), shaped as a player shows them
    and as ``prepare frames`` writes them: turned upright by the display matrix (phone videos; the
    originals' ``ffmpeg`` rotates so by default) and stretched to the display aspect ratio when
    the pixels are not square (sample aspect ratio other than 1).

    One per stream: it keeps one swscale context (a new one per frame measured ~6x slower);
    ``reformatter`` shares one across streams.
    """

    def __init__(self, stream, reformatter=None) -> None:
        from av.video.reformatter import VideoReformatter

        self.sar = Fraction(1)
        for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
            if sar and sar.numerator > 0 and sar.denominator > 0:
                self.sar = Fraction(sar.numerator, sar.denominator)
                break
        self.reformatter = reformatter or VideoReformatter()

    def rgb(self, frame) -> np.ndarray:
        from resnet3d.prepare.decode import frame_orientation

        width = frame.width if self.sar == 1 else max(1, round(frame.width * self.sar))
        image = self.reformatter.reformat(frame, width, frame.height, format="rgb24").to_ndarray()
        orientation = frame_orientation(frame)
        return image if orientation.identity else np.ascontiguousarray(orientation.apply(image))
