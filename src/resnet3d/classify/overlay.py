"""A copy of a video with each clip's top label and score drawn on its frames (``--overlay DIR``).

The companion tool needed a second script, ffmpeg twice and a TrueType file; here the video is
decoded again with PyAV, each frame gets the label of the clip that covers it (the latest clip
starting at or before the frame) in PIL's default font on a dark box, and the frames are encoded
as MP4 through PyAV at the input's frame rate. The copy has exactly the input's frame count;
frames of odd width or height lose their last column or row (H.264 needs even sizes).
"""
from __future__ import annotations

import bisect
import functools
import os
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from resnet3d.classify.clips import decode_frames, open_video

Caption = Tuple[int, int, str]  # first frame, last frame (1-based, inclusive), text


def captions(clips: Sequence[dict]) -> List[Caption]:
    """``(first, last, "label 0.87")`` per clip of a score-mode result."""
    out = []
    for clip in clips:
        first, last = clip["segment"]
        score = max(clip["scores"]) if clip.get("scores") else None
        text = clip["label"] if score is None else f"{clip['label']} {score:.2f}"
        out.append((int(first), int(last), text))
    return out


def caption_for(frame: int, starts: List[int], items: Sequence[Caption]) -> Optional[str]:
    """The text of the latest clip that starts at or before ``frame``, if it covers the frame.

    Clip ends grow with their starts, so no earlier clip covers a frame the latest one misses
    (a gap left by --stride larger than the clip)."""
    position = bisect.bisect_right(starts, frame) - 1
    if position < 0:
        return None
    first, last, text = items[position]
    return text if first <= frame <= last else None


@functools.lru_cache(maxsize=32)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` (H, W, 3) with ``text`` in light grey on a dark box at the top left, the font
    sized to 6% of the height and shrunk until the text fits the width."""
    from PIL import Image, ImageDraw

    height, width = frame.shape[:2]
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    margin = max(1, height // 60)
    size = max(8, int(round(height * 0.06)))
    font = _font(size)
    box = draw.textbbox((2 * margin, 2 * margin), text, font=font)
    if box[2] + 2 * margin > width and size > 8:
        size = max(8, int(size * (width - 4 * margin) / max(1, box[2] - box[0])))
        font = _font(size)
        box = draw.textbbox((2 * margin, 2 * margin), text, font=font)
    left, top, right, bottom = box
    draw.rectangle((left - margin, top - margin, right + margin, bottom + margin), fill=(30, 30, 30))
    draw.text((2 * margin, 2 * margin), text, font=font, fill=(235, 235, 235))
    return np.asarray(image)


def _codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_overlay(source: str, destination: Path, items: Sequence[Caption]) -> int:
    """Write the captioned copy of ``source`` to ``destination`` (atomically); returns its frame count."""
    import av

    with open_video(source) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp")
    starts = [first for first, _, _ in items]
    count = 0
    codec = _codec()
    try:
        with av.open(str(tmp), mode="w", format="mp4") as output:
            out_stream = None
            for count, frame in enumerate(decode_frames(source), start=1):
                frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
                if out_stream is None:
                    out_stream = output.add_stream(codec, rate=Fraction(rate).limit_denominator(1001 * 1000))
                    out_stream.width, out_stream.height, out_stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
                    if codec == "libx264":
                        out_stream.options = {"crf": "20", "preset": "veryfast"}
                    else:
                        out_stream.codec_context.bit_rate = 4_000_000
                text = caption_for(count, starts, items)
                if text:
                    frame = draw_caption(np.ascontiguousarray(frame), text)
                for packet in out_stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    output.mux(packet)
            if out_stream is not None:
                for packet in out_stream.encode():
                    output.mux(packet)
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
