"""``resnet3d prepare stats``: per-channel mean and std of a data set's frames, for users' own data
(the originals ship only the Kinetics and ActivityNet values).

Frames are sampled at random (a random video, then a random frame of it, ``--seed`` fixed), so
the figures come from the whole data set in seconds. Values are in [0, 1] (value_scale 1), the
units of the successor's ``--mean_dataset`` tables and of ``resnet3d.normalization.InputNorm``.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from resnet3d.errors import UserError
from resnet3d.fileio import require_folder
from resnet3d.prepare.frame_folders import IMAGE_RE, image_name, image_indices


@dataclass(frozen=True)
class Source:
    path: Path
    n_frames: int
    hdf5: bool


@dataclass(frozen=True)
class StatsResult:
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    frames: int
    videos: int
    pixels: int
    unreadable: int = 0  # frames drawn that did not decode (skipped, counted)

    def to_dict(self) -> dict:
        return {
            "mean": [round(v, 4) for v in self.mean],
            "std": [round(v, 4) for v in self.std],
            "value_scale": 1,
            "frames": self.frames,
            "videos": self.videos,
            "pixels": self.pixels,
            "unreadable_frames": self.unreadable,
        }

    def flags(self) -> str:
        mean = " ".join(f"{v:.4f}" for v in self.mean)
        std = " ".join(f"{v:.4f}" for v in self.std)
        return f"flags: --mean {mean} --std {std}"


def find_sources(frame_dir: Path) -> List[Source]:
    sources: List[Source] = []
    for folder, subdirs, files in os.walk(frame_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        n_images = sum(1 for name in files if IMAGE_RE.match(name))
        if n_images:
            sources.append(Source(Path(folder), n_images, False))
        for name in sorted(files):
            if name.endswith(".hdf5") and not name.startswith("."):
                sources.append(Source(Path(folder) / name, -1, True))
    return sources


def sources_from_annotation(frame_dir: Path, annotation: Path, subset: str) -> List[Source]:
    """The ``subset`` videos of an annotation JSON that have frames under ``frame_dir``."""
    try:
        with open(annotation, "r", encoding="utf-8-sig") as handle:
            database = json.load(handle)["database"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{annotation}: cannot read the annotation's 'database' ({error})") from None
    sources = []
    for key, entry in database.items():
        if entry.get("subset") != subset:
            continue
        annotations = entry.get("annotations")
        label = annotations.get("label") if isinstance(annotations, dict) else None
        candidates = [frame_dir / label / key] if label else []
        candidates += [frame_dir / "test" / key, frame_dir / f"v_{key}", frame_dir / key]
        for candidate in candidates:
            if candidate.is_dir():
                n_images = len(image_indices(candidate))
                if n_images:
                    sources.append(Source(candidate, n_images, False))
                break
            hdf5 = candidate.with_name(candidate.name + ".hdf5")
            if hdf5.is_file():
                sources.append(Source(hdf5, -1, True))
                break
    return sources


def _frames_to_read(sources: List[Source], samples: int, rng: random.Random):
    """(source, frame) pairs: every frame once when the frame folders hold no more than ``samples``
    frames in all (exact statistics for a small data set, instead of drawing the same frames again
    and again), else ``samples`` frames drawn at random (a random video, then one of its frames)."""
    if all(not source.hdf5 for source in sources) and sum(source.n_frames for source in sources) <= samples:
        for source in sources:
            for index in image_indices(source.path):
                path = source.path / image_name(index)
                yield source, (str(path), path.read_bytes())
        return
    for _ in range(samples):
        source = rng.choice(sources)
        yield source, _read_frame(source, rng)


def _read_frame(source: Source, rng: random.Random) -> Optional[Tuple[str, bytes]]:
    """A random frame of ``source``: (where it is, for messages; its JPEG bytes)."""
    if source.hdf5:
        from resnet3d.prepare.hdf5 import require_h5py

        h5py = require_h5py()
        with h5py.File(source.path, "r") as handle:
            video = handle["video"]
            if not len(video):
                return None
            index = rng.randrange(len(video))
            return f"{source.path} (frame {index + 1})", video[index].tobytes()
    indices = image_indices(source.path)
    if not indices:
        return None
    path = source.path / image_name(rng.choice(indices))
    return str(path), path.read_bytes()


def dataset_stats(
    frame_dir: Path,
    samples: int = 1000,
    seed: int = 0,
    annotation: Optional[Path] = None,
    subset: str = "training",
) -> StatsResult:
    import logging

    from resnet3d.data.decode import DecodeError, decode_full, undecodable_reason

    require_folder(frame_dir, "frame directory")
    if samples <= 0:
        raise UserError(f"--samples {samples}: sample at least one frame")
    sources = sources_from_annotation(frame_dir, annotation, subset) if annotation else find_sources(frame_dir)
    if not sources:
        where = f" for the {subset} videos of {annotation}" if annotation else ""
        raise UserError(f"no frame folders or .hdf5 files in {frame_dir}{where}; extract frames first (resnet3d prepare frames)")
    rng = random.Random(seed)
    total = np.zeros(3, dtype=np.float64)
    squares = np.zeros(3, dtype=np.float64)
    pixels = 0
    frames = 0
    used = set()
    unreadable: List[str] = []
    for source, frame in _frames_to_read(sources, samples, rng):
        if frame is None:
            continue
        where, data = frame
        try:  # the training loader's decoder: grey, CMYK and other formats under a .jpg name too
            rgb = decode_full(data)
        except DecodeError as error:  # one bad frame does not spoil the statistics: skipped, counted
            unreadable.append(f"{where}: {undecodable_reason(data, error)}")
            continue
        values = rgb.reshape(-1, 3).astype(np.float64) / 255.0
        total += values.sum(axis=0)
        squares += np.square(values).sum(axis=0)
        pixels += values.shape[0]
        frames += 1
        used.add(source.path)
    if unreadable:
        logging.getLogger("resnet3d.prepare").warning(
            "%d of the frames drawn do not decode and were left out (first: %s); extract those videos' frames "
            "again", len(unreadable), unreadable[0])
    if not frames:
        raise UserError(f"no readable frame in {frame_dir}" + (f" (first: {unreadable[0]})" if unreadable else ""))
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - np.square(mean), 0.0))
    return StatsResult(
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
        frames=frames,
        videos=len(used),
        pixels=pixels,
        unreadable=len(unreadable),
    )

