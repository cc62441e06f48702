"""Small action data sets whose classes differ only by motion, in the originals' layouts.

Each video shows a striped disc ("wheel") on a random smooth background with its own colours,
size, start position and speed. The class is the motion: moving down / up, growing / shrinking,
moving right / left, spinning clockwise / anticlockwise. Any single frame is a disc somewhere on a
background, so no frame tells the class; reversing time turns every class into its partner
(down <-> up, grow <-> shrink, ...). A model must use time to tell them apart.

The first four classes are also unchanged by a horizontal flip, so the originals' default
``hflip`` augmentation keeps their labels right. Classes 5-8 (right/left, clockwise/anticlockwise)
swap under a flip: train those with ``--no_hflip``.

Written as the originals' users have their data: real JPEG folders (``image_%05d.jpg``, 1-based,
plus the seed's ``n_frames`` file), real MP4 files (H.264 through PyAV when its FFmpeg has
libx264, else MPEG-4 Part 2), and the shared annotation JSON (with the successor's
``segment``). The UCF-101 layout also gets ``classInd.txt`` and the split lists.

    >>> info = make_action_dataset("/tmp/motion", n_classes=4, videos_per_class=10)
    >>> info.annotation_path, info.jpg_path, info.dataset

or from a shell: ``python -m resnet3d.synthetic /tmp/motion --fmt both --size 240 320``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_json, atomic_write_text

# (name, dx, dy, spin, zoom): unit motion per class; consecutive pairs are each other's time
# reversal. The first four are unchanged by a horizontal flip.
MOTIONS: List[Tuple[str, float, float, float, float]] = [
    ("move down", 0.0, 1.0, 0.0, 0.0),
    ("move up", 0.0, -1.0, 0.0, 0.0),
    ("grow", 0.0, 0.0, 0.0, 1.0),
    ("shrink", 0.0, 0.0, 0.0, -1.0),
    ("move right", 1.0, 0.0, 0.0, 0.0),
    ("move left", -1.0, 0.0, 0.0, 0.0),
    ("spin clockwise", 0.0, 0.0, 1.0, 0.0),
    ("spin anticlockwise", 0.0, 0.0, -1.0, 0.0),
]
REVERSED = {MOTIONS[i][0]: MOTIONS[i ^ 1][0] for i in range(len(MOTIONS))}
LAYOUTS = ("kinetics", "ucf101", "folder")
FORMATS = ("jpg", "mp4", "both")


@dataclass
class SyntheticInfo:
    """Where a generated data set lies and how to point resnet3d at it."""

    root: str
    dataset: str  # value for --dataset
    annotation_path: str
    class_names: List[str]
    jpg_path: Optional[str] = None  # --video_path for --file_type jpg
    video_path: Optional[str] = None  # --video_path for --file_type video
    n_frames: int = 0
    size: Tuple[int, int] = (0, 0)  # (height, width)
    fps: int = 25
    subsets: Dict[str, int] = field(default_factory=dict)  # subset -> number of videos
    videos: List[Dict[str, object]] = field(default_factory=list)  # key, label, subset, rel_path, motion


def class_name(index: int, layout: str) -> str:
    name = MOTIONS[index][0]
    return "".join(word.capitalize() for word in name.split()) if layout == "ucf101" else name


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int = 4) -> np.ndarray:
    """A random smooth colour field (bilinear upsampling of a coarse random grid), float (H, W, 3)."""
    coarse = rng.uniform(20, 235, size=(cells + 1, cells + 1, 3))
    ys = np.linspace(0, cells, height)
    xs = np.linspace(0, cells, width)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_video(
    motion: int, n_frames: int, size: Tuple[int, int], rng: np.random.Generator, noise: float = 2.0
) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of one video of class ``motion`` (an index into MOTIONS).

    ``noise`` is the standard deviation of the per-frame sensor noise (the static background
    texture is 3x that); it sets how hard the JPEGs are to compress and decode."""
    height, width = size
    _, dx, dy, spin, zoom = MOTIONS[motion]
    background = _smooth_field(rng, height, width)
    background += rng.normal(0, 3 * noise, size=background.shape)  # static texture
    short = min(height, width)
    if zoom:  # the radius sweeps from small to large (grow) or back (shrink)
        small, large = rng.uniform(0.10, 0.15) * short, rng.uniform(0.25, 0.32) * short
        radius0, radius1 = (small, large) if zoom > 0 else (large, small)
    else:
        radius0 = radius1 = rng.uniform(0.16, 0.24) * short
    radius = max(radius0, radius1)
    colour_a = rng.uniform(0, 255, 3)
    colour_b = 255 - colour_a * rng.uniform(0.3, 0.9)
    wedges = int(rng.integers(3, 6))
    steps = max(1, n_frames - 1)
    # the room along the direction of motion: the width for horizontal moves, and so on
    extent = width if dx else height
    travel = rng.uniform(0.45, 0.75) * (extent - 2 * radius) if (dx or dy) else 0.0
    span_x, span_y = dx * travel, dy * travel
    cx0 = rng.uniform(radius + max(0, -span_x), width - radius - max(0, span_x))
    cy0 = rng.uniform(radius + max(0, -span_y), height - radius - max(0, span_y))
    angle0 = rng.uniform(0, 2 * math.pi)
    omega = spin * rng.uniform(0.6, 1.2) * (2 * math.pi / wedges) / 4  # a quarter wedge per frame at most
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for t in range(n_frames):
        cx = cx0 + span_x * t / steps
        cy = cy0 + span_y * t / steps
        r = radius0 + (radius1 - radius0) * t / steps
        ox, oy = xx - cx, yy - cy
        dist = np.sqrt(ox * ox + oy * oy)
        theta = np.arctan2(oy, ox) - (angle0 + omega * t)
        stripes = (np.sin(theta * wedges) > 0)[..., None]
        disc = np.where(stripes, colour_a, colour_b)
        inside = np.clip(r + 0.5 - dist, 0, 1)[..., None]  # 1-pixel antialiased edge
        frame = background * (1 - inside) + disc * inside
        if noise > 0:
            frame += rng.normal(0, noise, size=frame.shape)  # sensor noise, differs per frame
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def _video_key(rng: np.random.Generator, layout: str, label: str, number: int) -> str:
    if layout == "ucf101":
        return f"v_{label}_g{number // 4 + 1:02d}_c{number % 4 + 1:02d}"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
    youtube_id = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))
    start = int(rng.integers(0, 300))
    return f"{youtube_id}_{start:06d}_{start + 10:06d}"


