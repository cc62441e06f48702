"""Annotation files -> a list of videos (or ActivityNet segments) with their labels.

Every data set uses the shared ActivityNet-like JSON (REFERENCE.md §2):
``{"labels": [...], "database": {key: {"subset": ..., "annotations": {"label": ...}}}}``.
Flavours read here:

- Kinetics / MiT / UCF-101 / HMDB-51 / folder sets, seed flavour: no frame range in the JSON; the
  frame count comes from each folder's ``n_frames`` file (or the frames present).
- the successor's flavour: ``annotations.segment = [1, n_frames + 1]`` (end-exclusive); for HDF5
  it writes ``[0, n_frames]``, 0-based, which we shift to 1-based.
- ActivityNet v1.3: classes are the taxonomy's leaves; ``annotations`` is a list of
  ``{segment: [start_s, end_s], label}``, one sample each; seconds become frames with the video's
  fps (the JSON's ``fps`` (successor) or the folder's ``fps`` file (seed)).

Subset names are read as ``--subset`` reads them: ``train``/``val``/``test`` mean
``training``/``validation``/``testing``, and case and surrounding spaces do not matter; other
names are counted, never silently dropped. Errors name the file and the key. Nothing here touches
the video files.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from resnet3d.data.config import SUBSET_ALIASES, SUBSETS, canonical_subset
from resnet3d.errors import UserError
from resnet3d.fileio import read_user_json

# how each data set's videos are laid out under --video_path (without extension)
KINETICS_LIKE = ("kinetics", "mit", "ucf101", "hmdb51")


@dataclass(frozen=True)
class VideoEntry:
    """One sample of the annotation file.

    ``frames`` is the 1-based, end-exclusive frame range when the JSON gives it; ``seconds`` an
    ActivityNet segment still in seconds (converted once the fps is known); both None means the
    whole video.
    """

    key: str
    label: Optional[str]
    rel_path: str
    frames: Optional[Tuple[int, int]] = None
    seconds: Optional[Tuple[float, float]] = None
    fps: Optional[float] = None
    duration: Optional[float] = None  # ActivityNet: the video's length in seconds, per the JSON


@dataclass(frozen=True)
class Annotation:
    path: str
    class_names: List[str]
    entries: List[VideoEntry]
    n_empty: int = 0  # entries dropped because their frame range holds no frame
    first_empty: str = ""  # the first of them, "'key' (segment [1, 1])" as the file writes it, for the message
    # ActivityNet training/validation entries with no labelled segment: both originals make a sample
    # per segment, so none of these; the first key, for the message
    n_unlabelled: int = 0
    first_unlabelled: str = ""
    # how the file spells the chosen subset ({"train": 13, "training": 2}), and the entries
    # whose subset is none of the three under any spelling ({"dev": 4}), for the caller to report
    spellings: Dict[str, int] = field(default_factory=dict)
    other_subsets: Dict[str, int] = field(default_factory=dict)


def entry_subset(value: Any) -> Optional[str]:
    """An entry's ``subset`` as one of ``SUBSETS`` ("train", " Validation " and "validation" all
    read as "validation"), or None for any other name."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    name = SUBSET_ALIASES.get(name, name)
    return name if name in SUBSETS else None


def _check_unique(class_names: List[str], path: str, where: str) -> None:
    """A class listed twice would take two indices: the model's outputs and the labels then
    disagree about every class after it."""
    counts = Counter(class_names)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        name = repeated[0]
        places = [str(i) for i, other in enumerate(class_names) if other == name]
        more = f" (and {len(repeated) - 1} more repeated: {', '.join(map(repr, repeated[1:4]))})" if len(repeated) > 1 else ""
        raise UserError(f"annotation {path}: duplicate label {name!r} in {where} (at positions {', '.join(places)}, "
                        f"counting from 0){more}: each class must be listed once; remove the repeats")


def seconds_to_frames(start_s: float, end_s: float, fps: float) -> Tuple[int, int]:
    """An ActivityNet segment in seconds -> 1-based, end-exclusive frames.

    ``begin = max(1, ceil(start * fps))`` and ``end = ceil(end * fps)`` as the originals convert,
    with ``end`` exclusive: the seed counts ``end - begin`` frames, the successor ``range(begin, end)``.
    """
    begin = max(1, math.ceil(start_s * fps))
    end = math.ceil(end_s * fps)
    return begin, max(begin, end)


