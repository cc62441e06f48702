"""Real video files for the preparation tests, written with PyAV (no ffmpeg binary).

Imported by the tests as ``from prepare_videos import ...`` (pytest puts this folder on sys.path).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional, Tuple

import numpy as np


def frame_picture(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose orientation can be read back: a red block at the top-left corner and a
    blue band along the right edge, on a grey that changes with ``index``."""
    image = np.full((height, width, 3), 60 + (index * 7) % 120, dtype=np.uint8)
    block_h, block_w = max(2, height // 3), max(2, width // 3)
    image[:block_h, :block_w] = (250, 10, 10)
    image[:, width - max(2, width // 5):] = (10, 10, 250)
    return image


def write_video(
    path: Path,
    n_frames: int = 12,
    size: Tuple[int, int] = (64, 48),
    rate: int = 25,
    codec: str = "libx264",
    pix_fmt: Optional[str] = None,
    rotation: Optional[int] = None,
    hflip: bool = False,
    options: Optional[dict] = None,
    sample_aspect_ratio: Optional[Fraction] = None,
) -> Path:
    """Encode ``n_frames`` frames of ``size`` (width, height) into ``path``."""
    import av

    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if rotation is not None or hflip:
            stream.set_display_rotation(rotation or 0, hflip=hflip)
        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_picture(index, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    import av

    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.zeros((1, int(rate * seconds)), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated(path: Path, n_frames: int = 30) -> Path:
    """An MJPEG AVI cut in half: its header announces ``n_frames``, a third of them decode."""
    full = path.with_name("full_" + path.name)
    write_video(full, n_frames=n_frames, codec="mjpeg")
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def decoded_frame_count(path: Path) -> int:
    """The decoder's own count, to check extraction against."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
