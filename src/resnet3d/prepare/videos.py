"""Finding the videos under VIDEO_DIR and naming each one's frame folder under FRAME_DIR.

Layouts (REFERENCE.md §1):

- ``kinetics``, ``ucf101``, ``hmdb51``: ``VIDEO_DIR/<class>/<name>.<ext>`` ->
  ``<class>/<name>/``; Kinetics' test set is the folder ``test/`` and maps to ``test/<name>/``.
- ``activitynet``: ``VIDEO_DIR/<name>.<ext>`` -> ``v_<youtube id>/`` (files already named
  ``v_<id>.mp4``, as the official crawler writes them, keep their name).
- ``flat``: ``VIDEO_DIR/<name>.<ext>`` -> ``<name>/``.

Without a layout, class subfolders mean the class layout and loose files mean flat.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
LAYOUTS = ("kinetics", "activitynet", "ucf101", "hmdb51", "flat")
CLASS_LAYOUTS = ("kinetics", "ucf101", "hmdb51")
YOUTUBE_ID_LENGTH = 11


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def activitynet_folder_name(stem: str) -> str:
    """``v_<id>`` for a video named ``<id>`` or ``v_<id>``.

    A YouTube id is 11 characters and may itself start with ``v_``, so only a 13-character
    ``v_...`` stem counts as already prefixed.
    """
    if stem.startswith("v_") and len(stem) == YOUTUBE_ID_LENGTH + 2:
        return stem
    return f"v_{stem}"


@dataclass(frozen=True)
class VideoJob:
    video: Path
    output: Path  # frame folder relative to FRAME_DIR (HDF5: this path + ".hdf5")


@dataclass
class VideoList:
    layout: str
    jobs: List[VideoJob]
    duplicates: List[Tuple[Path, str]] = field(default_factory=list)  # (video, reason)
    ignored: List[Path] = field(default_factory=list)  # videos the layout does not cover


def _videos_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_video_file(p))


def _class_dirs(video_dir: Path) -> List[Path]:
    return sorted(p for p in video_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(video_dir: Path) -> str:
    loose = _videos_in(video_dir)
    classes = [d for d in _class_dirs(video_dir) if _videos_in(d)]
    if loose and classes:
        raise UserError(
            f"{video_dir} holds both loose videos (e.g. '{loose[0].name}') and class folders "
            f"(e.g. '{classes[0].name}/'): pass --layout flat for the loose videos or "
            "--layout kinetics/ucf101/hmdb51 for the class folders"
        )
    if classes:
        return "kinetics"
    if loose:
        return "flat"
    raise UserError(
        f"no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) in {video_dir} or its subfolders"
    )


def find_videos(video_dir: Path, layout: Optional[str] = None) -> VideoList:
    """Every video the layout covers, sorted, each with its output folder."""
    if not video_dir.is_dir():
        raise UserError(f"video directory {video_dir} does not exist (or is not a directory)")
    if layout is None:
        layout = detect_layout(video_dir)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    jobs: List[VideoJob] = []
    ignored: List[Path] = []
    if layout in CLASS_LAYOUTS:
        ignored.extend(_videos_in(video_dir))
        for class_dir in _class_dirs(video_dir):
            for video in _videos_in(class_dir):
                jobs.append(VideoJob(video, Path(class_dir.name) / video.stem))
    else:
        for video in _videos_in(video_dir):
            name = activitynet_folder_name(video.stem) if layout == "activitynet" else video.stem
            jobs.append(VideoJob(video, Path(name)))
        for sub in _class_dirs(video_dir):
            ignored.extend(_videos_in(sub))
    unique: List[VideoJob] = []
    first_of: Dict[Path, Path] = {}
    duplicates: List[Tuple[Path, str]] = []
    for job in jobs:
        if job.output in first_of:
            duplicates.append(
                (job.video, f"same output folder '{job.output}' as {first_of[job.output]}; rename one of them")
            )
            continue
        first_of[job.output] = job.video
        unique.append(job)
    return VideoList(layout=layout, jobs=unique, duplicates=duplicates, ignored=ignored)

