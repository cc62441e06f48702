"""A subset with no video is a mistake to report, not an epoch of nothing.

An annotation whose entries name their subset otherwise than the shared format's
``training``/``validation``/``testing`` (or its short spellings ``train``/``val``/``test``, which
mean the same) selects no video; training then ran epochs of zero clips and wrote loss 0, and
recognition wrote an empty results file, both with exit status 0.
"""
from __future__ import annotations

import logging
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Set, Tuple

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


# how messages name the setting of the recognition subset, in each of its spellings
RECOGNITION_SUBSET = "--inference_subset (--test_subset with the seed's flags; [inference] subset in a config file)"


def require_recognition_videos(data: Any, subset: str, read: Dict[str, int]) -> None:
    """The subset that recognition reads after training holds videos, checked before training
    starts: a misnamed or empty subset was found only after the last epoch, hours later. The
    videos are chosen as recognition chooses them (``resolve_videos``); ``read`` holds the video
    counts of the subsets the run has read already ({"validation": 20}), which are not read twice."""
    from resnet3d.data.config import canonical_subset
    from resnet3d.data.dataset import resolve_videos

    try:
        name = canonical_subset(subset)
    except UserError as error:
        raise UserError(f"{RECOGNITION_SUBSET}: {error}") from None
    if name in read:
        n_videos = read[name]
    else:
        n_videos = len(resolve_videos(data, name)[0])
        _RESOLVED_BEFORE_TRAINING.add((str(data.annotation_path), name))
    require_videos(n_videos, data.annotation_path, name,
                   f"choose the subset to recognise with {RECOGNITION_SUBSET}")


# (annotation, subset) pairs this process resolved before training, and so warned about (missing
# videos, empty segments): recognition after training resolves them again, without the repeat
_RESOLVED_BEFORE_TRAINING: Set[Tuple[str, str]] = set()


@contextmanager
def warned_already(data: Any, subset: str) -> Iterator[None]:
    """The data code's warnings are held back inside when this subset's were given before training."""
    from resnet3d.data.config import canonical_subset

    if (str(data.annotation_path), canonical_subset(subset)) not in _RESOLVED_BEFORE_TRAINING:
        yield
        return
    logger = logging.getLogger("resnet3d.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
