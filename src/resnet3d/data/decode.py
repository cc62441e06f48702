"""JPEG bytes -> the crop region, decoded at the smallest DCT scale that still covers it.

libjpeg-turbo can decode at a reduced size by dropping DCT coefficients. Knowing the crop box and
the output size in advance, we ask for the smallest 1/1, 1/2, 1/4 or 1/8 scale at which the crop
still spans the output size, then cut the crop out of that smaller image (crop before resize).
simplejpeg (``min_height``/``min_width``) and PIL (``Image.draft``) both expose it; simplejpeg
measured faster (docs/data.md), PIL is the fallback for JPEG flavours simplejpeg refuses and for
frames in another image format under a ``.jpg`` name (a PNG, as the successor's PIL loader read it):
only frames that fail the JPEG path take it.

``ClipDecoder`` is the fast path for a whole clip: every frame shares one box, so frames are
decoded straight into one small preallocated buffer, and a group's crops (a strided view of it)
are resized in one call into the clip's rows, in its batch slot when there is one.
"""
from __future__ import annotations

import io
import math
import threading
import weakref
from typing import List, Optional, Tuple

import numpy as np

import torch

from resnet3d.data.spatial import Box, resize_clip

DIVISORS = (8, 4, 2)  # libjpeg-turbo's SIMD-accelerated reduced scales (1/8, 1/4, 1/2)


JPEG_SOI = b"\xff\xd8"  # every JPEG starts with its start-of-image marker

# signatures of the image formats PIL reads that turn up under a .jpg name
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"))


class DecodeError(Exception):
    """A frame's bytes are not a JPEG (or other image) we can read."""


def image_format(data: bytes) -> str:
    """"JPEG", another format's name from its signature ("PNG", "WebP", ...), or ""."""
    if data[:2] == JPEG_SOI:
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return ""


def undecodable_reason(data: bytes, error: Exception) -> str:
    """Why a frame's bytes could not be decoded, as the bad-frame line words it."""
    if not data:
        return "empty file (0 bytes)"
    kind = image_format(data)
    if kind == "JPEG":
        return f"corrupt JPEG ({error})"
    if kind:
        return f"damaged {kind} image, not a JPEG ({error})"
    return f"not an image: neither JPEG nor a format PIL reads (first bytes {data[:8]!r})"


def _simplejpeg():
    try:
        import simplejpeg

        return simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is a dependency
        return None


def image_size(data: bytes) -> Tuple[int, int]:
    """(width, height) from the header: a JPEG's, else (the slow path, for frames the JPEG path
    refuses) whatever image PIL can open."""
    try:
        return jpeg_size(data)
    except DecodeError as error:
        if not data:
            raise DecodeError("empty file (0 bytes)") from None
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Exception as pil_error:
            if data[:2] == JPEG_SOI:
                raise error from None  # a damaged JPEG: the JPEG decoder's reason
            raise DecodeError(str(pil_error) or type(pil_error).__name__) from None


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


def scale_divisor(box: Box, out_hw: Tuple[int, int], tolerance: float = 1.0) -> int:
    """The largest of 8, 4, 2 (else 1) such that ``box`` decoded at 1/divisor still spans
    ``tolerance`` x ``out_hw`` pixels.

    ``tolerance`` 1.0 never upsamples a reduced decode; 0.9 accepts a final upscale of up to 1/0.9
    (docs/data.md measures what that costs in fidelity and gains in speed). libjpeg-turbo also
    offers 3/8, 5/8, 3/4, 7/8..., but those take its plain-C inverse DCT and measured 2-3x *slower*
    than a full-size decode; the power-of-two scales use SIMD and a cheaper reduced IDCT.
    """
    out_h, out_w = out_hw
    for divisor in DIVISORS:
        if box.h / divisor >= tolerance * out_h and box.w / divisor >= tolerance * out_w:
            return divisor
    return 1


def scaled_size(width: int, height: int, divisor: int) -> Tuple[int, int]:
    """(height, width) of a ``width`` x ``height`` JPEG decoded at 1/divisor (libjpeg rounds up)."""
    return math.ceil(height / divisor), math.ceil(width / divisor)


def _edges(lo: int, hi: int, divisor: int, limit: int) -> slice:
    """The decoded pixels of full-resolution pixels ``lo..hi``: decoded pixel j stands for
    full-resolution pixels j*divisor .. (j+1)*divisor, so the edges round to the nearest one."""
    start = min(int(lo / divisor + 0.5), limit - 1)
    stop = max(start + 1, min(limit, int(hi / divisor + 0.5)))
    return slice(start, stop)