def activitynet_classes(taxonomy: List[Dict[str, Any]], path: str) -> List[str]:
    """The taxonomy's leaves, in file order: nodes that are nobody's parent."""
    try:
        parents = {node.get("parentId") for node in taxonomy}
        return [node["nodeName"] for node in taxonomy if node["nodeId"] not in parents]
    except (KeyError, TypeError) as error:
        raise UserError(f"annotation {path}: taxonomy entries need nodeId, nodeName and parentId ({error})") from None


def _read_json(path: str) -> Dict[str, Any]:
    data = read_user_json(path, "annotation (--annotation_path)")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise UserError(f"annotation {path} has no 'database' object: is it the shared annotation JSON?")
    return data


def _video_rel_path(dataset: str, key: str, label: Optional[str], folder_layout: str) -> str:
    if dataset == "activitynet":
        return f"v_{key}"
    shown_label = label if label is not None else "test"
    if dataset == "folder":
        return folder_layout.format(label=shown_label, key=key)
    return f"{shown_label}/{key}"


def _frames_from_segment(segment: Any, path: str, key: str) -> Optional[Tuple[int, int]]:
    try:
        begin, end = int(segment[0]), int(segment[1])
    except (TypeError, ValueError, IndexError):
        raise UserError(f"annotation {path}: database entry '{key}' has a bad segment {segment!r}; expected [first, last + 1]") from None
    if begin == 0:  # the successor's HDF5 flavour counts from 0
        begin, end = 1, end + 1
    return begin, end


def load_annotation(path: str, dataset: str, subset: str, folder_layout: str = "{label}/{key}") -> Annotation:
    """The entries of one subset ('training', 'validation' or 'testing'; 'train'/'val'/'test' too)
    of an annotation file."""
    path = str(path)
    subset = canonical_subset(subset)
    data = _read_json(path)
    if dataset == "activitynet" and "taxonomy" in data:
        class_names = activitynet_classes(data["taxonomy"], path)
        _check_unique(class_names, path, "the taxonomy's leaves")
    elif isinstance(data.get("labels"), list):
        class_names = [str(name) for name in data["labels"]]
        _check_unique(class_names, path, "'labels'")
    elif "labels" in data and data["labels"] is not None:  # ("abc" was read as the classes 'a', 'b', 'c')
        raise UserError(f"annotation {path}: 'labels' is {type(data['labels']).__name__} {data['labels']!r:.60}; "
                        "expected a list of the class names, in the order of the model's outputs")
    elif "taxonomy" in data:
        # the official ActivityNet file; the seed's default --dataset was activitynet, the successor's kinetics
        raise UserError(f"annotation {path} is an ActivityNet file (it has a 'taxonomy' and no 'labels' list), read "
                        f"as --dataset {dataset}: pass --dataset activitynet")
    else:
        # A file of unlabelled videos only (your own test set) needs no class list: recognition
        # names the classes from the weights. Labelled entries need it (checked below).
        class_names = []
    listed = bool(class_names) or "labels" in data or "taxonomy" in data
    known = set(class_names)
    entries: List[VideoEntry] = []
    n_empty = 0
    first_empty = ""
    unlabelled: List[str] = []  # keys of ActivityNet training/validation entries without segments
    unknown: List[Tuple[str, str]] = []  # (key, label) of entries whose label is not a class
    spellings: Counter = Counter()
    other_subsets: Counter = Counter()
    for key, value in data["database"].items():
        if not isinstance(value, dict) or "subset" not in value:
            raise UserError(f"annotation {path}: database entry '{key}' has no 'subset'")
        found = entry_subset(value["subset"])
        if found is None:
            other_subsets[str(value["subset"])] += 1
        if found != subset:
            continue
        spellings[value["subset"]] += 1
        annotations = value.get("annotations", {})
        if dataset == "activitynet":
            if subset != "testing" and not annotations:
                unlabelled.append(key)
                continue
            new, empty = _activitynet_entries(path, key, value, annotations, known, subset, unknown)
            entries.extend(new)
            if empty and not n_empty:
                first_empty = f"'{key}'"
            n_empty += empty
            continue
        if not isinstance(annotations, dict):
            raise UserError(f"annotation {path}: database entry '{key}' has annotations of type {type(annotations).__name__}; expected an object")
        label = annotations.get("label")
        if label is None and subset != "testing":
            raise UserError(f"annotation {path}: database entry '{key}' ({subset}) has no annotations.label")
        if label is not None and label not in known:
            unknown.append((key, str(label)))
            continue
        frames = None
        if "segment" in annotations:
            frames = _frames_from_segment(annotations["segment"], path, key)
            if frames[1] <= frames[0]:
                if not n_empty:
                    first_empty = f"'{key}' (segment {annotations['segment']!r})"
                n_empty += 1
                continue
        entries.append(VideoEntry(key=key, label=label, rel_path=_video_rel_path(dataset, key, label, folder_layout), frames=frames))
    if unknown and not listed:
        raise UserError(f"annotation {path} has no 'labels' list{' or taxonomy' if dataset == 'activitynet' else ''}, "
                        f"and its {subset} entries have labels (e.g. '{unknown[0][0]}': '{unknown[0][1]}'): add "
                        "\"labels\": [the class names, in the order of the model's outputs]")
    if unknown:
        _unknown_labels_error(path, subset, unknown, "a taxonomy leaf" if dataset == "activitynet" and "taxonomy" in data
                              else "in 'labels'")
    return Annotation(path=path, class_names=class_names, entries=entries, n_empty=n_empty, first_empty=first_empty,
                      n_unlabelled=len(unlabelled), first_unlabelled=unlabelled[0] if unlabelled else "",
                      spellings=dict(spellings), other_subsets=dict(other_subsets))


