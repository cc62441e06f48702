"""One clip from one source: decode, stand in for bad frames, resize, as a uint8 tensor.

Bad data never stops a run. A frame that is missing or does not decode is replaced by the
nearest readable frame of the same window (or, if the whole window is unreadable, by a readable
frame nearby in the video); each replacement is counted and the file is logged once per run (``report_once``).
A video with no readable frame at all raises ``UnreadableVideo``, which the dataset turns into a
counted substitution.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from resnet3d.data.decode import DecodeError, image_size, jpeg_size, undecodable_reason
from resnet3d.data.sources import naming_problem
from resnet3d.data.spatial import Box, OutSize, output_size, resize_clip

log = logging.getLogger("resnet3d.data")

# Files already reported by this process, and, shared with the processes it starts through
# multiprocessing (loader workers, the processes of a distributed run), a folder of markers: one
# empty file per reported file, created with O_EXCL, so that a bad file is logged once per run and
# not once per worker. A program started otherwise (a subprocess) keeps its own.
_reported: Set[str] = set()
_MARKERS_ENV = "RESNET3D_REPORTED_DIR"
if _MARKERS_ENV not in os.environ or multiprocessing.parent_process() is None:
    os.environ[_MARKERS_ENV] = os.path.join(tempfile.gettempdir(), f"resnet3d-reported-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    _MARKERS_OWNER = os.getpid()
else:
    _MARKERS_OWNER = -1


@atexit.register
def _remove_markers() -> None:
    if os.getpid() == _MARKERS_OWNER:
        shutil.rmtree(os.environ.get(_MARKERS_ENV, ""), ignore_errors=True)


class UnreadableVideo(Exception):
    """Not one frame of the video could be read."""


def _first_to_report(key: str) -> bool:
    """True in the one process of the run that claims ``key`` first (any process, if the marker
    folder cannot be written: a repeated line is better than a lost one)."""
    folder = os.environ.get(_MARKERS_ENV, "")
    if not folder:
        return True
    marker = os.path.join(folder, hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest())
    try:
        os.makedirs(folder, exist_ok=True)
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def report_once(key: str, message: str) -> None:
    """Log ``message`` the first time any process of this run meets ``key`` (a file)."""
    if key in _reported:
        return
    _reported.add(key)
    if _first_to_report(key):
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


def _readable(regions) -> List[int]:
    return regions.readable() if hasattr(regions, "readable") else sorted(regions)


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
    # each frame once and in order (the usual case): the source can resize straight into out
    direct = out if list(indices) == unique else None
    regions, failures, box = source.load(unique, pick_box, out_hw, direct)
    good = _readable(regions)
    if not good:
        probes = _probe_positions(unique, video_range)
        if probes:
            regions, _, box = source.load(probes, pick_box, out_hw)
            good = _readable(regions)
    if not good:
        raise _no_readable_frame(source, failures)
    _report_failures(source, failures)
    readable = set(good)
    chosen = [i if i in readable else _nearest(i, good) for i in indices]
    n_bad = sum(1 for i in indices if i not in readable)
    return _assemble(regions, chosen, output_size(out_hw, box), out), n_bad


def _no_readable_frame(source, failures: Dict[int, str]) -> UnreadableVideo:
    reasons = sorted(set(failures.values()))
    if reasons == ["missing"]:
        reasons = [naming_problem(source) or "missing"]
    return UnreadableVideo(f"{source.path}: no readable frame ({'; '.join(reasons) or 'empty'})")


def _report_failures(source, failures: Dict[int, str]) -> None:
    if failures:
        first = min(failures)
        report_once(
            source.path,
            f"{source.describe(first)}: {failures[first]}; a neighbouring frame stands in"
            + (f" ({len(failures)} frames of this clip affected)" if len(failures) > 1 else ""),
        )


@dataclass
class EncodedClip:
    """A clip still as JPEG bytes (``DataConfig.decode_device`` "cuda"): what
    ``resnet3d.data.gpu_decode`` needs to decode, crop and resize it on the device.

    ``images`` holds each distinct frame the clip shows once, in frame order; ``positions`` says
    which of them each of the clip's T frames shows (loop padding and stand-ins repeat one).
    ``boxes`` are the clip's crop box in each image's own pixels (x0, y0, x1, y1), ``sizes`` the
    images' (height, width) from their headers, ``on_cpu`` marks CMYK/YCCK JPEGs and frames in another
    format under a .jpg name (a PNG), which only the CPU decoders turn into RGB."""

    images: List[bytes]
    frames: List[int]  # each image's frame number in the video
    names: List[str]  # each image's file (or file and frame), for messages
    sizes: List[Tuple[int, int]]
    boxes: List[Tuple[int, int, int, int]]
    on_cpu: List[bool]
    positions: List[int]
    out_hw: Tuple[int, int]


# JPEG colour spaces that nvJPEG does not turn into RGB (Adobe CMYK and YCCK): such frames are
# decoded by the CPU decoders (simplejpeg, else PIL) even in the "cuda" decode mode
CPU_ONLY_COLORSPACES = ("CMYK", "YCCK")
NOT_JPEG = "not JPEG"  # the "colour space" of a frame in another format (a PNG named .jpg): CPU only


def jpeg_header(data: bytes) -> Tuple[int, int, str]:
    """(width, height, colour space) from a JPEG's header, without decoding pixels: what
    ``decode.jpeg_size`` reads, plus simplejpeg's name of the colour space ("YCbCr", "Gray",
    "CMYK", ...; "" without simplejpeg). Raises ``DecodeError`` where ``jpeg_size`` does."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        return jpeg_size(data) + ("",)
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except Exception as error:
        raise DecodeError(str(error) or type(error).__name__) from None
    return int(width), int(height), str(colorspace)


