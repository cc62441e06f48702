"""A copy of a video with each clip's top label and score drawn on its frames (``--overlay DIR``).

The companion tool needed a second script, ffmpeg twice and a TrueType file; here the video is
decoded again with PyAV, each frame gets the label of the clip that covers it (the latest clip
starting at or before the frame) in PIL's default font on a dark box, and the frames are encoded
as MP4 through PyAV, each at its own time in the input: the copy has exactly the input's frame
count and timing, a variable frame rate (phones) included. Frames of odd width or height lose
their last column or row (H.264 needs even sizes); a side of one pixel is doubled instead.

Why a second decode rather than drawing on the frames the classification decodes: a frame's
caption is known only once the clip covering it has been scored, and clips are scored in batches
(``--batch-size``, 32) while the decoding runs two batches ahead (``ahead.made_ahead``; a GPU
holds one more in flight). One pass would so hold every full-size frame from the oldest unscored
clip to the decoding frontier: with 16-frame clips, 1,500-2,000 RGB frames, 1.1-1.4 GB at
640x360 and 10-13 GB at 1080p. Smaller batches while overlaying would shrink that, but change the
batching (speed on a GPU; scores no longer those of a run without --overlay to the last bit). The
second decode is the cheaper side: measured on a 2-core machine with a 30 s 640x360 H.264 video
(750 frames) and a ResNet-10 of width 0.25, classify took 4.9-5.6 s, with --overlay 6.9-8.6 s,
of which decoding again to RGB was 0.65-0.70 s; this pass holds one frame at a time.
"""
from __future__ import annotations

import bisect
import functools
import os
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from resnet3d.classify.clips import timed_frames

Caption = Tuple[int, int, str]  # first frame, last frame (1-based, inclusive), text

# The copy's clock: frame times are written in this unit. MPEG-4 Part 2 (the encoder used without
# libx264) takes time bases up to 1/65535; 1/60000 s also counts 24, 25, 30, 50, 60 and the NTSC
# rates (1001/30000 s = 2002 ticks) exactly.
TIME_BASE = Fraction(1, 60000)


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


def even_sized(frame: np.ndarray) -> np.ndarray:
    """``frame`` cut to even height and width (H.264 in 4:2:0 needs them); a side of one pixel
    is doubled, as cutting it would leave nothing."""
    if frame.shape[0] == 1 or frame.shape[1] == 1:
        frame = np.repeat(np.repeat(frame, 2 if frame.shape[0] == 1 else 1, axis=0),
                          2 if frame.shape[1] == 1 else 1, axis=1)
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


class OverlayClock:
    """Each frame's time in the copy (in ``TIME_BASE`` units): the input's own time, strictly increasing.

    Where the input's times jump back by more than a few frames (files joined end to end, a
    stream whose clock restarts), the rest of the input is shifted to follow on one frame interval
    (``step``, from the average rate) later, as a player shows it; smaller backward steps (a
    repeated timestamp) only take the next free tick, so they cost no drift.
    """

    RESTART_FRAMES = 3  # a backward jump of more frame intervals than this is a restart, not jitter

    def __init__(self, step: int = round(1 / 25 / TIME_BASE)) -> None:
        self.step = step
        self.offset = 0
        self.last = -1

    def pts(self, seconds: float) -> int:
        own = round(seconds / TIME_BASE) + self.offset
        if own < self.last - self.RESTART_FRAMES * self.step:
            self.offset += self.last + self.step - own
            own = self.last + self.step
        self.last = max(self.last + 1, own)
        return self.last


def write_overlay(source: str, destination: Path, items: Sequence[Caption]) -> int:
    """Write the captioned copy of ``source`` to ``destination`` (atomically); returns its frame count."""
    import av

    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp")
    starts = [first for first, _, _ in items]
    count = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4") as output:
            out_stream = None
            clock = OverlayClock()
            # problems (a cut file) were reported when the video was classified
            for count, (frame, seconds) in enumerate(timed_frames(source, problems=[]), start=1):
                frame = even_sized(frame)
                if out_stream is None:
                    out_stream = _open_stream(output, frame.shape[1], frame.shape[0], source)
                    clock.step = round(1 / (out_stream.average_rate or 25) / TIME_BASE)
                text = caption_for(count, starts, items)
                if text:
                    frame = draw_caption(np.ascontiguousarray(frame), text)
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                picture.pts, picture.time_base = clock.pts(seconds), TIME_BASE
                for packet in out_stream.encode(picture):
                    output.mux(packet)
            if out_stream is not None:
                for packet in out_stream.encode():
                    output.mux(packet)
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _open_stream(output, width: int, height: int, source: str):
    """The copy's video stream: H.264 where PyAV's FFmpeg has libx264, else MPEG-4 Part 2. The
    nominal rate (the input's average) only guides the encoder's rate control; frames carry
    their own times."""
    import av

    from resnet3d.prepare.decode import VideoReader

    with VideoReader(Path(source)) as reader:  # the stream timed_frames decodes
        rate = reader.average_rate or 25.0
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    out_stream = output.add_stream(codec, rate=Fraction(rate).limit_denominator(1001 * 1000))
    out_stream.width, out_stream.height, out_stream.pix_fmt = width, height, "yuv420p"
    out_stream.codec_context.time_base = TIME_BASE
    if codec == "libx264":
        out_stream.options = {"crf": "20", "preset": "veryfast"}
    else:
        out_stream.codec_context.bit_rate = 4_000_000
    return out_stream