def _unknown_labels_error(path: str, subset: str, unknown: List[Tuple[str, str]], where: str) -> None:
    """All the entries whose label is no class, counted in one error: fixing them one per run
    would take a run per entry."""
    key, label = unknown[0]
    labels = Counter(label for _, label in unknown)
    shown = ", ".join(f"{name!r} ({count})" for name, count in labels.most_common(5))
    more = f" and {len(labels) - 5} more" if len(labels) > 5 else ""
    counted = (f" ({len(unknown)} {subset} entries have a label that is not {where}: {shown}{more})"
               if len(unknown) > 1 else "")
    raise UserError(f"annotation {path}: database entry '{key}' has label '{label}', which is not {where}{counted}: "
                    f"add the class to the file's labels (with --n_classes to match), or correct the entries' labels")


def _activitynet_entries(path, key, value, annotations, known, subset, unknown) -> Tuple[List[VideoEntry], int]:
    rel = _video_rel_path("activitynet", key, None, "")
    fps = _positive_number(value, "fps", path, key)
    duration = _positive_number(value, "duration", path, key)
    if subset == "testing":
        return [VideoEntry(key=key, label=None, rel_path=rel, fps=fps, duration=duration)], 0
    if not isinstance(annotations, list):
        raise UserError(f"annotation {path}: database entry '{key}' should hold a list of segments in 'annotations'")
    entries, empty = [], 0
    for number, segment in enumerate(annotations):
        label = segment.get("label") if isinstance(segment, dict) else None
        if label not in known:
            if label is None:
                raise UserError(f"annotation {path}: database entry '{key}' segment {number} has no label")
            unknown.append((key, str(label)))
            continue
        try:
            start, end = float(segment["segment"][0]), float(segment["segment"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            raise UserError(f"annotation {path}: database entry '{key}' segment {number} needs 'segment': [start_s, end_s]") from None
        if end <= start:
            empty += 1
            continue
        entries.append(VideoEntry(key=key, label=label, rel_path=rel, seconds=(start, end), fps=fps, duration=duration))
    return entries, empty


def _positive_number(value: Dict[str, Any], name: str, path: str, key: str) -> Optional[float]:
    """An entry's ``fps`` or ``duration``: None when absent (or 0, as some JSONs hold for
    unknown), else a positive number."""
    found = value.get(name)
    if found is None:
        return None
    try:
        number = float(found) if not isinstance(found, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not number >= 0 or math.isinf(number):
        raise UserError(f"annotation {path}: database entry '{key}' has {name} {found!r}; expected a positive number")
    return number or None