def _write_jpegs(folder: Path, frames: np.ndarray, quality: int) -> None:
    import simplejpeg

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        (folder / f"image_{index:05d}.jpg").write_bytes(simplejpeg.encode_jpeg(frame, quality=quality, colorspace="RGB"))
    (folder / "n_frames").write_text(str(len(frames)))  # the seed's bytes: the number, no newline


def video_codec() -> str:
    """'libx264' when PyAV's FFmpeg has it, else 'mpeg4'."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25, gop: int = 8) -> None:
    """Encode uint8 (T, H, W, 3) frames as an MP4 (even sizes; short GOPs so seeking matters)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError("MP4 frames need an even width and height (yuv420p)")
    tmp = path.with_name(f".{path.name}.tmp")
    codec = video_codec()
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast", "bf": "0"}
        else:
            stream.codec_context.bit_rate = 4_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def make_action_dataset(
    root: str,
    n_classes: int = 4,
    videos_per_class: int = 8,
    n_frames: int = 16,
    size: Tuple[int, int] = (64, 64),
    fmt: str = "jpg",
    layout: str = "kinetics",
    seed: int = 0,
    val_share: float = 0.25,
    fps: int = 25,
    quality: int = 90,
    noise: float = 2.0,
) -> SyntheticInfo:
    """Generate a data set under ``root``: ``jpg/`` frame folders and/or ``videos/`` MP4 files, and
    ``annotation.json`` (plus ``classInd.txt``/``trainlist01.txt``/``testlist01.txt`` for ucf101).

    ``size`` is (height, width). The last ``val_share`` of each class's videos are validation.
    ``quality`` is the JPEG quality; ``noise`` the per-frame sensor noise (see ``render_video``).
    """
    if not 1 <= n_classes <= len(MOTIONS):
        raise UserError(f"n_classes must be 1..{len(MOTIONS)} (motions: {', '.join(m[0] for m in MOTIONS)})")
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}")
    if fmt not in FORMATS:
        raise UserError(f"fmt must be one of {', '.join(FORMATS)}")
    if n_frames < 1 or videos_per_class < 1:
        raise UserError("n_frames and videos_per_class must be at least 1")
    root_path = Path(root)
    rng = np.random.default_rng(seed)
    names = [class_name(i, layout) for i in range(n_classes)]
    # at least one validation video per class whenever a class has two or more
    n_val = min(videos_per_class - 1, max(1, int(round(videos_per_class * val_share)))) if videos_per_class > 1 and val_share > 0 else 0
    jpg_root = root_path / "jpg" if fmt in ("jpg", "both") else None
    mp4_root = root_path / "videos" if fmt in ("mp4", "both") else None
    database: Dict[str, dict] = {}
    videos: List[Dict[str, object]] = []
    train_lines, test_lines = [], []
    for number in range(videos_per_class):
        for motion, label in enumerate(names):  # interleaved, so any prefix is balanced
            subset = "validation" if number >= videos_per_class - n_val else "training"
            key = _video_key(rng, layout, label, number)
            while key in database:
                key = _video_key(rng, layout, label, number)
            frames = render_video(motion, n_frames, size, rng, noise)
            rel = f"{label}/{key}"
            if jpg_root is not None:
                _write_jpegs(jpg_root / rel, frames, quality)
            if mp4_root is not None:
                write_mp4(mp4_root / f"{rel}.mp4", frames, fps)
            database[key] = {
                "subset": subset,
                "annotations": {"label": label, "segment": [1, n_frames + 1]},
            }
            videos.append({"key": key, "label": label, "subset": subset, "rel_path": rel, "motion": MOTIONS[motion][0]})
            (test_lines if subset == "validation" else train_lines).append((label, key, motion + 1))
    annotation_path = root_path / "annotation.json"
    atomic_write_json(annotation_path, {"labels": names, "database": database})
    if layout == "ucf101":
        atomic_write_text(root_path / "classInd.txt", "".join(f"{i + 1} {name}\n" for i, name in enumerate(names)))
        atomic_write_text(root_path / "trainlist01.txt", "".join(f"{l}/{k}.avi {c}\n" for l, k, c in train_lines))
        atomic_write_text(root_path / "testlist01.txt", "".join(f"{l}/{k}.avi\n" for l, k, _ in test_lines))
    counts: Dict[str, int] = {}
    for video in videos:
        counts[str(video["subset"])] = counts.get(str(video["subset"]), 0) + 1
    return SyntheticInfo(
        root=str(root_path),
        dataset={"kinetics": "kinetics", "ucf101": "ucf101", "folder": "folder"}[layout],
        annotation_path=str(annotation_path),
        class_names=names,
        jpg_path=str(jpg_root) if jpg_root is not None else None,
        video_path=str(mp4_root) if mp4_root is not None else None,
        n_frames=n_frames,
        size=tuple(size),
        fps=fps,
        subsets=counts,
        videos=videos,
    )


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    import json as _json

    parser = argparse.ArgumentParser(prog="python -m resnet3d.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="folder to write (created)")
    parser.add_argument("--n-classes", type=int, default=4, help=f"1..{len(MOTIONS)}")
    parser.add_argument("--videos-per-class", type=int, default=8)
    parser.add_argument("--n-frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--fmt", choices=FORMATS, default="jpg")
    parser.add_argument("--layout", choices=LAYOUTS, default="kinetics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--noise", type=float, default=2.0, help="per-frame sensor noise (std of 0..255 values)")
    args = parser.parse_args(argv)
    try:
        info = make_action_dataset(
            args.root, n_classes=args.n_classes, videos_per_class=args.videos_per_class, n_frames=args.n_frames,
            size=tuple(args.size), fmt=args.fmt, layout=args.layout, seed=args.seed, quality=args.quality, noise=args.noise,
        )
    except UserError as error:
        print(f"resnet3d.synthetic: error: {error}")
        return 2
    summary = {k: v for k, v in info.__dict__.items() if k != "videos"}
    print(_json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
