"""Frame folders as both originals read them: ``image_00001.jpg`` ... plus the seed's ``n_frames``
(the highest frame index, as text) and ``fps`` (frames / duration, 2 decimals) files.

``inspect_folder`` tells what an existing folder holds, so that extraction can skip finished
work, redo partial work, and leave alone anything that is not frame output.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from resnet3d.fileio import atomic_write_text

IMAGE_PATTERN = "image_{:05d}.jpg"
IMAGE_RE = re.compile(r"^image_(\d+)\.jpg$")
N_FRAMES_FILE = "n_frames"
FPS_FILE = "fps"
# What the originals' extraction leaves in a frame folder; anything else is the user's.
FRAME_OUTPUT_FILES = (N_FRAMES_FILE, FPS_FILE)

# Work folders of an extraction in progress: hidden (a leading dot) so that the originals' tools,
# which skip hidden names, and our own scans never take them for a video.
PARTIAL_SUFFIX = ".resnet3d-partial"
OLD_SUFFIX = ".resnet3d-old"


def image_name(index: int) -> str:
    return IMAGE_PATTERN.format(index)


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def old_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{OLD_SUFFIX}")


def format_fps(fps: float) -> str:
    """The seed's ``fps`` file content: Python's ``round(x, 2)`` printed, then a newline."""
    return f"{round(fps, 2)}\n"


def seed_fps(n_frames: int, duration_s: float) -> float:
    """The seed's rule: frames in the folder divided by the video's duration, 2 decimals."""
    return round(n_frames / duration_s, 2)


def read_number(path: Path) -> Optional[float]:
    try:
        return float(path.read_text(encoding="utf-8-sig").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def count_image_files(folder: Path) -> int:
    """The successor's count: entries whose name contains 'image' and does not start with '.'."""
    return sum(1 for name in os.listdir(folder) if "image" in name and not name.startswith("."))


def image_indices(folder: Path) -> List[int]:
    return sorted(int(m.group(1)) for m in map(IMAGE_RE.match, os.listdir(folder)) if m)


FLOW_X_RE = re.compile(r"^flow_x_(\d+)\.jpg$")


def flow_frame_count(folder: Path) -> Optional[int]:
    """The frames of an optical-flow folder as training reads it (``u/`` + ``v/`` of
    ``image_%05d.jpg``, or ``flow_x_%05d.jpg`` + ``flow_y_%05d.jpg``): the successor's count of the
    x direction; None when ``folder`` is not a flow folder."""
    if (folder / "u").is_dir() and (folder / "v").is_dir():
        return count_image_files(folder / "u")
    try:
        n = sum(1 for name in os.listdir(folder) if FLOW_X_RE.match(name))
    except OSError:
        return None
    return n or None


def unread_frames(folder: Path) -> str:
    """Why training would read none of the images in ``folder``, with the fix; "" when it reads
    them or the folder holds no images. Images under other names (another tool's
    ``img_00001.jpg``, ``.JPG``, ``.jpeg``) or with another zero padding (``image_0001.jpg``,
    ``image_000001.jpg``, ffmpeg's %04d/%06d): the training loader's own explanation
    (``resnet3d.data.sources``), so that preparation and training apply one rule and tell one story."""
    from resnet3d.data.sources import JpegFolderSource

    return JpegFolderSource(str(folder)).naming_problem()


@dataclass
class FolderState:
    """What an existing output folder holds."""

    exists: bool
    n_images: int = 0
    highest: int = 0
    marker: Optional[int] = None  # the n_frames file's value
    other_files: List[str] = field(default_factory=list)  # neither frames nor n_frames/fps

    @property
    def contiguous(self) -> bool:
        """Frames 1..highest, none missing."""
        return self.n_images == self.highest

    @property
    def finished(self) -> bool:
        """Complete by its own ``n_frames`` marker: frames 1..n_frames all present."""
        return bool(self.marker) and self.contiguous and self.highest == self.marker

    @property
    def frame_output_only(self) -> bool:
        """Holds nothing but what an extraction writes, so replacing it loses nothing of the user's."""
        return not self.other_files


def inspect_folder(folder: Path) -> FolderState:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return FolderState(exists=False)
    except NotADirectoryError:
        return FolderState(exists=True, other_files=[folder.name])
    indices = []
    other = []
    for name in names:
        match = IMAGE_RE.match(name)
        if match:
            indices.append(int(match.group(1)))
        elif name not in FRAME_OUTPUT_FILES:
            other.append(name)
    marker = None
    if N_FRAMES_FILE in names:
        value = read_number(folder / N_FRAMES_FILE)
        marker = int(value) if value is not None and value == int(value) else None
    return FolderState(
        exists=True,
        n_images=len(indices),
        highest=max(indices, default=0),
        marker=marker,
        other_files=sorted(other),
    )


def write_markers(folder: Path, n_frames: int, fps: Optional[float], atomic: bool = False) -> None:
    """``fps`` first and ``n_frames`` last: a folder with ``n_frames`` is complete.

    Inside a partial folder (renamed into place once complete) plain writes suffice and spare two
    fsyncs per video; ``atomic`` is for folders already in place.
    """

    def write(path: Path, text: str) -> None:
        if atomic:
            atomic_write_text(path, text)
        else:
            path.write_text(text, encoding="utf-8")

    if fps is not None and fps > 0:
        write(folder / FPS_FILE, format_fps(fps))
    write(folder / N_FRAMES_FILE, str(n_frames))

