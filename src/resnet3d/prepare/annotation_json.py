"""The shared annotation JSON (REFERENCE.md §2), as every builder writes it:

``{"labels": [...], "database": {key: {"subset": ..., "annotations": {"label": ...}}}}``

plus, in the successor's flavour, ``annotations.segment``: ``[1, n_frames + 1]`` for a JPEG
folder (``n_frames`` = the ``image*`` files in it) or ``[0, n_frames]`` for an HDF5 file. A
video without frames on disk gets no segment and is counted as missing; when it is on disk in a
class folder spelt otherwise than its label (``air_drumming`` for ``air drumming``), the summary
says so and how to fix it, since training looks under the label exactly.

The file is written with ``json.dump``'s default formatting, byte for byte what the originals'
scripts write for the same input.
"""
from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json, require_folder
from resnet3d.prepare.frame_folders import count_image_files, image_name, unread_frames

SUBSETS = ("training", "validation", "testing")
TEST_FOLDER = "test"  # Kinetics keeps its unlabelled test videos in <frame_dir>/test/


class Database:
    """Videos by key, each added once; a key listed twice is an error unless both lines agree."""

    def __init__(self) -> None:
        self.entries: Dict[str, dict] = {}
        self.origin: Dict[str, str] = {}
        self.repeated = 0  # identical repeats, dropped

    def add(self, key: str, subset: str, label: Optional[str], where: str) -> None:
        entry = {"subset": subset, "annotations": {} if label is None else {"label": label}}
        if key in self.entries:
            if self.entries[key] == entry:
                self.repeated += 1
                return
            first = self.entries[key]
            raise UserError(
                f"{where}: duplicate video key '{key}' ({_describe(entry)}); {self.origin[key]} already "
                f"listed it ({_describe(first)}); remove one of the two lines"
            )
        self.entries[key] = entry
        self.origin[key] = where

    def subset_counts(self) -> Counter:
        return Counter(entry["subset"] for entry in self.entries.values())


def _describe(entry: dict) -> str:
    label = entry["annotations"].get("label")
    return entry["subset"] + (f", label '{label}'" if label is not None else "")


@dataclass
class SegmentReport:
    with_frames: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    missing_examples: List[str] = field(default_factory=list)
    empty: Counter = field(default_factory=Counter)  # a folder without frames training reads (segment [1, 1] if no image*)
    empty_examples: List[str] = field(default_factory=list)
    # missing videos found in a folder named like their label but not the same (mmaction's
    # rename_classnames: 'passing_American_football_-in_game-'): folder -> (label, how many)
    renamed: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    frame_dir: Optional[Path] = None


def label_form(name: str) -> str:
    """A class name with case, spaces, underscores and punctuation dropped, so that the folder
    'passing_American_football_-in_game-' (mmaction's rename) or 'passing_american_football_in_game'
    finds the label 'passing American football (in game)'."""
    return "".join(character for character in name.casefold() if character.isalnum())


class RenamedLabels:
    """Class folders under a frame directory whose names differ from a label only in spelling."""

    def __init__(self, frame_dir: Path) -> None:
        self.frame_dir = frame_dir
        self._by_form: Optional[Dict[str, List[str]]] = None
        self._found: Dict[str, List[str]] = {}

    def folders(self, label: str) -> List[str]:
        """The folders spelt like ``label`` but not ``label`` itself, looked up once per label."""
        if label not in self._found:
            if self._by_form is None:
                self._by_form = {}
                for entry in os.scandir(self.frame_dir):
                    if entry.is_dir() and not entry.name.startswith("."):
                        self._by_form.setdefault(label_form(entry.name), []).append(entry.name)
            self._found[label] = [n for n in self._by_form.get(label_form(label), []) if n != label]
        return self._found[label]


def add_segments(entries: Dict[str, dict], frame_dir: Path, file_type: str = "jpg") -> SegmentReport:
    """The successor's segments, from ``<frame_dir>/<label or test>/<key>`` (or ``.hdf5``).

    ``file_type`` "auto" takes each video's frame folder, else its ``.hdf5`` file (what
    ``prepare frames --hdf5`` wrote): the split-file converters have no flag for it."""
    require_folder(frame_dir, "frame directory", "extract frames first (resnet3d prepare frames)")
    report = SegmentReport(frame_dir=frame_dir)
    renamed = RenamedLabels(frame_dir)
    for key, entry in entries.items():
        annotations = entry["annotations"]
        unread = False
        label = annotations.get("label", TEST_FOLDER)
        if file_type == "hdf5" or (file_type == "auto" and not (frame_dir / label / key).is_dir()
                                   and (frame_dir / label / f"{key}.hdf5").is_file()):
            path = frame_dir / label / f"{key}.hdf5"
            if path.is_file():
                from resnet3d.prepare.hdf5 import read_n_frames

                annotations["segment"] = [0, read_n_frames(path)]
        else:
            path = frame_dir / label / key
            if path.is_dir():
                annotations["segment"] = [1, count_image_files(path) + 1]
                # the successor counts every 'image*' name; training reads image_%05d.jpg only
                unread = not (path / image_name(1)).is_file() and bool(unread_frames(path))
        if "segment" in annotations and (annotations["segment"][1] <= annotations["segment"][0] or unread):
            report.empty[entry["subset"]] += 1  # kept, as the successor wrote it; training skips it
            if len(report.empty_examples) < 3:
                report.empty_examples.append(str(path))
        elif "segment" in annotations:
            report.with_frames[entry["subset"]] += 1
        else:
            report.missing[entry["subset"]] += 1
            if len(report.missing_examples) < 3:
                report.missing_examples.append(str(path))
            name = path.name
            for folder in renamed.folders(label):
                if (frame_dir / folder / name).exists():
                    count = report.renamed.get(folder, (label, 0))[1]
                    report.renamed[folder] = (label, count + 1)
                    break
    return report


