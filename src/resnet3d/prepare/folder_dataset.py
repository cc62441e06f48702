"""A user's own data set, laid out as ``ROOT/<class>/<video file, frame folder or .hdf5 file>``, ->
the shared annotation JSON.

Labels are the class folder names, sorted. Each item's key is its frame folder's name (or its
video file's name without the extension); keys must be unique across classes, since training
finds frames at ``<frames>/<label>/<key>``. Frame folders get the successor's segment
``[1, n_frames + 1]``.

The validation split is either a fixed share of every class (``--val-ratio``, shuffled with
``--seed``, the same split on every run) or given by list files (``--train-list``/``--val-list``,
one ``<class>/<name>`` or ``<name>`` per line, an extension and trailing fields allowed, so the
UCF-101 list format works). With only one list, the other subset is everything else.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import refuse_existing
from resnet3d.prepare.annotation_json import Database, summary_line, video_key, write_annotation
from resnet3d.prepare.frame_folders import IMAGE_RE, count_image_files
from resnet3d.prepare.tables import text_lines, where
from resnet3d.video_files import is_video_file


@dataclass(frozen=True)
class Item:
    label: str
    key: str
    path: Path
    is_folder: bool


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(IMAGE_RE.match(name) for name in (p.name for p in path.iterdir()))


def find_items(root: Path) -> Dict[str, List[Item]]:
    if not root.is_dir():
        raise UserError(f"{root} does not exist (expected ROOT/<class>/<video or frame folder>)")
    classes: Dict[str, List[Item]] = {}
    first_of: Dict[str, Item] = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        items = []
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_file() and (is_video_file(path) or path.suffix.lower() == ".hdf5"):
                # a video file or an HDF5 frame file: its frames are counted when it is read
                item = Item(class_dir.name, video_key(path.name), path, False)
            elif _is_frame_folder(path):
                item = Item(class_dir.name, path.name, path, True)
            else:
                continue
            if item.key in first_of:
                raise UserError(
                    f"{path} and {first_of[item.key].path} share the key '{item.key}'; "
                    "rename one of them (keys must be unique across classes)"
                )
            first_of[item.key] = item
            items.append(item)
        if items:
            classes[class_dir.name] = items
    if not classes:
        raise UserError(f"no videos, frame folders or .hdf5 files in {root}/<class>/ "
                        "(expected ROOT/<class>/<video, frame folder or .hdf5 file>)")
    return classes


def read_list(path: Path, classes: Dict[str, List[Item]]) -> Set[str]:
    """Keys named by a list file (``<class>/<name>[.ext] [anything]`` or ``<name>`` per line)."""
    by_key = {item.key: item for items in classes.values() for item in items}
    keys: Set[str] = set()
    for number, text in text_lines(path):
        entry = text.split()[0]
        label, _, name = entry.rpartition("/")
        key = video_key(name)
        item = by_key.get(key)
        if item is None or (label and label != item.label):
            raise UserError(f"{where(path, number)}: '{entry}' is not a video or frame folder under the data set's root")
        keys.add(key)
    return keys


def split(
    classes: Dict[str, List[Item]], val_ratio: float, seed: int, train_list: Optional[Path], val_list: Optional[Path]
) -> Tuple[Dict[str, str], int]:
    """key -> subset, and how many items neither list names."""
    all_keys = [item.key for items in classes.values() for item in items]
    if train_list is not None or val_list is not None:
        train = read_list(train_list, classes) if train_list is not None else None
        val = read_list(val_list, classes) if val_list is not None else None
        if train is not None and val is not None:
            both = sorted(train & val)
            if both:
                raise UserError(f"'{both[0]}' is in both {train_list} and {val_list}; keep it in one")
        subsets: Dict[str, str] = {}
        for key in all_keys:
            if (train is not None and key in train) or (train is None and key not in (val or set())):
                subsets[key] = "training"
            elif val is None or key in val:
                subsets[key] = "validation"
        return subsets, len(all_keys) - len(subsets)
    rng = random.Random(seed)
    subsets = {}
    for items in classes.values():
        keys = [item.key for item in items]
        rng.shuffle(keys)
        n_val = round(val_ratio * len(keys))
        if val_ratio > 0 and len(keys) >= 2:
            n_val = min(max(1, n_val), len(keys) - 1)  # every class in both subsets when possible
        for index, key in enumerate(keys):
            subsets[key] = "validation" if index < n_val else "training"
    return subsets, 0


def folder_json(
    root: Path,
    out_json: Path,
    val_ratio: float = 0.2,
    seed: int = 0,
    train_list: Optional[Path] = None,
    val_list: Optional[Path] = None,
    overwrite: bool = False,
) -> str:
    refuse_existing(out_json, "OUT_JSON", overwrite)
    classes = find_items(root)
    labels = sorted(classes)
    subsets, unlisted = split(classes, val_ratio, seed, train_list, val_list)
    database = Database()
    n_folders = 0
    for label in labels:
        for item in classes[label]:
            subset = subsets.get(item.key)
            if subset is None:
                continue
            database.add(item.key, subset, label, str(item.path))
            if item.is_folder:
                database.entries[item.key]["annotations"]["segment"] = [1, count_image_files(item.path) + 1]
                n_folders += 1
    write_annotation(out_json, labels, database.entries)
    line = summary_line(out_json, labels, database)
    line += f"; {n_folders} frame folders, {len(database.entries) - n_folders} video or .hdf5 files"
    if unlisted:
        line += f"; {unlisted} items in neither list left out"
    return line
