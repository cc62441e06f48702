"""The shared annotation JSON (REFERENCE.md §2), as every builder writes it:

``{"labels": [...], "database": {key: {"subset": ..., "annotations": {"label": ...}}}}``

plus, in the successor's flavour, ``annotations.segment``: ``[1, n_frames + 1]`` for a JPEG
folder (``n_frames`` = the ``image*`` files in it) or ``[0, n_frames]`` for an HDF5 file. A
video without frames on disk gets no segment and is counted as missing.

The file is written with ``json.dump``'s default formatting, byte for byte what the originals'
scripts write for the same input.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json
from resnet3d.prepare.frame_folders import count_image_files

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
    empty: Counter = field(default_factory=Counter)  # a folder without image* frames: segment [1, 1]
    empty_examples: List[str] = field(default_factory=list)


def add_segments(entries: Dict[str, dict], frame_dir: Path, file_type: str = "jpg") -> SegmentReport:
    """The successor's segments, from ``<frame_dir>/<label or test>/<key>`` (or ``.hdf5``)."""
    if not frame_dir.is_dir():
        raise UserError(f"frame directory {frame_dir} does not exist; extract frames first (resnet3d prepare frames)")
    report = SegmentReport()
    for key, entry in entries.items():
        annotations = entry["annotations"]
        label = annotations.get("label", TEST_FOLDER)
        if file_type == "hdf5":
            path = frame_dir / label / f"{key}.hdf5"
            if path.is_file():
                from resnet3d.prepare.hdf5 import read_n_frames

                annotations["segment"] = [0, read_n_frames(path)]
        else:
            path = frame_dir / label / key
            if path.is_dir():
                annotations["segment"] = [1, count_image_files(path) + 1]
        if "segment" in annotations and annotations["segment"][1] <= annotations["segment"][0]:
            report.empty[entry["subset"]] += 1  # kept, as the successor wrote it; training skips it
            if len(report.empty_examples) < 3:
                report.empty_examples.append(str(path))
        elif "segment" in annotations:
            report.with_frames[entry["subset"]] += 1
        else:
            report.missing[entry["subset"]] += 1
            if len(report.missing_examples) < 3:
                report.missing_examples.append(str(path))
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
    if segments is not None and segments.empty_examples:
        line += (f"; folders with no image_00001.jpg ... frames, e.g. {', '.join(segments.empty_examples)}: extract "
                 "them with 'resnet3d prepare frames', or rename the frames image_%05d.jpg")
    return line


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
    lines = []
    for split, database in databases.items():
        segments = add_segments(database.entries, frame_dir)
        write_annotation(outputs[split], labels, database.entries)
        lines.append(summary_line(outputs[split], labels, database, segments))
    return "\n".join(lines)