def _divisor_of(image: np.ndarray, box: Box) -> Optional[int]:
    """The DCT scale divisor a decoder actually used, from the decoded image's shape."""
    for divisor in (1,) + DIVISORS:
        if image.shape[:2] == scaled_size(box.width, box.height, divisor):
            return divisor
    return None


def _cut(image: np.ndarray, box: Box) -> np.ndarray:
    """Cut the box out of an image decoded at some DCT scale of the box's frame (a view)."""
    divisor = _divisor_of(image, box)
    if divisor is None:  # a decoder that scaled some other way: map the box proportionally
        sy, sx = image.shape[0] / box.height, image.shape[1] / box.width
        y0, x0 = int(box.y0 * sy), int(box.x0 * sx)
        y1 = max(y0 + 1, min(image.shape[0], int(round(box.y1 * sy))))
        x1 = max(x0 + 1, min(image.shape[1], int(round(box.x1 * sx))))
        return image[y0:y1, x0:x1]
    rows = _edges(box.y0, box.y1, divisor, image.shape[0])
    cols = _edges(box.x0, box.x1, divisor, image.shape[1])
    return image[rows, cols]


def decode_region(
    data: bytes,
    box: Box,
    out_hw: Tuple[int, int],
    gray: bool = False,
    decoder: str = "auto",
    tolerance: float = 1.0,
    fast_decode: bool = False,
) -> np.ndarray:
    """The ``box`` region of a JPEG as uint8 (h, w, C), decoded at the smallest power-of-two scale
    that ``scale_divisor`` allows (C = 3, or 1 when ``gray``). ``box`` is in full-resolution
    pixels; a frame whose size differs from the box's frame gets the same relative box.

    ``fast_decode`` takes libjpeg-turbo's fast paths: the integer "ifast" inverse DCT and chroma
    upsampling by replication instead of its smoothing filter (about 1 grey level from the exact
    decode per pixel, 15% less time; docs/data.md). The PIL fallback always decodes exactly; it
    also reads frames in other formats (a PNG named .jpg) unless ``decoder`` is "simplejpeg"."""
    width, height = image_size(data)
    box = box.for_size(width, height)
    min_h, min_w = scaled_size(width, height, scale_divisor(box, out_hw, tolerance))
    jpeg = data[:2] == JPEG_SOI
    if not jpeg and decoder == "simplejpeg":
        raise DecodeError(f"a {image_format(data) or 'non-JPEG'} image; --decoder simplejpeg reads JPEG only "
                          "(--decoder auto or pil reads it)")
    sj = _simplejpeg() if decoder in ("auto", "simplejpeg") and jpeg else None
    if sj is not None:
        try:
            image = sj.decode_jpeg(
                data,
                colorspace="GRAY" if gray else "RGB",
                min_height=min_h,
                min_width=min_w,
                fastupsample=fast_decode,
                fastdct=fast_decode,
            )
            if image.ndim == 2:
                image = image[:, :, None]
            return _cut(image, box)
        except Exception:  # depends on the JPEG flavour; PIL gets a try
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
    width, height = image_size(data)
    return decode_region(data, Box(0, 0, width, height, width, height), (height, width), gray, decoder or "auto")


# Frames are decoded into a buffer of at most about this size and resized group by group. Per
# frame, groups of 1-4 MiB and whole 16-frame clips measured the same within noise, 256 KiB groups
# (one 320x240 frame) ~15% more (more resize calls). 8 MiB holds a 16-frame training clip up to
# 480x360 (one resize call) and keeps memory flat when a caller reads hundreds of frames at once
# (per-video recognition windows).
CHUNK_BYTES = 8 << 20


class _Scratch(threading.local):
    """One decode buffer per thread, reused from clip to clip. A fresh multi-megabyte buffer per
    clip costs ~100 page faults per clip as the allocator hands memory back and forth with the
    OS, ~10% of the loader's time (measured; docs/data.md)."""

    buffer: Optional[np.ndarray] = None
    user: Optional["weakref.ref"] = None  # the ClipDecoder decoding into it now


_scratch = _Scratch()


