"""A subset with no video is a mistake to report, not an epoch of nothing.

An annotation whose entries name their subset otherwise than the shared format's
``training``/``validation``/``testing`` (or its short spellings ``train``/``val``/``test``, which
mean the same) selects no video; training then ran epochs of zero clips and wrote loss 0, and
recognition wrote an empty results file, both with exit status 0.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict

from resnet3d.errors import UserError
from resnet3d.fileio import read_user_json


def subset_counts(annotation_path: str) -> Dict[str, int]:
    """How many database entries each ``subset`` value of the annotation has."""
    data: Any = read_user_json(annotation_path, "annotation")
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        return {}
    return dict(Counter(str(entry.get("subset")) for entry in database.values() if isinstance(entry, dict)))


def require_videos(n_videos: int, annotation_path: str, subset: str, fix: str) -> None:
    """Raise a UserError naming the annotation, the subsets it holds and ``fix`` when ``n_videos`` is 0."""
    if n_videos:
        return
    counts = subset_counts(annotation_path)
    if counts.get(subset):
        why = (f"its {counts[subset]} {subset} entries all have an empty frame range (segment); "
               "rebuild the annotation after extracting the frames (resnet3d prepare ...)")
    else:
        held = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"
        why = (f"no entry has \"subset\": \"{subset}\" (its subsets: {held}; the shared format spells them "
               "training, validation, testing)")
    raise UserError(f"annotation {annotation_path}: no {subset} videos: {why}; {fix}")
