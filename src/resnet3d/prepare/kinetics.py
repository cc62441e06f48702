"""Kinetics CSVs -> the shared annotation JSON.

The CSVs have the columns ``label,youtube_id,time_start,time_end,split`` (the test CSV may lack
``label``). A video's key is ``<youtube_id>_<time_start:06d>_<time_end:06d>``; ``labels`` lists
the training CSV's labels in the order they first appear.

- The seed's form: three CSVs, no frame information (the seed reads each folder's ``n_frames``).
- The successor's form: ``kinetics-<N>_{train,val,test}.csv`` in one folder (the test CSV is
  optional) and a segment per video from its frame folder (``jpg``) or HDF5 file (``hdf5``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import refuse_existing, require_folder
from resnet3d.prepare.annotation_json import Database, add_segments, summary_line, write_annotation
from resnet3d.prepare.tables import csv_rows, where

KEY_COLUMNS = ("youtube_id", "time_start", "time_end")
LABELLED_COLUMNS = ("label",) + KEY_COLUMNS


def kinetics_key(youtube_id: str, time_start: int, time_end: int) -> str:
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def _seconds(value: str, column: str, at: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{at}: {column} '{value}' is not a number of seconds") from None
    if number != int(number) or number < 0:
        raise UserError(f"{at}: {column} '{value}' is not a whole, non-negative number of seconds")
    return int(number)


def read_csv(path: Path, subset: str) -> List[Tuple[str, Optional[str], str]]:
    """(key, label or None for testing, "file: line N") for every row."""
    required = KEY_COLUMNS if subset == "testing" else LABELLED_COLUMNS
    rows = []
    for number, row in csv_rows(path, required):
        at = where(path, number)
        youtube_id = row["youtube_id"]
        if not youtube_id:
            raise UserError(f"{at}: empty youtube_id")
        key = kinetics_key(youtube_id, _seconds(row["time_start"], "time_start", at), _seconds(row["time_end"], "time_end", at))
        label = None
        if subset != "testing":
            label = row["label"]
            if not label:
                raise UserError(f"{at}: empty label")
        rows.append((key, label, at))
    return rows


def build(train_csv: Path, val_csv: Path, test_csv: Optional[Path]) -> Tuple[List[str], Database]:
    train = read_csv(train_csv, "training")
    labels: List[str] = list(dict.fromkeys(label for _, label, _ in train if label is not None))
    known = set(labels)
    database = Database()
    for key, label, at in train:
        database.add(key, "training", label, at)
    for key, label, at in read_csv(val_csv, "validation"):
        if label not in known:
            raise UserError(
                f"{at}: validation label '{label}' does not appear in the training CSV {train_csv}; "
                "check that both CSVs come from the same Kinetics release"
            )
        database.add(key, "validation", label, at)
    if test_csv is not None:
        for key, label, at in read_csv(test_csv, "testing"):
            database.add(key, "testing", None, at)
    return labels, database


def seed_kinetics_json(train_csv: Path, val_csv: Path, test_csv: Path, out_json: Path, overwrite: bool = False) -> str:
    refuse_existing(out_json, "OUT_JSON", overwrite)
    labels, database = build(train_csv, val_csv, test_csv)
    write_annotation(out_json, labels, database.entries)
    return summary_line(out_json, labels, database)


def successor_csv_paths(csv_dir: Path, n_classes: int) -> Dict[str, Optional[Path]]:
    """``kinetics-<N>_{train,val,test}.csv`` (or the older ``kinetics_{train,val,test}.csv``, or
    ``train.csv``, ``validate.csv``, ``test.csv`` as DeepMind's 2020 archives name them)."""
    require_folder(csv_dir, "CSV directory", "give the folder of the successor's kinetics-*_{train,val,test}.csv, "
                   "or the seed's three CSV files and the output: train.csv val.csv test.csv out.json")
    namings = [{split: pattern.format(split) for split in ("train", "val", "test")}
               for pattern in (f"kinetics-{n_classes}_{{}}.csv", "kinetics_{}.csv")]
    namings += [{"train": "train.csv", "val": "validate.csv", "test": "test.csv"},
                {"train": "train.csv", "val": "val.csv", "test": "test.csv"}]
    for names in namings:
        paths = {split: csv_dir / name for split, name in names.items()}
        if paths["train"].is_file():
            if not paths["val"].is_file():
                raise UserError(f"{paths['val']}: file not found (it goes with {paths['train']})")
            return {**paths, "test": paths["test"] if paths["test"].is_file() else None}
    raise UserError(
        f"no kinetics-{n_classes}_train.csv (nor train.csv) in {csv_dir}; put the Kinetics-{n_classes} CSVs there "
        "or give the number of classes of the CSVs you have (400, 600 or 700)"
    )


def successor_kinetics_json(csv_dir: Path, n_classes: int, frame_dir: Path, file_type: str, out_json: Path,
                            overwrite: bool = False) -> str:
    refuse_existing(out_json, "OUT_JSON", overwrite)
    paths = successor_csv_paths(csv_dir, n_classes)
    labels, database = build(paths["train"], paths["val"], paths["test"])  # type: ignore[arg-type]
    segments = add_segments(database.entries, frame_dir, file_type)
    write_annotation(out_json, labels, database.entries)
    return summary_line(out_json, labels, database, segments)