class ClipDecoder:
    """Decodes the crop region of each frame of one clip and resizes it to ``out_hw``.

    Every frame shares the clip's box, hence its DCT scale and decoded size: frames are decoded
    straight into a small reusable buffer (no per-frame allocation), and each group's crops, a
    strided view of that buffer, are resized in one call into rows of ``resized``: row ``p`` for
    the frame added at position ``p`` (``out`` when given, so a clip lands in its batch slot). A
    frame of another size, or one simplejpeg refuses, is decoded on its own and handed back
    un-resized. Call ``finish()`` after the last frame.
    """

    def __init__(
        self,
        box: Box,
        out_hw: Tuple[int, int],
        n_positions: int,
        gray: bool = False,
        decoder: str = "auto",
        tolerance: float = 1.0,
        fast_decode: bool = False,
        out: Optional[torch.Tensor] = None,
    ) -> None:
        self.box = box
        self.out_hw = out_hw
        self.gray = gray
        self.decoder = decoder
        self.tolerance = tolerance
        self.fast_decode = fast_decode
        self.divisor = scale_divisor(box, out_hw, tolerance)
        self.height, self.width = scaled_size(box.width, box.height, self.divisor)
        self.rows = _edges(box.y0, box.y1, self.divisor, self.height)
        self.cols = _edges(box.x0, box.x1, self.divisor, self.width)
        self.channels = 1 if gray else 3
        self._sj = _simplejpeg() if decoder in ("auto", "simplejpeg") else None
        self.n_positions = n_positions if self._sj is not None else 0
        frame_bytes = self.height * self.width * self.channels
        chunk = max(1, min(self.n_positions, CHUNK_BYTES // max(1, frame_bytes)))
        self._buffer = self._take_buffer((chunk if self.n_positions else 0, self.height, self.width, self.channels))
        self._pending: List[int] = []  # positions decoded into the buffer, not yet resized
        self._out = out
        self._finished = False
        self.resized: Optional[torch.Tensor] = None  # (n_positions, H, W, C) once a group is resized
        self.done: List[int] = []  # positions whose row of ``resized`` is filled

    def _take_buffer(self, shape: Tuple[int, ...]) -> np.ndarray:
        """This thread's reusable buffer, unless another decoder still uses it (then a new one)."""
        size = int(np.prod(shape))
        user = _scratch.user() if _scratch.user is not None else None
        if size == 0 or (user is not None and not user._finished):
            return np.empty(shape, np.uint8)
        if _scratch.buffer is None or _scratch.buffer.size < size:
            _scratch.buffer = np.empty(size, np.uint8)
        _scratch.user = weakref.ref(self)
        return _scratch.buffer[:size].reshape(shape)

    def add(self, position: int, data: bytes) -> Optional[np.ndarray]:
        """Decode the frame at ``position``. None: it joins ``resized``; else its uint8 (h, w, C)
        region, decoded on its own. Raises ``DecodeError`` for bytes that no decoder reads."""
        decoder = self.decoder
        if self.n_positions:
            slot = self._buffer[len(self._pending)]
            try:
                image = self._sj.decode_jpeg(
                    data,
                    colorspace="GRAY" if self.gray else "RGB",
                    min_height=self.height,
                    min_width=self.width,
                    fastupsample=self.fast_decode,
                    fastdct=self.fast_decode,
                    buffer=slot,
                )
            except Exception:  # a larger frame (the buffer is too small), or bytes simplejpeg refuses
                try:
                    size: Optional[Tuple[int, int]] = jpeg_size(data)
                except DecodeError:  # no JPEG header: decode_region reads other formats with PIL, or says why not
                    size = None
                if size == (self.box.width, self.box.height):
                    if self.decoder == "simplejpeg":
                        raise DecodeError("simplejpeg cannot decode this frame") from None
                    decoder = "pil"  # a JPEG flavour simplejpeg refuses, or damage: PIL gets a try
            else:
                if image.shape[:2] == (self.height, self.width):
                    self._pending.append(position)
                    if len(self._pending) == len(self._buffer):
                        self._flush()
                    return None
                decoder = self.decoder  # a smaller frame (another size): decoded below on its own
        return decode_region(data, self.box, self.out_hw, self.gray, decoder, self.tolerance, self.fast_decode)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.resized is None:
            shape = (self.n_positions, self.out_hw[0], self.out_hw[1], self.channels)
            self.resized = self._out if self._out is not None else torch.empty(shape, dtype=torch.uint8)
        crops = torch.from_numpy(self._buffer[: len(self._pending), self.rows, self.cols])
        first, n = self._pending[0], len(self._pending)
        if self._pending == list(range(first, first + n)):  # consecutive rows: resize in place
            resize_clip(crops, self.out_hw, out=self.resized[first : first + n])
        else:  # a frame in between was decoded on its own or was unreadable
            self.resized[torch.tensor(self._pending)] = resize_clip(crops, self.out_hw)
        self.done += self._pending
        self._pending = []

    def finish(self) -> Tuple[Optional[torch.Tensor], List[int]]:
        """``resized`` and the positions whose rows it holds; the buffer is free for the next clip."""
        self._flush()
        self._finished = True
        return self.resized, self.done