def write_annotation(path: Path, labels: List[str], entries: Dict[str, dict]) -> None:
    atomic_write_json(path, {"labels": labels, "database": entries})


def summary_line(
    path: Path, labels: List[str], database: Database, segments: Optional[SegmentReport] = None
) -> str:
    counts = database.subset_counts()
    parts: List[str] = []
    for subset in SUBSETS:
        if not counts[subset]:
            continue
        text = f"{subset} {counts[subset]}"
        if segments is not None:
            empty = f", {segments.empty[subset]} with no frame" if segments.empty[subset] else ""
            text += f" ({segments.with_frames[subset]} with frames, {segments.missing[subset]} missing on disk{empty})"
        parts.append(text)
    line = f"wrote {path}: {len(labels)} labels, " + ", ".join(parts or ["no videos"])
    if database.repeated:
        line += f"; {database.repeated} repeated identical lines ignored"
    if segments is not None and segments.missing_examples:
        line += f"; missing e.g. {', '.join(segments.missing_examples)}"
    if segments is not None and segments.renamed:
        line += "; " + _renamed_note(segments)
    if segments is not None and segments.empty_examples:
        line += (f"; folders with no image_00001.jpg ... frames, e.g. {', '.join(segments.empty_examples)}: extract "
                 "them with 'resnet3d prepare frames', or rename the frames image_%05d.jpg")
    return line


def _renamed_note(segments: SegmentReport) -> str:
    """The missing videos that are on disk under a class folder spelt otherwise, and the fix."""
    n_videos = sum(count for _, count in segments.renamed.values())
    renamed = sorted(segments.renamed.items())
    moves = [f"'{folder}' for '{label}'" for folder, (label, _) in renamed]
    shown = ", ".join(moves[:3]) + (f" and {len(moves) - 3} more" if len(moves) > 3 else "")
    folder, (label, _) = renamed[0]
    return (f"{n_videos} of the missing videos are on disk in {len(moves)} class "
            f"folder{'s' if len(moves) > 1 else ''} spelt otherwise than their label ({shown}): training looks in "
            f"{segments.frame_dir}/<label>/<key>, the label exactly as the annotation file spells it; rename those "
            f"folders to their labels (mv '{segments.frame_dir / folder}' '{segments.frame_dir / label}') and run "
            "this command again")


def split_key_label(text: str) -> Tuple[str, str]:
    """``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`` -> (label, video name without extension)."""
    label, _, name = text.rpartition("/")
    return label, video_key(name)


def video_key(file_name: str) -> str:
    """A video file's key: its name without the extension (the frame folder's name)."""
    return Path(file_name).stem if Path(file_name).suffix else file_name


def write_split_files(
    databases: Dict[int, "Database"], labels: List[str], frame_dir: Path, out_dir: Path, file_name: str, overwrite: bool
) -> str:
    """Write one JSON per split (``file_name`` formats the split number, e.g. ``ucf101_0{}.json``).

    Every output is checked before the first is written, so a refusal leaves nothing half done.
    """
    from resnet3d.fileio import refuse_existing

    outputs = {split: out_dir / file_name.format(split) for split in databases}
    for out in outputs.values():
        refuse_existing(out, "output", overwrite)
    segments = {split: add_segments(database.entries, frame_dir, "auto") for split, database in databases.items()}
    flat = _refuse_when_nothing_is_there(databases, segments, frame_dir)
    lines = []
    for split, database in databases.items():
        write_annotation(outputs[split], labels, database.entries)
        lines.append(summary_line(outputs[split], labels, database, segments[split]))
    if flat:
        lines.append(f"{frame_dir} holds the videos themselves, not in class folders: extract them to where these JSONs "
                     f"expect them with 'resnet3d prepare frames {frame_dir} FRAME_DIR --annotation JSON' (once per JSON), "
                     "then run this command again on FRAME_DIR with --overwrite for the segments")
    return "\n".join(lines)


def _refuse_when_nothing_is_there(databases: Dict[int, "Database"], segments: Dict[int, SegmentReport],
                                  frame_dir: Path) -> bool:
    """Not one listed video under ``frame_dir``, as frame folders or as video files (a JSON
    without segments still serves ``--file_type video``, and one made from a flat folder of
    videos places them: ``prepare frames --annotation``): the folder is the wrong one, most
    often one level off. The JSONs would be useless, and a rerun would need --overwrite.
    True when ``frame_dir`` is such a flat folder of videos."""
    if any(sum(report.with_frames.values()) + sum(report.empty.values()) for report in segments.values()):
        return False
    entries = [(key, entry) for database in databases.values() for key, entry in database.entries.items()]
    looked = [frame_dir / entry["annotations"].get("label", TEST_FOLDER) / key for key, entry in entries[:50]]
    videos_there = any(next(path.parent.glob(f"{glob.escape(path.name)}.*"), None)
                       for path in looked if path.parent.is_dir())
    # a flat folder of the videos themselves: the JSON places them (prepare frames --annotation)
    flat = any(next(frame_dir.glob(f"{glob.escape(path.name)}.*"), None) for path in looked)
    if not looked or videos_there or flat:
        return flat and not videos_there
    example = looked[0]
    deeper = sorted(sub for sub in frame_dir.iterdir()
                    if sub.is_dir() and (sub / example.parent.name / example.name).exists())
    hint = (f"they are one level deeper: give {deeper[0]}" if deeper else
            "give the folder that holds the class folders of the extracted frames (resnet3d prepare frames)")
    raise UserError(f"none of the {len(entries)} videos the split files list has frames under {frame_dir} "
                    f"(looked for e.g. {example}); {hint}")
