"""HMDB-51's official split files -> ``hmdb51_1.json`` ... ``hmdb51_3.json``.

One file per class and split, ``<class>_test_split<N>.txt``, with lines ``<video>.avi <k>``:
k = 1 training, 2 testing (our ``validation``, as the successor names it), 0 not used. The
labels are the class names, sorted. Each video gets the successor's segment from its frame
folder ``FRAME_DIR/<label>/<name>``.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from resnet3d.errors import UserError
from resnet3d.fileio import require_folder
from resnet3d.prepare.annotation_json import Database, video_key, write_split_files
from resnet3d.prepare.tables import text_lines, where

SPLIT_FILE = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d+)\.txt$")
SUBSET_OF = {"1": "training", "2": "validation", "0": None}


def split_files(annotation_dir: Path) -> Dict[int, List[Path]]:
    require_folder(annotation_dir, "annotation directory")
    files: Dict[int, List[Path]] = defaultdict(list)
    for path in sorted(annotation_dir.iterdir()):
        match = SPLIT_FILE.match(path.name)
        if match and path.is_file():
            files[int(match.group("split"))].append(path)
    if not files:
        raise UserError(f"no <class>_test_split<N>.txt files in {annotation_dir} (the HMDB-51 'testTrainMulti' splits)")
    return dict(files)


def hmdb51_json(annotation_dir: Path, frame_dir: Path, out_dir: Path, overwrite: bool = False) -> str:
    files = split_files(annotation_dir)
    labels = sorted({SPLIT_FILE.match(p.name).group("label") for paths in files.values() for p in paths})  # type: ignore[union-attr]
    databases = {}
    for split in sorted(files):  # every split is read (and checked) before any JSON is written
        missing = sorted(set(labels) - {SPLIT_FILE.match(p.name).group("label") for p in files[split]})  # type: ignore[union-attr]
        if missing:
            raise UserError(f"{annotation_dir}: split {split} has no file for {len(missing)} of the {len(labels)} "
                            f"classes (e.g. {missing[0]}_test_split{split}.txt); its JSON would miss their videos")
        database = Database()
        for path in files[split]:
            label = SPLIT_FILE.match(path.name).group("label")  # type: ignore[union-attr]
            for number, text in text_lines(path):
                at = where(path, number)
                parts = text.split()
                if len(parts) != 2 or parts[1] not in SUBSET_OF:
                    raise UserError(f"{at}: expected '<video>.avi <0, 1 or 2>', got '{text.strip()}'")
                subset = SUBSET_OF[parts[1]]
                if subset is not None:
                    database.add(video_key(parts[0]), subset, label, at)
        databases[split] = database
    return write_split_files(databases, labels, frame_dir, out_dir, "hmdb51_{}.json", overwrite)
