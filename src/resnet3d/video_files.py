"""Which files are videos: one answer for data preparation, training on video files and classify."""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Union

import numpy as np

# Containers PyAV (FFmpeg) opens; compared in lower case.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


def is_video_file(path: Union[str, "os.PathLike[str]"]) -> bool:
    """A video container's extension and not a hidden file (macOS leaves ``._name.mp4``
    metadata files beside copied videos; they are not videos)."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


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
