"""The seed's ``n_frames`` and ``fps`` files, for frame folders made by other tools
(the seed's ``utils/n_frames_kinetics.py`` and ``utils/fps.py``).

``prepare frames`` writes both itself; these are for folders extracted some other way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_text, require_folder
from resnet3d.prepare.decode import VideoError, VideoReader
from resnet3d.prepare.frame_folders import (
    FPS_FILE,
    FRAME_OUTPUT_FILES,
    IMAGE_RE,
    N_FRAMES_FILE,
    format_fps,
    image_indices,
    read_number,
    seed_fps,
    unread_frames,
)
from resnet3d.prepare.videos import activitynet_folder_name, find_videos


@dataclass
class NFramesReport:
    frame_dir: Path
    written: int = 0
    unchanged: int = 0
    empty: List[str] = field(default_factory=list)
    gaps: List[str] = field(default_factory=list)
    unread: List[str] = field(default_factory=list)  # "<folder>: why training reads none of its frames"

    def __str__(self) -> str:
        text = f"n_frames in {self.frame_dir}: {self.written} written, {self.unchanged} already right"
        if self.unread:
            text += (f"; {len(self.unread)} folders left without n_frames, as training reads none of their "
                     f"frames (e.g. {self.unread[0]})")
        if self.empty:
            text += f"; {len(self.empty)} empty video folders got n_frames 0 (e.g. {', '.join(self.empty[:3])})"
        if self.gaps:
            text += (
                f"; {len(self.gaps)} folders miss frames below their highest index, so training will find "
                f"holes (e.g. {', '.join(self.gaps[:3])}): extract them again"
            )
        return text


def write_n_frames_files(frame_dir: Path) -> NFramesReport:
    """Every folder holding ``image_*.jpg`` gets ``n_frames`` = its highest frame index. An empty
    folder beside such folders (a video whose extraction produced nothing) gets 0, as in the seed."""
    require_folder(frame_dir, "frame directory")
    report = NFramesReport(frame_dir)
    frame_folders: List[Path] = []
    empty_leaves: List[Path] = []
    for folder, subdirs, files in os.walk(frame_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        path = Path(folder)
        if any(IMAGE_RE.match(name) for name in files):
            frame_folders.append(path)
        elif path != frame_dir and not subdirs and all(f.startswith(".") or f in FRAME_OUTPUT_FILES for f in files):
            empty_leaves.append(path)
    if not frame_folders:
        raise UserError(f"no folder under {frame_dir} holds image_%05d.jpg frames: "
                        + (_other_frame_names(frame_dir) or "extract frames first (resnet3d prepare frames)"))
    parents_of_videos = {folder.parent for folder in frame_folders}
    for path in frame_folders + [leaf for leaf in empty_leaves if leaf.parent in parents_of_videos]:
        problem = unread_frames(path)
        if problem:  # image_0001.jpg, ...: an n_frames file would count frames the loader never finds
            report.unread.append(f"{path}: {problem}")
            continue
        indices = image_indices(path)
        highest = max(indices, default=0)
        if not indices:
            report.empty.append(str(path))
        elif len(indices) != highest:
            report.gaps.append(str(path))
        if read_number(path / N_FRAMES_FILE) == highest:
            report.unchanged += 1
            continue
        atomic_write_text(path / N_FRAMES_FILE, str(highest))
        report.written += 1
    if report.unread and not (report.written or report.unchanged):
        raise UserError(f"no folder under {frame_dir} holds frames training reads: {report.unread[0]}")
    return report


def _other_frame_names(frame_dir: Path) -> str:
    """What the first folder holding images under other names (another tool's ``img_00001.jpg``)
    holds and the fix; "" when there is none."""
    for folder, subdirs, _ in os.walk(frame_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        problem = unread_frames(Path(folder))
        if problem:
            return f"{folder}: {problem}"
    return ""


@dataclass
class FpsFilesReport:
    written: int = 0
    missing: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"fps files: {self.written} written"
        if self.missing:
            text += f"; {len(self.missing)} videos have no frame folder (e.g. {', '.join(self.missing[:3])})"
        if self.failed:
            text += f"; {len(self.failed)} failed: {'; '.join(self.failed[:3])}"
        return text


def write_fps_files(video_dir: Path, frame_dir: Path, layout: Optional[str] = None) -> FpsFilesReport:
    """Each video's folder gets ``fps`` = frames in the folder / the video's duration."""
    require_folder(frame_dir, "frame directory")
    report = FpsFilesReport()
    for job in find_videos(video_dir, layout).jobs:
        folder = _frame_folder(frame_dir, job.output)
        if folder is None:
            report.missing.append(str(frame_dir / job.output))
            continue
        n_frames = len(image_indices(folder))
        try:
            with VideoReader(job.video) as reader:
                duration = reader.duration_s
        except VideoError as error:
            report.failed.append(f"{job.video}: {error}")
            continue
        if not duration or not n_frames:
            report.failed.append(f"{job.video}: " + ("no duration in the file" if not duration else f"no frames in {folder}"))
            continue
        atomic_write_text(folder / FPS_FILE, format_fps(seed_fps(n_frames, duration)))
        report.written += 1
    return report


def _frame_folder(frame_dir: Path, output: Path) -> Optional[Path]:
    """The video's folder: named like the video, or ``v_<name>`` (ActivityNet)."""
    for candidate in (frame_dir / output, frame_dir / output.parent / activitynet_folder_name(output.name)):
        if candidate.is_dir():
            return candidate
    return None

