"""One clip from one source: decode, stand in for bad frames, resize, as a uint8 tensor.

Bad data never stops a run. A frame that is missing or does not decode is replaced by the
nearest readable frame of the same window (or, if the whole window is unreadable, by a readable
frame nearby in the video); each replacement is counted and the file is logged once per process.
A video with no readable frame at all raises ``UnreadableVideo``, which the dataset turns into a
counted substitution.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from resnet3d.data.spatial import Box, OutSize, output_size, resize_clip

log = logging.getLogger("resnet3d.data")

# files already reported by this process (each worker reports a file at most once)
_reported: Set[str] = set()


class UnreadableVideo(Exception):
    """Not one frame of the video could be read."""


def report_once(key: str, message: str) -> None:
    if key in _reported:
        return
    _reported.add(key)
    log.warning(message)


def _probe_positions(window: Sequence[int], video_range: Tuple[int, int], budget: int = 16) -> List[int]:
    """Frames to try when a whole window is unreadable: just outside it, then across the video."""
    begin, end = video_range
    lo, hi = min(window), max(window)
    near = []
    for step in range(1, budget // 2 + 1):
        near += [lo - step, hi + step]
    spread = np.linspace(begin, end - 1, num=budget // 2).round().astype(int).tolist() if end > begin else []
    seen = set(window)
    out = []
    for index in near + spread:
        if begin <= index < end and index not in seen:
            seen.add(index)
            out.append(index)
    return out


def _nearest(index: int, good: Sequence[int]) -> int:
    return min(good, key=lambda g: (abs(g - index), g))


def read_clip(
    source,
    indices: Sequence[int],
    pick_box: Callable[[int, int], Box],
    out_hw: OutSize,
    video_range: Tuple[int, int],
    out: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, int]:
    """uint8 (T, H, W, C) for the frame ``indices`` (1-based, repeats allowed), and how many of
    the T frames are stand-ins for unreadable ones. With ``out`` (a slot of a batch tensor of
    the right shape), the clip is written there and ``out`` is returned."""
    unique = sorted(set(indices))
    regions, failures, box = source.load(unique, pick_box, out_hw)
    if not regions:
        probes = _probe_positions(unique, video_range)
        if probes:
            regions, _, box = source.load(probes, pick_box, out_hw)
    if not regions:
        reasons = sorted(set(failures.values()))
        raise UnreadableVideo(f"{source.path}: no readable frame ({'; '.join(reasons) or 'empty'})")
    if failures:
        first = min(failures)
        report_once(
            source.path,
            f"{source.describe(first)}: {failures[first]}; a neighbouring frame stands in"
            + (f" ({len(failures)} frames of this clip affected)" if len(failures) > 1 else ""),
        )
    good = sorted(regions)
    chosen = [i if i in regions else _nearest(i, good) for i in indices]
    n_bad = sum(1 for i in indices if i not in regions)
    return _assemble(regions, chosen, output_size(out_hw, box), out), n_bad


def _assemble(
    regions: Dict[int, np.ndarray], chosen: Sequence[int], out_hw: Tuple[int, int], out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Resize the regions the clip uses and put them in clip order, repeats included."""
    stack = getattr(regions, "stack", None)
    if stack is not None and set(chosen) <= set(regions.stack_indices):
        order = list(regions.stack_indices)
        if order == list(chosen):  # the usual case: each frame once, in order, straight into out
            return resize_clip(torch.from_numpy(stack), out_hw, out=out)
        resized = resize_clip(torch.from_numpy(stack), out_hw)  # (U, H, W, C) in one call
    else:
        order = sorted(set(chosen))
        shapes = {regions[i].shape for i in order}
        if len(shapes) == 1:
            resized = resize_clip(torch.from_numpy(np.stack([regions[i] for i in order])), out_hw)
        else:  # frames of different sizes in one video: resize one by one
            resized = torch.cat([resize_clip(torch.from_numpy(np.ascontiguousarray(regions[i]))[None], out_hw) for i in order])
    if list(order) != list(chosen):
        position = {index: k for k, index in enumerate(order)}
        resized = resized[torch.tensor([position[i] for i in chosen])]  # (T, H, W, C)
    if out is None:
        return resized
    return out.copy_(resized)
