"""Where a clip is cropped: pure functions that choose one crop box per clip, and the resize.

A box is chosen once per clip from the first frame's size and applied to every frame, as both
originals do (their transforms draw parameters once per clip). Boxes are computed on the
original frame so that the decoder can crop *before* resizing and decode at the smallest DCT
scale that still covers the crop at the output size (``resnet3d.data.decode``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

CORNERS = ("c", "tl", "tr", "bl", "br")


@dataclass(frozen=True)
class Box:
    """A crop in pixels of a ``width`` x ``height`` frame: columns x0..x1, rows y0..y1 (exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    width: int
    height: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    def for_size(self, width: int, height: int) -> "Box":
        """The same relative box on a frame of another size (a video whose frames change size)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        x0, y0 = int(self.x0 * sx), int(self.y0 * sy)
        return Box(x0, y0, max(x0 + 1, int(round(self.x1 * sx))), max(y0 + 1, int(round(self.y1 * sy))), width, height)


def _box(x0: int, y0: int, side_w: int, side_h: int, width: int, height: int) -> Box:
    x0 = min(max(0, x0), max(0, width - side_w))
    y0 = min(max(0, y0), max(0, height - side_h))
    return Box(x0, y0, min(width, x0 + side_w), min(height, y0 + side_h), width, height)


def full_box(width: int, height: int) -> Box:
    """The whole frame (the successor's ``--inference_crop nocrop``)."""
    return Box(0, 0, width, height, width, height)


def short_side_size(box: Box, short_side: int) -> Tuple[int, int]:
    """(height, width) of ``box`` resized so that its short side is ``short_side``, as the
    successor's ``Resize(sample_size)`` computes it (the long side truncated)."""
    if box.w <= box.h:
        return int(short_side * box.h / box.w), short_side
    return short_side, int(short_side * box.w / box.h)


OutSize = Union[Tuple[int, int], Callable[[Box], Tuple[int, int]]]


def output_size(out: OutSize, box: Box) -> Tuple[int, int]:
    """A fixed (height, width), or the size a rule gives for this clip's box."""
    return out(box) if callable(out) else out


def center_box(width: int, height: int) -> Box:
    """Short-side resize plus centre crop, as one box: the centred square of side min(w, h)."""
    side = min(width, height)
    return _box((width - side) // 2, (height - side) // 2, side, side, width, height)


def corner_box(width: int, height: int, scale: float, position: str) -> Box:
    """A square of side int(min(w, h) * scale) at the centre ('c') or a corner ('tl', 'tr', 'bl', 'br')."""
    side = max(1, int(min(width, height) * scale))
    if position == "c":
        x0, y0 = (width - side) // 2, (height - side) // 2
    elif position == "tl":
        x0, y0 = 0, 0
    elif position == "tr":
        x0, y0 = width - side, 0
    elif position == "bl":
        x0, y0 = 0, height - side
    elif position == "br":
        x0, y0 = width - side, height - side
    else:
        raise ValueError(f"unknown crop position '{position}' (use one of {CORNERS})")
    return _box(x0, y0, side, side, width, height)


def random_corner_box(width: int, height: int, scales: Sequence[float], rng: random.Random) -> Box:
    """The seed's crop ``c`` / successor's ``corner``: a random scale and one of 5 positions."""
    return corner_box(width, height, rng.choice(list(scales)), rng.choice(CORNERS))


def random_position_box(width: int, height: int, scales: Sequence[float], rng: random.Random) -> Box:
    """The seed's crop ``r``: a multi-scale square anywhere in the frame."""
    side = max(1, int(min(width, height) * rng.choice(list(scales))))
    x0 = int(rng.random() * (width - side))
    y0 = int(rng.random() * (height - side))
    return _box(x0, y0, side, side, width, height)


def random_resized_box(
    width: int,
    height: int,
    scale: Tuple[float, float],
    ratio: Tuple[float, float],
    rng: random.Random,
    attempts: int = 10,
) -> Box:
    """The successor's ``random`` crop (random-resized crop): an area share in ``scale`` of the
    frame with aspect ratio (w/h) log-uniform in ``ratio``; after ``attempts`` misses, the largest
    centred crop whose ratio is clamped into ``ratio``."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _box(rng.randint(0, width - w), rng.randint(0, height - h), w, h, width, height)
    frame_ratio = width / height
    if frame_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif frame_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return _box((width - w) // 2, (height - h) // 2, w, h, width, height)


def resize_clip(frames: torch.Tensor, size: Tuple[int, int], out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 (T, h, w, C) -> contiguous uint8 (T, H, W, C), bilinear with antialiasing (PIL's
    bilinear resize, which the successor uses), whole clip at once.

    torch's uint8 path on channels-last input is ~7x faster per frame than PIL's resize of the
    crop (measured: docs/data.md), and keeps the clip in one tensor. ``frames`` may be a strided
    view (the crop of a decode buffer): reading it in place costs less than gathering it first.
    ``out`` (contiguous (T, H, W, C), e.g. a clip's slot in a batch tensor) receives the result
    without an intermediate copy.
    """
    if frames.shape[1:3] == tuple(size):
        return frames.contiguous() if out is None else out.copy_(frames)
    x = frames.permute(0, 3, 1, 2)  # (T, C, h, w), channels-last strides
    if x.shape[1] not in (3, 4) or x.dtype != torch.uint8:
        # torch's fast uint8 kernel covers 3/4 channels; others (flow's 2) go through float
        y = torch.nn.functional.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return y.contiguous() if out is None else out.copy_(y)
    if _rows_first(x.shape[2], x.shape[3], size):
        # torch resizes along the width first; when the rows shrink a lot, shrinking them first
        # leaves the (costlier) width pass fewer rows. Same filter, intermediate rounded to uint8.
        x = torch.nn.functional.interpolate(x, size=(size[0], x.shape[3]), mode="bilinear", antialias=True, align_corners=False)
    target = None if out is None else out.permute(0, 3, 1, 2)  # (T, C, H, W), channels-last strides
    y = _resize_uint8(x, size, target).permute(0, 2, 3, 1)  # (T, H, W, C)
    return y if out is not None else y.contiguous()  # channels-last in, so already contiguous


def _resize_uint8(x: torch.Tensor, size: Tuple[int, int], out: Optional[torch.Tensor]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 (T, C, h, w), written into ``out`` when given.

    ``F.interpolate`` has no ``out``; the ATen op behind it does (``torch.ops.aten``). Writing the
    clip straight into its batch slot saves a copy of every batch and an allocation per clip
    (docs/data.md); if the op's signature ever changes, we resize and copy instead."""
    if out is not None:
        try:
            return torch.ops.aten._upsample_bilinear2d_aa.out(x, list(size), False, None, None, out=out)
        except (RuntimeError, TypeError, AttributeError):  # pragma: no cover - a future torch
            return out.copy_(_resize_uint8(x, size, None))
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _rows_first(height: int, width: int, size: Tuple[int, int]) -> bool:
    """Whether two passes, rows first, cost less than torch's one call (width first).

    Measured on torch 2.13's AVX2 uint8 kernels: a width pass costs ~2.6x a height pass per input
    sample, so rows-first wins when the height shrinks by 1.5x or more and the width shrinks too
    (e.g. 200x200 -> 112x112: 33 instead of 40 us per frame); docs/data.md.
    """
    out_h, out_w = size
    return height >= 1.5 * out_h and width >= out_w


def crop_array(image: np.ndarray, box: Box) -> np.ndarray:
    """Cut ``box`` out of an (H, W, C) array decoded at full size (a view, no copy)."""
    return image[box.y0 : box.y1, box.x0 : box.x1]
