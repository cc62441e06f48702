"""Which files are videos: one answer for data preparation, training on video files and classify."""
from __future__ import annotations

import os
from typing import Union

# Containers PyAV (FFmpeg) opens; compared in lower case.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


def is_video_file(path: Union[str, "os.PathLike[str]"]) -> bool:
    """A video container's extension and not a hidden file (macOS leaves ``._name.mp4``
    metadata files beside copied videos; they are not videos)."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS
