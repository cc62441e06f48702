"""ActivityNet: each video's frame rate into the official v1.3 JSON (the successor's form), and
optionally the seed's ``fps`` file into each frame folder.

The JSON keeps everything it had; each ``database[<id>]`` gains ``"fps"``. Where the rate comes
from:

- from a directory of videos (``v_<id>.mp4`` or ``<id>.mp4``, directly in it or, when none is,
  in split folders such as ``train_val/`` and ``test/``): the video stream's average frame rate,
  to 2 decimals, the figure ``ffprobe`` prints and the successor reads;
- from a directory of frame folders (``v_<id>/``): the folder's ``fps`` file, else the frames
  in the folder divided by the JSON's ``duration``.

The seed's ``fps`` file is frames in the folder / video duration, 2 decimals (its ``utils/fps.py``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json, atomic_write_text, read_user_json, refuse_existing, require_folder
from resnet3d.prepare.decode import VideoError, VideoReader
from resnet3d.prepare.frame_folders import FPS_FILE, count_image_files, format_fps, read_number, seed_fps
from resnet3d.prepare.videos import activitynet_folder_name
from resnet3d.video_files import is_video_file, video_files_below


def load_official_json(path: Path) -> dict:
    data = read_user_json(path, "ActivityNet JSON")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise UserError(f"{path}: no 'database' object; expected the official ActivityNet v1.3 JSON")
    return data


@dataclass
class FpsReport:
    out_json: Path
    updated: int = 0
    videos: int = 0
    not_in_json: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    fps_files: int = 0
    no_frame_folder: int = 0
    backup: Optional[Path] = None
    database_size: int = 0

    def __str__(self) -> str:
        text = f"wrote {self.out_json}: fps for {self.updated} of {self.database_size} videos in the database"
        missing = self.database_size - self.updated
        if missing:
            text += f" ({missing} have no video or frames here)"
        if self.not_in_json:
            text += f"; {len(self.not_in_json)} not in the JSON, ignored (e.g. {', '.join(self.not_in_json[:3])})"
        if self.failed:
            text += f"; {len(self.failed)} unreadable: {'; '.join(self.failed[:3])}"
        if self.fps_files or self.no_frame_folder:
            text += f"; {self.fps_files} fps files written"
            if self.no_frame_folder:
                text += f", {self.no_frame_folder} videos without a frame folder"
        if self.backup is not None:
            text += f"; the original is kept as {self.backup}"
        return text


def _video_fps(reader: VideoReader) -> Optional[float]:
    rate = reader.average_rate
    return round(rate, 2) if rate else None


def add_fps(
    source_dir: Path,
    json_path: Path,
    out_json: Optional[Path] = None,
    fps_files: bool = False,
    frame_dir: Optional[Path] = None,
    overwrite: bool = False,
) -> FpsReport:
    """Each video's fps into the JSON: written to ``out_json`` (refused if it exists, unless
    ``overwrite``), or, without ``out_json``, into ``json_path`` itself after the original is kept
    as ``<json>.bak`` (once: a later in-place run keeps the first backup, the untouched file).
    ``out_json`` naming ``json_path`` itself is the in-place mode too."""
    if out_json is not None and out_json.resolve() == json_path.resolve():
        out_json = None
    if out_json is not None:
        refuse_existing(out_json, "OUT_JSON", overwrite)
    data = load_official_json(json_path)
    database: Dict[str, dict] = data["database"]
    require_folder(source_dir, "the videos' folder", "give the folder of the ActivityNet videos or frame folders")
    videos = sorted(p for p in source_dir.iterdir() if p.is_file() and is_video_file(p))
    folders = sorted(p for p in source_dir.iterdir() if p.is_dir() and p.name.startswith("v_"))
    if not videos and not folders:  # split folders (train_val/, test/), as the archives hand them out
        videos = list(video_files_below(source_dir))
    report = FpsReport(out_json=out_json or json_path, database_size=len(database))
    if videos:
        if fps_files and frame_dir is None:
            raise UserError(f"--fps-files needs --frame-dir FRAME_DIR: {source_dir} holds videos, not frame folders")
        _from_videos(videos, database, report, frame_dir if fps_files else None)
    elif folders:
        _from_frame_folders(folders, database, report, fps_files)
    else:
        raise UserError(f"{source_dir} holds neither videos nor v_<id> frame folders")
    target = out_json or json_path
    if out_json is None:
        backup = json_path.with_name(json_path.name + ".bak")
        if not backup.exists():
            shutil.copy2(json_path, backup)
            report.backup = backup
    atomic_write_json(target, data)
    return report


def _database_id(stem: str, database: Dict[str, dict]) -> str:
    """The JSON's id of a video file named ``v_<id>`` or ``<id>``: the JSON settles what the name
    alone cannot (an 11-character ``v_...`` name is a bare YouTube id or ``v_`` + a shorter id)."""
    if stem.startswith("v_") and stem[2:] in database:
        return stem[2:]
    if stem in database:
        return stem
    return activitynet_folder_name(stem)[2:]


def _from_videos(videos: List[Path], database: Dict[str, dict], report: FpsReport, frame_dir: Optional[Path]) -> None:
    for video in videos:
        video_id = _database_id(video.stem, database)
        folder_name = f"v_{video_id}"
        report.videos += 1
        if video_id not in database:
            report.not_in_json.append(video.name)
            continue
        try:
            with VideoReader(video) as reader:
                fps = _video_fps(reader)
                duration = reader.duration_s
        except VideoError as error:
            report.failed.append(f"{video}: {error}")
            continue
        if fps is None:
            report.failed.append(f"{video}: no frame rate in the file")
            continue
        database[video_id]["fps"] = fps
        report.updated += 1
        if frame_dir is not None:
            folder = frame_dir / folder_name
            if not folder.is_dir():
                report.no_frame_folder += 1
            elif duration:
                atomic_write_text(folder / FPS_FILE, format_fps(seed_fps(count_image_files(folder), duration)))
                report.fps_files += 1


def _from_frame_folders(folders: List[Path], database: Dict[str, dict], report: FpsReport, fps_files: bool) -> None:
    for folder in folders:
        video_id = folder.name[2:]
        report.videos += 1
        entry = database.get(video_id)
        if entry is None:
            report.not_in_json.append(folder.name)
            continue
        fps = read_number(folder / FPS_FILE)
        if fps is None:
            duration = entry.get("duration")
            n_frames = count_image_files(folder)
            if not isinstance(duration, (int, float)) or duration <= 0 or not n_frames:
                report.failed.append(f"{folder}: no fps file, and no frames or no duration in the JSON to compute it")
                continue
            fps = seed_fps(n_frames, float(duration))
            if fps_files:
                atomic_write_text(folder / FPS_FILE, format_fps(fps))
                report.fps_files += 1
        entry["fps"] = fps
        report.updated += 1
