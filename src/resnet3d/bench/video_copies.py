"""Long benchmark runs from few generated videos: each video listed several times.

Generating JPEG frames runs near 150 frames/s on one core, so a benchmark cannot make a data
set large enough for a 15-worker loader in the time it measures. A data set of few videos is
no measure either: with 144 videos and batches of 64 an epoch holds two batches, so at most two
workers are ever busy, and the figure is the loader's start-up, not its throughput (the first
GPU session read 189 clips/s with 95.6% data wait from exactly that).
"""
from __future__ import annotations

import json
import os
from typing import Tuple

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json


def with_video_copies(video_path: str, annotation_path: str, copies: int, workdir: str,
                      subset: str = "training", dataset: str = "kinetics") -> Tuple[str, str]:
    """A kinetics-layout data set in ``workdir`` listing each video of ``subset`` ``copies``
    times, every copy a symlink to the video's own folder. The loader still opens and decodes
    every frame of every clip; the files are merely hot in the page cache, as those of a data set
    that fits in RAM are. The user's folders are only read. ``dataset``: the annotation's
    flavour, refused unless its folders are in the kinetics layout."""
    if dataset != "kinetics":
        raise UserError(f"--video-copies needs a data set in the kinetics layout (<label>/<key> folders), "
                        f"not --dataset {dataset}")
    try:
        with open(annotation_path, "r", encoding="utf-8") as handle:
            annotation = json.load(handle)
        entries = annotation["database"].items()
    except (OSError, ValueError, KeyError, AttributeError) as error:
        raise UserError(f"--video-copies: cannot read {annotation_path} as an annotation JSON ({error})") from None
    root = os.path.join(workdir, f"copies_x{copies}")
    database = {}
    for key, entry in entries:
        label = (entry.get("annotations") or {}).get("label") if isinstance(entry, dict) else None
        if not label or entry.get("subset") != subset:  # not a labelled entry (a dict): not copied
            continue
        os.makedirs(os.path.join(root, "jpg", label), exist_ok=True)
        for copy in range(copies):
            name = key if copy == 0 else f"copy{copy}-{key}"
            link = os.path.join(root, "jpg", label, name)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(video_path, label, key)), link)
            database[name] = entry
    if not database:
        raise UserError(f"--video-copies: {annotation_path} lists no labelled {subset!r} videos to copy")
    path = os.path.join(root, "annotation.json")
    atomic_write_json(path, {**annotation, "database": database})
    return os.path.join(root, "jpg"), path
