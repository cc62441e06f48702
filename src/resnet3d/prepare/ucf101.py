"""UCF-101's official split files -> ``ucf101_01.json`` ... ``ucf101_03.json``.

- ``classInd.txt``: ``1 ApplyEyeMakeup`` (the labels, in this order);
- ``trainlist0N.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (training);
- ``testlist0N.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`` (validation).

The official files end lines with CRLF. Each video gets the successor's segment from its frame
folder ``FRAME_DIR/<label>/<name>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from resnet3d.errors import UserError
from resnet3d.fileio import require_folder
from resnet3d.prepare.annotation_json import Database, split_key_label, write_split_files
from resnet3d.prepare.tables import text_lines, where

SPLITS = (1, 2, 3)


def read_class_index(path: Path) -> List[str]:
    labels: List[str] = []
    seen: Dict[str, str] = {}
    for number, text in text_lines(path):
        at = where(path, number)
        parts = text.split(maxsplit=1)  # a class name of your own may hold spaces (its folder's name)
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{at}: expected '<index> <class name>', got '{text}'")
        index, name = int(parts[0]), parts[1].strip()
        if index != len(labels) + 1:
            raise UserError(f"{at}: class index {index}, expected {len(labels) + 1} (indices count up from 1)")
        if name in seen:
            raise UserError(f"{at}: class '{name}' listed twice (first at {seen[name]})")
        seen[name] = at
        labels.append(name)
    if not labels:
        raise UserError(f"{path}: no classes listed")
    return labels


def _read_list(path: Path, subset: str, labels: List[str], database: Database) -> None:
    index_of = {name: i + 1 for i, name in enumerate(labels)}
    for number, text in text_lines(path):
        at = where(path, number)
        # '<class>/<video>.avi[ <class index>]': the path may hold spaces (folders of your own)
        parts = text.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            parts = [text]
        if subset == "training" and len(parts) != 2:
            raise UserError(f"{at}: expected '<class>/<video>.avi <class index>', got '{text}'")
        label, key = split_key_label(parts[0])
        if not label or not key:
            raise UserError(f"{at}: expected '<class>/<video file>', got '{parts[0]}'")
        if label not in index_of:
            raise UserError(f"{at}: class '{label}' is not in classInd.txt")
        if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) != index_of[label]):
            raise UserError(f"{at}: class index '{parts[1]}' does not match '{label}' (index {index_of[label]} in classInd.txt)")
        database.add(key, subset, label, at)


def ucf101_json(annotation_dir: Path, frame_dir: Path, out_dir: Path, overwrite: bool = False) -> str:
    require_folder(annotation_dir, "annotation directory")
    labels = read_class_index(annotation_dir / "classInd.txt")
    databases = {}
    for split in SPLITS:  # every split is read (and checked) before any JSON is written
        train = annotation_dir / f"trainlist0{split}.txt"
        test = annotation_dir / f"testlist0{split}.txt"
        if not train.exists() and not test.exists():
            continue
        database = Database()
        _read_list(train, "training", labels, database)
        _read_list(test, "validation", labels, database)
        databases[split] = database
    if not databases:
        raise UserError(f"no trainlist0N.txt/testlist0N.txt in {annotation_dir}")
    return write_split_files(databases, labels, frame_dir, out_dir, "ucf101_0{}.json", overwrite)
