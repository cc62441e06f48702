"""JPEG bytes -> the crop region, decoded at the smallest DCT scale that still covers it.

libjpeg-turbo can decode at a reduced size by dropping DCT coefficients. Knowing the crop box and
the output size in advance, we ask for the smallest 1/1, 1/2, 1/4 or 1/8 scale at which the crop
is still at least the output size, then cut the crop out of that smaller image (crop before
resize). simplejpeg (``min_height``/``min_width``) and PIL (``Image.draft``) both expose it;
simplejpeg measured faster (docs/data.md), PIL is the fallback for JPEG flavours simplejpeg
refuses.
"""
from __future__ import annotations

import io
import math
from typing import Optional, Tuple

import numpy as np

from resnet3d.data.spatial import Box


class DecodeError(Exception):
    """A frame's bytes are not a JPEG we can read."""


def _simplejpeg():
    try:
        import simplejpeg

        return simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        return None


def jpeg_size(data: bytes) -> Tuple[int, int]:
    """(width, height) from the JPEG header, without decoding pixels."""
    sj = _simplejpeg()
    try:
        if sj is not None:
            height, width, _, _ = sj.decode_jpeg_header(data)
            return int(width), int(height)
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as error:  # header unreadable: the caller counts the frame as bad
        raise DecodeError(str(error) or type(error).__name__) from None


def _min_decode_size(box: Box, out_hw: Tuple[int, int]) -> Tuple[int, int]:
    """The (height, width) to decode the whole frame at: the smallest 1/1, 1/2, 1/4 or 1/8 scale
    at which ``box`` still spans ``out_hw`` pixels.

    libjpeg-turbo also offers 3/8, 5/8, 3/4, 7/8..., but those take its plain-C inverse DCT and
    measured 2-3x *slower* than a full-size decode; the power-of-two scales use SIMD and a
    cheaper reduced IDCT (docs/data.md).
    """
    out_h, out_w = out_hw
    need_h = box.height * out_h / max(1, box.h)
    need_w = box.width * out_w / max(1, box.w)
    for divisor in (8, 4, 2):
        height, width = math.ceil(box.height / divisor), math.ceil(box.width / divisor)
        if height >= need_h and width >= need_w:
            return height, width
    return box.height, box.width


def _cut(image: np.ndarray, box: Box) -> np.ndarray:
    """Cut the box out of an image decoded at some DCT scale of the box's frame."""
    sy = image.shape[0] / box.height
    sx = image.shape[1] / box.width
    y0, x0 = int(box.y0 * sy), int(box.x0 * sx)
    y1 = max(y0 + 1, min(image.shape[0], int(round(box.y1 * sy))))
    x1 = max(x0 + 1, min(image.shape[1], int(round(box.x1 * sx))))
    return image[y0:y1, x0:x1]


def decode_region(
    data: bytes, box: Box, out_hw: Tuple[int, int], gray: bool = False, decoder: str = "auto"
) -> np.ndarray:
    """The ``box`` region of a JPEG as uint8 (h, w, C) with h >= out_h and w >= out_w where the
    source allows (C = 3, or 1 when ``gray``). ``box`` is in full-resolution pixels; a frame whose
    size differs from the box's frame gets the same relative box."""
    width, height = jpeg_size(data)
    box = box.for_size(width, height)
    min_h, min_w = _min_decode_size(box, out_hw)
    sj = _simplejpeg() if decoder in ("auto", "simplejpeg") else None
    if sj is not None:
        try:
            image = sj.decode_jpeg(
                data, colorspace="GRAY" if gray else "RGB", min_height=min_h, min_width=min_w
            )
            if image.ndim == 2:
                image = image[:, :, None]
            return _cut(image, box)
        except Exception:  # pragma: no cover - depends on the JPEG flavour; PIL gets a try
            if decoder == "simplejpeg":
                raise DecodeError("simplejpeg cannot decode this frame") from None
    return _cut(_decode_pil(data, (min_w, min_h), gray), box)


def _decode_pil(data: bytes, min_wh: Tuple[int, int], gray: bool) -> np.ndarray:
    from PIL import Image

    mode = "L" if gray else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft(mode, min_wh)  # DCT scaling: the smallest size >= min_wh
            array = np.asarray(image.convert(mode))
    except Exception as error:
        raise DecodeError(str(error) or type(error).__name__) from None
    return array[:, :, None] if array.ndim == 2 else array


def decode_full(data: bytes, gray: bool = False, decoder: Optional[str] = "auto") -> np.ndarray:
    """A whole frame at full size, uint8 (H, W, C)."""
    width, height = jpeg_size(data)
    return decode_region(data, Box(0, 0, width, height, width, height), (height, width), gray, decoder or "auto")
