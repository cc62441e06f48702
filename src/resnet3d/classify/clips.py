"""Clips of one's own video files: PyAV decoding straight to model-sized uint8 clips.

No frames on disk and no ffmpeg binary (the companion tool extracted every frame to JPEGs with
ffmpeg first). Each decoded frame is centre-cropped to a square and resized to ``sample_size``
at once, so memory holds only the frames of the clips being built, whatever the video's length.

Clips start at frames 1, 1 + stride, ... (stride defaults to ``sample_duration``: consecutive
clips); the last clip that reaches the end of the video is loop-padded with its own frames, as
the companion tool and the originals pad. A clip's ``segment`` is ``[first, last]``: its first
and last real frame, 1-based and inclusive (the companion tool's convention).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch

from resnet3d.data import temporal
from resnet3d.data.spatial import center_box, resize_clip
from resnet3d.video_files import DisplayFrames

RESIZE_GROUP = 32  # frames resized together (one interpolate call)
# FFmpeg's decoding threads for one video (classify decodes one file at a time in its process)
FFMPEG_THREADS = min(8, os.cpu_count() or 1)


class VideoReadError(Exception):
    """The file cannot be opened or holds no decodable video frame."""


def timed_frames(path: str, problems: Optional[List[str]] = None) -> Iterator[Tuple[np.ndarray, float]]:
    """``(frame, seconds from the first frame)`` for every frame of the video stream, in order:
    uint8 RGB (H, W, 3), upright and at the display aspect ratio (``DisplayFrames``), as
    ``prepare frames`` extracts them (the same reader: cover-art streams are passed over, corrupt
    packets skipped, and the frames they lost, or that the encoder marked not coded, filled as
    ffmpeg's extraction fills them, with the times of the frames they stand for).

    Raises VideoReadError when nothing decodes. A video that yields frames but ends well short of
    the length its container announces (a cut download: its index survives, its data does not),
    or that breaks off, is not an error: its frames come out, and one line per problem saying how
    much of it decoded goes to ``problems`` (without that list, to the log, naming the file).
    """
    import logging

    from resnet3d.prepare.decode import VideoError, VideoReader

    try:
        reader = VideoReader(Path(path), threads=FFMPEG_THREADS)
    except VideoError as error:
        raise VideoReadError(str(error)) from None
    except Exception as error:  # FFmpeg's and PyAV's other failures come in many types
        raise VideoReadError(f"cannot open it as a video ({type(error).__name__}: {error})") from None
    found: List[str] = []
    shown = 0  # frames handed out, filled ones included
    filled = 0
    with reader:
        display = DisplayFrames(reader.stream)
        try:
            previous: Optional[Tuple[np.ndarray, float, float]] = None
            for frame, seconds, duration, missing in reader.frames_and_losses():
                picture = display.rgb(frame)
                # frames missing before this one (corrupt, or not coded) filled as ffmpeg's
                # extraction, which the companion tool's clips came from, fills them
                # (``prepare.decode.fill_lost``): the frame before repeats k - 1 times, this one once
                if previous is not None and missing:
                    before, at, lasts = previous
                    for repeat in range(1, missing):
                        yield before, at + repeat * lasts
                    yield picture, seconds - duration
                    shown, filled = shown + missing, filled + missing
                yield picture, seconds
                shown += 1
                previous = (picture, seconds, duration)
        except Exception as error:  # too many corrupt packets in a row, a frame swscale refuses, ...
            reason = str(error) if isinstance(error, VideoError) else f"{type(error).__name__}: {error}"
            if shown == 0:
                raise VideoReadError(reason) from None
            found.append(f"decoding stopped after frame {shown} ({reason})")
        try:
            reader.check_complete()
        except VideoError as error:
            if shown == 0:
                raise VideoReadError(str(error)) from None
            if not found:
                found.append(str(error))
        if reader.stats.lost and not found:  # (a decoder drops some frames without an error: counted by time)
            lost = reader.stats.lost
            found.append(f"{lost} frame{'' if lost == 1 else 's'} could not be decoded (corrupt data)")
    for problem in found:
        covered = (f"the clips cover {shown} frames, {filled} of them filled from the frames beside them as "
                   "ffmpeg's extraction fills them" if filled else f"the clips cover the {shown} frames that decoded")
        line = f"{problem}; {covered}"
        if problems is None:
            logging.getLogger("resnet3d.classify").warning("%s: %s", path, line)
        else:
            problems.append(line)


def decode_frames(path: str, problems: Optional[List[str]] = None) -> Iterator[np.ndarray]:
    """The frames of ``timed_frames`` without their times."""
    return (frame for frame, _ in timed_frames(path, problems))


def clip_starts(n_frames: int, duration: int, stride: int) -> List[int]:
    """1-based starts: every ``stride`` frames until a clip reaches the last frame."""
    starts = []
    start = 1
    while start <= max(n_frames, 1):
        starts.append(start)
        if start + duration - 1 >= n_frames:
            break
        start += stride
    return starts


def small_frames(frames: Iterator[np.ndarray], size: int) -> Iterator[torch.Tensor]:
    """Centre square of each frame resized to ``size``: uint8 (size, size, 3), resized in groups."""
    group: List[np.ndarray] = []

    def flush() -> Iterator[torch.Tensor]:
        shapes = {f.shape for f in group}
        if len(shapes) == 1:
            yield from resize_clip(torch.from_numpy(np.stack(group)), (size, size))
        else:  # frames changed size midway
            for f in group:
                yield resize_clip(torch.from_numpy(np.ascontiguousarray(f))[None], (size, size))[0]
        group.clear()

    for frame in frames:
        box = center_box(frame.shape[1], frame.shape[0])
        group.append(frame[box.y0 : box.y1, box.x0 : box.x1])
        if len(group) == RESIZE_GROUP:
            yield from flush()
    if group:
        yield from flush()


def video_clips(path: str, size: int, duration: int, stride: Optional[int] = None, t_stride: int = 1,
                problems: Optional[List[str]] = None) -> Iterator[Tuple[Tuple[int, int], torch.Tensor]]:
    """``((first, last), uint8 clip (T, size, size, 3))`` for each clip of the video, in order.

    ``t_stride`` > 1 keeps frames 1, 1 + t_stride, ... only (the training run's
    ``--sample_t_stride``): clips and ``stride`` count kept frames, while ``(first, last)`` stay
    the video's own frame numbers. Clips are emitted as soon as their frames are decoded; frames
    no later clip needs are dropped. A video that decodes only in part gives the clips of the
    frames that decoded, and says why in ``problems`` (``timed_frames``).
    """
    stride = stride or duration
    t_stride = max(1, t_stride)
    frame_number = lambda position: (position - 1) * t_stride + 1  # noqa: E731
    kept: dict = {}  # 1-based position among the kept frames -> small frame
    next_start = 1
    n = 0
    every_kept = itertools.islice(decode_frames(path, problems), 0, None, t_stride)
    for n, frame in enumerate(small_frames(every_kept, size), start=1):
        kept[n] = frame
        while next_start + duration - 1 <= n:
            indices = list(range(next_start, next_start + duration))
            yield (frame_number(next_start), frame_number(indices[-1])), torch.stack([kept[i] for i in indices])
            next_start += stride
            for old in [i for i in kept if i < next_start]:
                del kept[old]
    # clips that run past the end: loop-padded, until one reaches the last frame
    emitted_to_end = next_start > 1 and next_start - stride + duration - 1 >= n
    while not emitted_to_end and next_start <= n:
        real = list(range(next_start, n + 1))
        indices = temporal.loop_pad(real, duration)
        yield (frame_number(next_start), frame_number(n)), torch.stack([kept[i] for i in indices])
        emitted_to_end = True