def _headers(source, encoded: Dict[int, object], indices: Sequence[int], failures: Dict[int, str]) -> Dict[int, Tuple[bytes, int, int, str]]:
    """index -> (bytes, width, height, colour space) of each frame whose JPEG header reads; the
    others go to ``failures`` with the reason, as the CPU path words it."""
    good = {}
    for index in indices:
        parts = encoded.get(index)
        if isinstance(parts, str) or parts is None:
            failures[index] = parts or "missing"
            continue
        try:
            width, height, colorspace = jpeg_header(parts[0])
        except DecodeError as error:
            try:  # another image format under a .jpg name (a PNG): only the CPU decoders read it
                width, height = image_size(parts[0])
                colorspace = NOT_JPEG
            except DecodeError:
                failures[index] = undecodable_reason(parts[0], error)
                continue
        good[index] = (parts[0], width, height, colorspace)
    return good


def read_encoded_clip(
    source,
    indices: Sequence[int],
    pick_box: Callable[[int, int], Box],
    out_hw: OutSize,
    video_range: Tuple[int, int],
) -> Tuple[EncodedClip, int]:
    """The clip of frame ``indices`` as JPEG bytes plus crop boxes, and how many of its T frames
    are stand-ins: ``read_clip`` without the decoding. Frames, box and stand-ins are chosen
    exactly as ``read_clip`` chooses them (same ``pick_box`` call, on the first frame whose
    header reads; missing files and unreadable headers replaced by the nearest readable frame).
    Damage past the header shows only when the device decodes the frame; ``gpu_decode`` then
    stands in the clip's nearest decoded frame and counts it."""
    unique = sorted(set(indices))
    failures: Dict[int, str] = {}
    good = _headers(source, source.frame_bytes(unique), unique, failures)
    if not good:
        probes = _probe_positions(unique, video_range)
        if probes:
            good = _headers(source, source.frame_bytes(probes), probes, {})
    if not good:
        raise _no_readable_frame(source, failures)
    _report_failures(source, failures)
    readable = sorted(good)
    first = good[readable[0]]
    box = pick_box(first[1], first[2])
    chosen = [i if i in good else _nearest(i, readable) for i in indices]
    n_bad = sum(1 for i in indices if i not in good)
    shown = sorted(set(chosen))
    row = {index: k for k, index in enumerate(shown)}
    boxes = []
    for index in shown:
        b = box.for_size(good[index][1], good[index][2])
        boxes.append((b.x0, b.y0, b.x1, b.y1))
    clip = EncodedClip(
        images=[good[i][0] for i in shown],
        frames=shown,
        names=[source.describe(i) for i in shown],
        sizes=[(good[i][2], good[i][1]) for i in shown],
        boxes=boxes,
        on_cpu=[good[i][3] in CPU_ONLY_COLORSPACES or good[i][3] == NOT_JPEG for i in shown],
        positions=[row[i] for i in chosen],
        out_hw=output_size(out_hw, box),
    )
    return clip, n_bad


def _assemble(regions, chosen: Sequence[int], out_hw: Tuple[int, int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The clip in ``chosen`` order, repeats and stand-ins included, as uint8 (T, H, W, C): rows
    the source already resized (``regions.resized``), and the other frames' regions resized here."""
    resized = getattr(regions, "resized", None)
    rows: Dict[int, int] = getattr(regions, "resized_at", {})
    picks = [rows.get(i) for i in chosen]
    if resized is not None and picks == list(range(len(resized))):
        if out is None or resized is out:  # the usual case: nothing left to do
            return resized
        return out.copy_(resized)
    loose = sorted({i for i, row in zip(chosen, picks) if row is None})  # frames decoded on their own
    if resized is not None and not loose and resized is not out:
        # repeats (loop padding) and stand-ins: one gather
        return torch.index_select(resized, 0, torch.tensor(picks), out=out)
    extra = _resize_regions(regions, loose, out_hw)
    channels = (resized if resized is not None else next(iter(extra.values()))).shape[-1]
    result = out if out is not None else torch.empty((len(chosen), out_hw[0], out_hw[1], channels), dtype=torch.uint8)
    # When ``result`` is the source's own tensor (each frame once, in order), every readable frame
    # already sits in its own row; only rows of unreadable or loose frames are written, and those
    # are never read from.
    for k, (index, row) in enumerate(zip(chosen, picks)):
        if row is None:
            result[k] = extra[index]
        elif not (resized is result and row == k):
            result[k] = resized[row]
    return result


def _resize_regions(regions, indices: Sequence[int], out_hw: Tuple[int, int]) -> Dict[int, torch.Tensor]:
    """Resize the regions of ``indices``: in one call when they share a size."""
    if not indices:
        return {}
    shapes = {regions[i].shape for i in indices}
    if len(shapes) == 1:
        stacked = resize_clip(torch.from_numpy(np.stack([regions[i] for i in indices])), out_hw)
        return dict(zip(indices, stacked))
    return {i: resize_clip(torch.from_numpy(np.ascontiguousarray(regions[i]))[None], out_hw)[0] for i in indices}
