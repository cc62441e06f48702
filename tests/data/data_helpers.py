"""Helpers for the data tests: real JPEG folders and annotation files made on the spot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_json(path: Path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def write_frames(folder: Path, frames: np.ndarray, n_frames_file: bool = True, quality: int = 95) -> None:
    """JPEG folder image_00001.jpg ... from uint8 (T, H, W, 3) (or (T, H, W) grey) frames."""
    import simplejpeg

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        if frame.ndim == 2:
            data = simplejpeg.encode_jpeg(frame[:, :, None], quality=quality, colorspace="GRAY")
        else:
            data = simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB")
        (folder / f"image_{index:05d}.jpg").write_bytes(data)
    if n_frames_file:
        (folder / "n_frames").write_text(str(len(frames)))


def ramp_frames(n: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Frames whose brightness encodes their index (frame i is 10*i grey), easy to tell apart."""
    return np.stack([np.full((height, width, 3), 10 * i, dtype=np.uint8) for i in range(1, n + 1)])
