"""A user's own data set, laid out as ``ROOT/<class>/<video file, frame folder or .hdf5 file>``, ->
the shared annotation JSON.

Labels are the class folder names, sorted. Each item's key is its frame folder's name (or its
video file's name without the extension); keys must be unique across classes, since training
finds frames at ``<frames>/<label>/<key>``. Frame folders get the successor's segment
``[1, n_frames + 1]``. A frame folder counts when training reads its frames (``image_%05d.jpg``
exactly, the loader's own check), and optical-flow folders (``u/`` + ``v/``, or ``flow_x_`` +
``flow_y_`` files) count as frame folders.

The validation split is either a fixed share of every class (``--val-ratio``, shuffled with
``--seed``, the same split on every run) or given by list files (``--train-list``/``--val-list``,
one ``<class>/<name>`` or ``<name>`` per line, an extension and trailing fields allowed, so the
UCF-101 list format works). With only one list, the other subset is everything else.

Nothing under ROOT is passed over in silence. What the layout does not cover (videos directly in
ROOT or below a class folder's subfolders, frame folders whose frames training cannot read,
folders holding nothing) is counted in one line per kind, with examples and the fix, after the
summary. A class folder that would vanish from the labels because everything in it is passed
over is an error, and nothing is written: a data set that silently loses a class trains a
model of the wrong classes.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import refuse_existing, require_folder
from resnet3d.prepare.annotation_json import Database, summary_line, video_key, write_annotation
from resnet3d.prepare.frame_folders import IMAGE_RE, count_image_files, flow_frame_count, unread_frames
from resnet3d.prepare.tables import text_lines, where
from resnet3d.video_files import is_video_file

LAYOUT = "ROOT/<class>/<video, frame folder or .hdf5 file>"
N_EXAMPLES = 3

Found = Tuple[Path, str]  # (path, what it is: "video", ".hdf5 file", "frame folder"; or why it is unreadable)


@dataclass(frozen=True)
class Item:
    label: str
    key: str
    path: Path
    is_folder: bool


@dataclass
class Ignored:
    """What the scan passed over, by kind."""

    loose: List[Found] = field(default_factory=list)  # directly in ROOT
    deeper: List[Found] = field(default_factory=list)  # below a subfolder of a class folder
    misnamed: List[Found] = field(default_factory=list)  # frame folders of img_00001.jpg, .JPG, ... (why)
    misnumbered: List[Found] = field(default_factory=list)  # frame folders of image_0001.jpg, ... (why)
    hollow: List[Path] = field(default_factory=list)  # folders in a class folder with nothing to read
    empty_classes: List[Path] = field(default_factory=list)  # class folders with nothing at all

    def extend(self, other: "Ignored") -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def lines(self) -> List[str]:
        """One line per kind: how many, a few examples, and the fix."""
        out = []
        if self.loose:
            out.append(f"ignored {_counted(self.loose)} directly in ROOT, outside any class folder "
                       f"({_examples(p for p, _ in self.loose)}): the layout is {LAYOUT}; move them into their "
                       "class folder")
        if self.deeper:
            out.append(f"ignored {_counted(self.deeper)} not directly inside a class folder "
                       f"({_examples(p for p, _ in self.deeper)}): the layout is {LAYOUT}, the class being the "
                       "folder directly under ROOT; move them up into their class folder")
        for found, what in ((self.misnamed, "not named image_00001.jpg, image_00002.jpg, ..."),
                            (self.misnumbered, "numbered with other than 5 digits")):
            if found:
                first, why = found[0]
                others = f"; also {_examples(p for p, _ in found[1:])}" if len(found) > 1 else ""
                out.append(f"ignored {_plural(len(found), 'frame folder')} whose frames are {what}, which training "
                           f"cannot read: {first}: {why}{others}")
        if self.hollow:
            out.append(f"ignored {_plural(len(self.hollow), 'folder')} in class folders holding no frames, videos or "
                       f".hdf5 files ({_examples(self.hollow)}): extract their videos with 'resnet3d prepare frames', "
                       "or remove them")
        if self.empty_classes:
            out.append(f"ignored {_plural(len(self.empty_classes), 'class folder')} holding nothing to read "
                       f"({_examples(self.empty_classes)}): their labels are not in the JSON; fill or remove them")
        return out

    def reason(self, path: Path) -> str:
        """Why ``path`` was passed over, "" when it was not."""
        if any(p == path for p, _ in self.loose):
            return f"it is directly in ROOT, outside any class folder (the layout is {LAYOUT})"
        if any(p == path for p, _ in self.deeper):
            return f"it is not directly inside a class folder (the layout is {LAYOUT})"
        return next((why for p, why in self.misnamed + self.misnumbered if p == path), "")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"


def _counted(found: List[Found]) -> str:
    """'3 videos and 1 frame folder'."""
    counts: Dict[str, int] = {}
    for _, what in found:
        counts[what] = counts.get(what, 0) + 1
    parts = [_plural(n, what) for what, n in counts.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _examples(paths: Iterable[Path]) -> str:
    paths = list(paths)
    return ", ".join(str(p) for p in paths[:N_EXAMPLES]) + (", ..." if len(paths) > N_EXAMPLES else "")


def _media(path: Path) -> str:
    """What a file is to a data set ("video", ".hdf5 file"), or "" for anything else."""
    if is_video_file(path):
        return "video"
    return ".hdf5 file" if path.suffix.lower() == ".hdf5" and not path.name.startswith(".") else ""


def _frame_folder(path: Path) -> Optional[Tuple[str, str]]:
    """None: not a frame folder (no images); ("ok", ""): training reads its frames; else
    ("misnamed" or "misnumbered", why training reads none, with the fix)."""
    if flow_frame_count(path) is not None:  # optical flow (--input_type flow)
        problem = unread_frames(path / "u") if (path / "u").is_dir() else ""
        return ("misnamed", f"u/: {problem}") if problem else ("ok", "")
    try:
        names = os.listdir(path)
    except OSError:
        return None
    numbered = any(IMAGE_RE.match(name) for name in names)  # image_<any digits>.jpg
    problem = unread_frames(path)
    if problem and not numbered and any(_media(path / name) for name in names):
        return None  # a folder of videos beside a stray picture (a thumbnail) is not a frame folder
    if problem:
        return ("misnumbered" if numbered else "misnamed"), problem
    return ("ok", "") if numbered else None


def _media_below(folder: Path) -> List[Found]:
    """Videos, .hdf5 files and frame folders anywhere below ``folder`` (hidden names skipped)."""
    found: List[Found] = []
    for parent, subdirs, files in os.walk(folder):
        kept = []
        for name in sorted(subdirs):
            if name.startswith("."):
                continue
            if _frame_folder(Path(parent) / name) is not None:
                found.append((Path(parent) / name, "frame folder"))
            else:
                kept.append(name)
        subdirs[:] = kept
        found.extend((Path(parent) / name, _media(Path(parent) / name)) for name in sorted(files)
                     if _media(Path(parent) / name))
    return found


def _scan_class(class_dir: Path) -> Tuple[List[Item], Ignored]:
    """The items of one class folder, and what it passes over."""
    items: List[Item] = []
    ignored = Ignored()
    for path in sorted(class_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file():
            if _media(path):  # a video file or an HDF5 frame file: its frames are counted when it is read
                items.append(Item(class_dir.name, video_key(path.name), path, False))
            continue
        if not path.is_dir():
            continue
        state = _frame_folder(path)
        if state is None:
            below = _media_below(path)
            if below:
                ignored.deeper.extend(below)
            else:
                ignored.hollow.append(path)
        elif state[0] == "ok":
            items.append(Item(class_dir.name, path.name, path, True))
        else:
            getattr(ignored, state[0]).append((path, state[1]))
    return items, ignored


def _lost_class(class_dir: Path, ignored: Ignored, explain: bool) -> str:
    """What a class folder holds that cannot be read, and (``explain``) why and the fix."""
    if ignored.deeper:
        text = f"{class_dir}/ holds {_counted(ignored.deeper)} only below its subfolders (e.g. {ignored.deeper[0][0]})"
        return text + (f": move them up into {class_dir}/" if explain else "")
    found = ignored.misnamed or ignored.misnumbered
    example = f"{found[0][0]}: {found[0][1]}" if explain else found[0][0]
    return f"{class_dir}/ holds {_plural(len(found), 'frame folder')} whose frames training cannot read (e.g. {example})"


def find_items(root: Path) -> Tuple[Dict[str, List[Item]], Ignored]:
    """The items of every class, and what was passed over (see the module's docstring)."""
    require_folder(root, "the data set's folder", f"expected {LAYOUT}")
    classes: Dict[str, List[Item]] = {}
    ignored = Ignored()
    lost: List[str] = []
    first_of: Dict[str, Item] = {}
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if path.is_file():
            if _media(path):
                ignored.loose.append((path, _media(path)))
            continue
        if not path.is_dir():
            continue
        items, passed_over = _scan_class(path)
        if not items and _frame_folder(path) is not None:  # a video's frames where a class folder should be
            ignored.loose.append((path, "frame folder"))
            continue
        ignored.extend(passed_over)
        for item in items:
            if item.key in first_of:
                raise UserError(
                    f"{item.path} and {first_of[item.key].path} share the key '{item.key}'; "
                    "rename one of them (keys must be unique across classes)"
                )
            first_of[item.key] = item
        if items:
            classes[path.name] = items
        elif passed_over.deeper or passed_over.misnamed or passed_over.misnumbered:
            lost.append(_lost_class(path, passed_over, explain=not lost))
        else:
            ignored.empty_classes.append(path)
    if lost:
        shown = "; ".join(lost[:N_EXAMPLES]) + (f"; and {len(lost) - N_EXAMPLES} more" if len(lost) > N_EXAMPLES else "")
        one = len(lost) == 1
        raise UserError(
            f"{_plural(len(lost), 'class folder')} under {root} would be left out of the data set, and "
            f"{'its label' if one else 'their labels'} with {'it' if one else 'them'}: {shown}. folder-json reads "
            f"{LAYOUT}; fix this, or move {'that class folder' if one else 'those class folders'} out of ROOT if "
            f"{'it does' if one else 'they do'} not belong to the data set. Nothing written"
        )
    if not classes:
        hint = ""
        if any(what == "frame folder" for _, what in ignored.loose):
            hint = (f"; ROOT holds frame folders directly (e.g. {ignored.loose[0][0]}): if ROOT is one class's "
                    "folder, give the folder above it")
        elif ignored.loose:
            hint = f"; ROOT holds {_counted(ignored.loose)} directly (e.g. {ignored.loose[0][0]}): sort them into class folders"
        raise UserError(f"no videos, frame folders or .hdf5 files in {root}/<class>/ (expected {LAYOUT}){hint}")
    return classes, ignored


def read_list(path: Path, classes: Dict[str, List[Item]], ignored: Optional[Ignored] = None) -> Set[str]:
    """Keys named by a list file (``<class>/<name>[.ext] [anything]`` or ``<name>`` per line)."""
    by_key = {item.key: item for items in classes.values() for item in items}
    passed_over = {video_key(p.name): p for p, _ in (ignored.loose + ignored.deeper + ignored.misnamed
                                                     + ignored.misnumbered)} if ignored else {}
    keys: Set[str] = set()
    for number, text in text_lines(path):
        entry = text.split()[0]
        label, _, name = entry.rpartition("/")
        key = video_key(name)
        item = by_key.get(key)
        if item is None and key in passed_over:
            raise UserError(f"{where(path, number)}: '{entry}' is {passed_over[key]}, which folder-json left out: "
                            f"{ignored.reason(passed_over[key])}")
        if item is None or (label and label != item.label):
            raise UserError(f"{where(path, number)}: '{entry}' is not a video or frame folder under the data set's root")
        keys.add(key)
    return keys


def split(
    classes: Dict[str, List[Item]], val_ratio: float, seed: int, train_list: Optional[Path], val_list: Optional[Path],
    ignored: Optional[Ignored] = None,
) -> Tuple[Dict[str, str], int]:
    """key -> subset, and how many items neither list names."""
    all_keys = [item.key for items in classes.values() for item in items]
    if train_list is not None or val_list is not None:
        train = read_list(train_list, classes, ignored) if train_list is not None else None
        val = read_list(val_list, classes, ignored) if val_list is not None else None
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
    classes, ignored = find_items(root)
    labels = sorted(classes)
    subsets, unlisted = split(classes, val_ratio, seed, train_list, val_list, ignored)
    database = Database()
    n_folders = 0
    for label in labels:
        for item in classes[label]:
            subset = subsets.get(item.key)
            if subset is None:
                continue
            database.add(item.key, subset, label, str(item.path))
            if item.is_folder:
                flow = flow_frame_count(item.path)
                n_frames = count_image_files(item.path) if flow is None else flow
                database.entries[item.key]["annotations"]["segment"] = [1, n_frames + 1]
                n_folders += 1
    write_annotation(out_json, labels, database.entries)
    line = summary_line(out_json, labels, database)
    line += f"; {n_folders} frame folders, {len(database.entries) - n_folders} video or .hdf5 files"
    if unlisted:
        line += f"; {unlisted} items in neither list left out"
    return "\n".join([line] + ignored.lines())
