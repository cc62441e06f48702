"""Moments in Time's official files -> the shared annotation JSON.

ANNOTATION_DIR is the unpacked ``Moments_in_Time_Raw`` folder (the successor's DIR_PATH):

- ``moments_categories.txt``: ``name,index`` per line (``clapping,0``). The labels are the names
  in file order, as the successor's ``util_scripts/mit_json.py`` takes them; the index column
  is not used.
- ``trainingSet.csv``, ``validationSet.csv``: no header line, rows
  ``label/file.mp4,label,agreement,disagreement``.
- ``testingSet.csv`` (optional): a bare ``file.mp4`` per row.

A video's key is its file name without the extension. Every video gets the successor's segment
from ``FRAME_DIR/<label>/<key>`` (``FRAME_DIR/test/<key>`` for testing) or its ``.hdf5`` file;
one with nothing on disk gets no segment and is counted, as in ``kinetics-json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import refuse_existing, require_folder
from resnet3d.prepare.annotation_json import Database, add_segments, summary_line, video_key, write_annotation
from resnet3d.prepare.tables import csv_records, where

CATEGORIES_FILE = "moments_categories.txt"
SUBSET_FILES = {"training": "trainingSet.csv", "validation": "validationSet.csv", "testing": "testingSet.csv"}
LABELLED_ROW = "'<label>/<file>.mp4,<label>,<agreement>,<disagreement>'"
RELEASE_FIX = "check that the CSVs and moments_categories.txt come from the same Moments in Time release"


def read_categories(path: Path) -> List[str]:
    labels: List[str] = []
    first_seen: Dict[str, str] = {}
    for number, fields in csv_records(path):
        at = where(path, number)
        if len(fields) > 2 or not fields[0]:
            raise UserError(f"{at}: expected '<class name>,<index>', got '{','.join(fields)}'")
        if len(fields) == 2 and not fields[1].isdigit():
            raise UserError(f"{at}: class index '{fields[1]}' is not a whole number; expected '<class name>,<index>'")
        name = fields[0]
        if name in first_seen:
            raise UserError(f"{at}: class '{name}' listed twice (first at {first_seen[name]}); remove one of the lines")
        first_seen[name] = at
        labels.append(name)
    if not labels:
        raise UserError(f"{path}: no classes listed; it should hold one '<class name>,<index>' line per class")
    return labels


def _file_name(text: str, at: str, expected: str) -> str:
    """The file name of ``label/file.mp4`` (or of a bare ``file.mp4``), checked."""
    name = text.rpartition("/")[2]
    if not name or not video_key(name):
        raise UserError(f"{at}: no video file name in '{text}'; expected {expected}")
    return name


def read_subset(path: Path, subset: str, labels: List[str], categories: Path, database: Database) -> None:
    known = set(labels)
    for number, fields in csv_records(path):
        at = where(path, number)
        if subset == "testing":
            # a bare file name; a folder before it or further columns change nothing
            if not fields[0]:
                raise UserError(f"{at}: empty video file name; expected '<file>.mp4'")
            database.add(video_key(_file_name(fields[0], at, "'<file>.mp4'")), subset, None, at)
            continue
        if not 2 <= len(fields) <= 4:
            raise UserError(f"{at}: expected {LABELLED_ROW}, got {len(fields)} field(s): '{','.join(fields)}'")
        video, label = fields[0], fields[1]
        folder, slash, _ = video.rpartition("/")
        if not slash:
            raise UserError(f"{at}: '{video}' has no class folder; expected {LABELLED_ROW}")
        name = _file_name(video, at, LABELLED_ROW)
        if not label:
            raise UserError(f"{at}: empty label; expected {LABELLED_ROW}")
        for count in fields[2:]:
            try:
                float(count)
            except ValueError:
                raise UserError(f"{at}: agreement/disagreement '{count}' is not a number; expected {LABELLED_ROW}: "
                                "is this a Moments in Time CSV?") from None
        if folder.rpartition("/")[2] != label:
            raise UserError(f"{at}: the video's folder '{folder}' is not its label '{label}'; the frames are "
                            f"looked for under FRAME_DIR/<label>/: correct the line ({RELEASE_FIX})")
        if label not in known:
            raise UserError(f"{at}: label '{label}' is not in {categories}; {RELEASE_FIX}")
        database.add(video_key(name), subset, label, at)


def official_files(annotation_dir: Path) -> Dict[str, Optional[Path]]:
    """The categories file and the subsets' CSVs (the testing CSV is optional)."""
    require_folder(annotation_dir, "annotation directory", f"give the folder of the Moments in Time download that "
                   f"holds {CATEGORIES_FILE} and the CSVs (Moments_in_Time_Raw)")
    files: Dict[str, Optional[Path]] = {"categories": annotation_dir / CATEGORIES_FILE}
    files.update({subset: annotation_dir / name for subset, name in SUBSET_FILES.items()})
    for what in ("categories", "training", "validation"):
        path = files[what]
        if not path.is_file():  # type: ignore[union-attr]
            raise UserError(
                f"{path}: file not found; ANNOTATION_DIR must hold {CATEGORIES_FILE}, {SUBSET_FILES['training']} and "
                f"{SUBSET_FILES['validation']} ({SUBSET_FILES['testing']} is optional), as Moments_in_Time_Raw/ does"
            )
    if not files["testing"].is_file():  # type: ignore[union-attr]
        files["testing"] = None
    return files


def build(annotation_dir: Path) -> Tuple[List[str], Database]:
    files = official_files(annotation_dir)
    categories: Path = files["categories"]  # type: ignore[assignment]
    labels = read_categories(categories)
    database = Database()
    for subset in SUBSET_FILES:
        path = files[subset]
        if path is not None:
            read_subset(path, subset, labels, categories, database)
    return labels, database


def mit_json(annotation_dir: Path, frame_dir: Path, out_json: Path, file_type: str = "auto",
             overwrite: bool = False) -> str:
    """``file_type``: "jpg" frame folders, "hdf5" files, or "auto" (each video's folder, else its
    ``.hdf5`` file): the successor's script has no argument for it."""
    refuse_existing(out_json, "OUT_JSON", overwrite)
    labels, database = build(annotation_dir)
    segments = add_segments(database.entries, frame_dir, file_type)
    write_annotation(out_json, labels, database.entries)
    return summary_line(out_json, labels, database, segments)
