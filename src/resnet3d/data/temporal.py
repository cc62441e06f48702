"""Which frames make a clip: pure functions on frame-index ranges.

Frame indices are 1-based, as the JPEG names (``image_00001.jpg``). A video (or an ActivityNet
segment) is a half-open range ``[begin, end)``; every function returns a list of exactly
``size`` indices inside it, looping the window's own frames when the range is shorter (the
originals' loop padding).
"""
from __future__ import annotations

import random
from typing import List, Sequence


def frame_range(begin: int, end: int, stride: int = 1) -> List[int]:
    """The frames of ``[begin, end)``, keeping every ``stride``-th (``--sample_t_stride``)."""
    return list(range(begin, end, max(1, stride)))


def loop_pad(indices: Sequence[int], size: int) -> List[int]:
    """Repeat ``indices`` cyclically until there are ``size`` of them (the originals' LoopPadding)."""
    if not indices:
        raise ValueError("cannot pad an empty window")
    out = list(indices[:size])
    i = 0
    while len(out) < size:
        out.append(indices[i % len(indices)])
        i += 1
    return out


def window(indices: Sequence[int], start: int, size: int) -> List[int]:
    """``size`` frames of ``indices`` from position ``start``, loop-padded at the end."""
    return loop_pad(list(indices[start : start + size]), size)


def random_crop(indices: Sequence[int], size: int, rng: random.Random) -> List[int]:
    """One window at a uniformly random position (the training crop).

    Every start from 0 to len-size is possible; the successor's ``randint(0, len - size - 1)``
    never picks the last window, an off-by-one we do not copy.
    """
    last_start = max(0, len(indices) - size)
    return window(indices, rng.randint(0, last_start), size)


def center_crop(indices: Sequence[int], size: int) -> List[int]:
    """The window around the middle (``--train_t_crop center``), as the successor places it."""
    start = max(0, len(indices) // 2 - size // 2)
    return window(indices, start, size)


def even_starts(n_indices: int, size: int, n_samples: int) -> List[int]:
    """Start positions of ``n_samples`` windows spread evenly from the first to the last frame.

    Always exactly ``n_samples`` starts (windows may overlap or repeat on short videos), so every
    video weighs the same in clip accuracy; the successor drops the later windows of short videos.
    """
    last_start = max(0, n_indices - size)
    if n_samples == 1:
        return [last_start // 2]
    return [round(i * last_start / (n_samples - 1)) for i in range(n_samples)]


def even_crop(indices: Sequence[int], size: int, n_samples: int, which: int) -> List[int]:
    """The ``which``-th of ``n_samples`` evenly spaced windows (the validation clips)."""
    return window(indices, even_starts(len(indices), size, n_samples)[which], size)


def sliding_starts(n_indices: int, size: int, stride: int, full_only: bool = False) -> List[int]:
    """Start positions of sliding windows over a video.

    ``full_only=False`` is the successor's inference (its ``SlidingWindow``): windows every
    ``stride`` frames up to the first one that runs past the last frame, which is loop-padded and
    is the last (with a stride below ``size`` the later starts would only repeat the end, ever more
    padded). ``full_only=True`` is the seed's ``--test_video``: 1-based starts 1, 1+stride, ...
    while the start is <= n - size (at least one window, even on a short video).
    """
    stride = max(1, stride)
    if full_only:
        starts = list(range(0, n_indices - size, stride))
        return starts or [0]
    starts = []
    for start in range(0, max(1, n_indices), stride):
        starts.append(start)
        if start + size > n_indices:
            break
    return starts
