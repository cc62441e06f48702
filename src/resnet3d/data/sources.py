"""Where a video's frames come from: JPEG folders, HDF5 files, video files, and optical flow.

Every source answers three questions for the clip reader (``resnet3d.data.clip``):

- ``n_frames()``: how many frames it holds (1-based indices 1..n);
- ``fps()``: frames per second, where the source knows it (ActivityNet segments need it);
- ``load(indices, pick_box, out_hw)``: the crop region of each requested frame, decoded no larger
  than needed (``Regions``: JPEG sources also crop and resize the frames to ``out_hw``, into
  ``out`` when given), plus the reason for each frame it could not read. ``pick_box(width, height)``
  is called once, with the first readable frame's size, so one box serves the whole clip;
  ``out_hw`` is the output (height, width) or a rule giving it from the box.

Sources are cheap to construct (nothing is opened until asked) and hold no open handles between
calls, so a dataset can create one per item inside a DataLoader worker.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from resnet3d.data.config import DataConfig
from resnet3d.data.decode import (
    JPEG_SOI, ClipDecoder, DecodeError, decode_region, image_format, image_size, undecodable_reason,
)
from resnet3d.data.spatial import Box, OutSize, output_size
from resnet3d.video_files import DisplayFrames

PickBox = Callable[[int, int], Box]
Failures = Dict[int, str]

IMAGE_NAME = "image_{:05d}.jpg"
_IMAGE_RE = re.compile(r"^image_(\d+)\.jpg$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EMPTY_FILE = "empty file (0 bytes)"


def _is_empty(path) -> bool:
    """A file of 0 bytes (a download or copy that never wrote): said as such, not as the reader's
    "Invalid data found" or "file signature not found"."""
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def naming_problem(source) -> str:
    """Why the source yields no frame, when it can tell, or "": frames held under names it does
    not read (another tool's names, another zero padding), or a video file that is empty, has no
    video stream or does not open. A message, not an exception: callers add it to their own."""
    explain = getattr(source, "naming_problem", None) or getattr(source, "no_frames_reason", None)
    return explain() if explain is not None else ""


def frame_number(name: str) -> Optional[int]:
    """The index of a frame file named exactly as we read it (``image_00001.jpg``), else None:
    ``image_0001.jpg`` matches the pattern but is not the name ``IMAGE_NAME`` gives frame 1."""
    match = _IMAGE_RE.match(name)
    if match is None:
        return None
    number = int(match.group(1))
    return number if name == IMAGE_NAME.format(number) else None


def read_value_file(path: str) -> Optional[float]:
    """The number in a seed-style ``n_frames`` or ``fps`` file, or None if absent or unreadable
    (a byte-order mark, as Windows editors write, is ignored)."""
    try:
        with open(path, "r", encoding="utf-8-sig") as handle:
            return float(handle.read().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _shown_text(path: str) -> str:
    """A small file's text as a message quotes it ('abc', '-5', nothing)."""
    try:
        with open(path, "r", encoding="utf-8-sig", errors="replace") as handle:
            text = handle.read(40).strip()
    except OSError as error:
        return f"nothing readable ({error.strerror})"
    return repr(text) if text else "nothing"


def read_bytes(path: str) -> bytes:
    """A whole (small) file. Plain ``os`` calls: about a third cheaper per frame than ``open().read()``,
    which builds a buffered file object for a single read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:  # a short read (rare on local files; possible on network ones)
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


class Regions(dict):
    """What ``load`` read: index -> uint8 (h, w, C) crop of each frame decoded on its own, plus
    (JPEG sources) ``resized``, a uint8 (n, H, W, C) tensor holding the frames ``resized_at``
    (index -> row) already cropped and resized to the output size."""

    def __init__(self) -> None:
        super().__init__()
        self.resized: Optional[torch.Tensor] = None
        self.resized_at: Dict[int, int] = {}

    def readable(self) -> List[int]:
        """The indices of every frame that was read, in order."""
        return sorted(set(self) | set(self.resized_at))


class EncodedSource:
    """A source whose frames are stored as JPEG bytes (one JPEG per frame and channel group).

    ``decode_tolerance`` and ``fast_decode`` trade a little fidelity to the originals' full-size
    decode for speed (``resnet3d.data.decode``, docs/data.md); the defaults here are exact."""

    gray = False  # flow frames are grey JPEGs, one per direction

    def __init__(self, path: str, decoder: str = "auto", decode_tolerance: float = 1.0, fast_decode: bool = False) -> None:
        self.path = path
        self.decoder = decoder
        self.decode_tolerance = decode_tolerance
        self.fast_decode = fast_decode
        # (last frame, what says so): the annotation's segment for this video, set by the dataset,
        # so that frames missing past the source's end name the segment instead of "missing"
        self.segment_claim: Optional[Tuple[int, str]] = None

    def claim_segment(self, last: int, origin: str) -> None:
        """Frames up to ``last`` are expected because ``origin`` says so: "the annotation A gives K a segment
        of frames B" (to ``last``)."""
        self.segment_claim = (last, origin)

    def _segment_past_end(self, held: str) -> Optional[str]:
        """Why a frame past the source's last one is missing when the annotation's segment asked
        for it (``held``: where the frames end), or None when no segment claims more."""
        if self.segment_claim is None:
            return None
        last, origin = self.segment_claim
        return (f"missing: {origin} to {last}, but {held}; the segment was counted on other frames: "
                "rebuild the annotation from the frames you have (the 'resnet3d prepare' command that made it, "
                "docs/prepare.md), or extract the frames again")

    # -- to implement -------------------------------------------------------------------------
    def frame_bytes(self, indices: Sequence[int]) -> Dict[int, object]:
        """index -> list of JPEG bytes (one per channel group), or an error message string."""
        raise NotImplementedError

    def n_frames(self) -> int:
        raise NotImplementedError

    def fps(self) -> Optional[float]:
        return None

    def describe(self, index: int) -> str:
        return f"{self.path} frame {index}"

    # -- shared ---------------------------------------------------------------------------------
    def load(
        self, indices: Sequence[int], pick_box: PickBox, out_hw: OutSize, out: Optional[torch.Tensor] = None
    ) -> Tuple[Regions, Failures, Optional[Box]]:
        """``out``: where to put the resized frames, row k for ``indices[k]`` (a clip's batch slot)."""
        encoded = self.frame_bytes(indices)
        regions = Regions()
        failures: Failures = {}
        clip: Optional[ClipDecoder] = None
        for position, index in enumerate(indices):
            parts = encoded.get(index)
            if isinstance(parts, str) or parts is None:
                failures[index] = parts or "missing"
                continue
            data = parts[0]
            try:
                if clip is None:
                    box = pick_box(*image_size(data))
                    n_positions = len(indices) if len(parts) == 1 else 0  # flow pairs: plane by plane
                    clip = ClipDecoder(
                        box, output_size(out_hw, box), n_positions, self.gray, self.decoder,
                        self.decode_tolerance, self.fast_decode, out,
                    )
                if len(parts) == 1:
                    region = clip.add(position, data)
                    if region is not None:  # decoded on its own: another size, or the slow path
                        regions[index] = region
                        self._note_other_format(index, data)
                    continue
                planes = []
                for data in parts:
                    planes.append(decode_region(data, clip.box, clip.out_hw, self.gray, self.decoder,
                                                self.decode_tolerance, self.fast_decode))
                    self._note_other_format(index, data)
            except DecodeError as error:
                failures[index] = undecodable_reason(data, error)
                continue
            if len({p.shape for p in planes}) > 1:
                failures[index] = "flow planes differ in size"
                continue
            regions[index] = np.concatenate(planes, axis=2)
        if clip is not None:
            regions.resized, done = clip.finish()
            regions.resized_at = {indices[position]: position for position in done}
        return regions, failures, None if clip is None else clip.box

    def _note_other_format(self, index: int, data: bytes) -> None:
        """Say once per video that its frames include another image format under a JPEG name
        (a PNG saved as .jpg, which the successor's PIL loader read): decoded, but the slow way."""
        if data[:2] == JPEG_SOI:
            return
        from resnet3d.data.clip import report_once  # clip imports this module

        report_once(
            f"{self.path}\0other-format",
            f"{self.describe(index)}: a {image_format(data) or 'non-JPEG'} image, not a JPEG; read with PIL, "
            f"slower than the JPEG path (other frames of {self.path} may be the same): convert them to JPEG, "
            "or extract the frames again with 'resnet3d prepare frames', for full speed",
        )


class JpegFolderSource(EncodedSource):
    """``<dir>/image_00001.jpg`` ...; the seed's ``n_frames`` and ``fps`` files when present."""

    def frame_bytes(self, indices: Sequence[int]) -> Dict[int, object]:
        out: Dict[int, object] = {}
        past_end: Optional[Tuple[int, str]] = None  # looked up once per call, when a frame is missing
        for index in indices:
            try:
                data = read_bytes(os.path.join(self.path, IMAGE_NAME.format(index)))
            except FileNotFoundError:
                past_end = past_end or self._past_the_end()
                out[index] = past_end[1] if index > past_end[0] else self._gap(past_end[0])
            except PermissionError as error:
                out[index] = f"unreadable ({error.strerror}): check the permissions of the file and its folder"
            except OSError as error:
                out[index] = f"unreadable ({error.strerror})"
            else:
                out[index] = [data] if data else EMPTY_FILE
        return out

    def _highest_frame(self) -> int:
        """The highest index among the frame files present (0 if none, or no folder)."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return 0
        return max((n for n in map(frame_number, names) if n is not None), default=0)

    def n_frames(self) -> int:
        """The ``n_frames`` file (seed) if present, else the highest ``image_NNNNN.jpg`` index."""
        n_file = os.path.join(self.path, "n_frames")
        value = read_value_file(n_file)
        if value is not None and value > 0:
            return int(value)
        highest = self._highest_frame()
        consistent = value == 0 and highest == 0  # (an extraction that found no frame: said where it is skipped)
        if os.path.isfile(n_file) and not consistent:  # there, but no count: said once per run
            from resnet3d.data.clip import report_once

            report_once("n_frames:" + n_file, f"{n_file}: holds {_shown_text(n_file)}, not a frame count: the "
                                              f"{highest} frames present are counted instead; rewrite it with "
                                              f"'resnet3d prepare n-frames {self.path}', or delete it")
        return highest

    def _past_the_end(self) -> Tuple[int, str]:
        """(the last frame present, why a frame after it is missing). An ``n_frames`` file that
        counts more frames than the folder holds (frames cut short, or a file written for other
        frames) sends windows past the last frame; the line then names the file, not the frames."""
        n_file = os.path.join(self.path, "n_frames")
        claimed = read_value_file(n_file)
        highest = self._highest_frame()
        if not highest:  # no frame at all: frames under other names, no folder, an empty one
            return highest, self.naming_problem() or self.absent_reason() or "missing"
        if claimed is None or claimed <= highest:
            held = f"the folder's frames end at {os.path.relpath(self.describe(highest), self.path)}"
            return highest, self._segment_past_end(held) or "missing"
        return highest, (f"missing: the n_frames file ({n_file}) says {int(claimed)} frames, but the folder's frames "
                         f"end at {os.path.relpath(self.describe(highest), self.path)}; if the frames are complete, rewrite the file with "
                         f"'resnet3d prepare n-frames {self.path}' (or the whole frame folder) or delete it, else "
                         "extract the frames again")

    def fps(self) -> Optional[float]:
        return read_value_file(os.path.join(self.path, "fps"))

    def describe(self, index: int) -> str:
        return os.path.join(self.path, IMAGE_NAME.format(index))

    def absent_reason(self) -> str:
        """Why the folder yields no frame file at all: it is gone (it was there when the data set
        was built: moved, deleted, or a network drive dropped), it cannot be listed, or it holds no
        frame. "" when it holds frames."""
        try:
            os.listdir(self.path)
        except FileNotFoundError:
            return ("the folder is gone (it was there when the data set was read: moved, deleted, or a network "
                    "drive dropped?)")
        except OSError as error:
            return f"the folder cannot be read ({error.strerror}): check its permissions"
        if self._highest_frame():
            return ""
        return f"the folder holds no frame files: none named like {os.path.relpath(self.describe(1), self.path)}"

    def _gap(self, highest: int) -> str:
        """Why a frame before the folder's last one is missing: a hole in the numbering."""
        return (f"missing (a gap: the folder's frames run to {os.path.relpath(self.describe(highest), self.path)}); "
                "copy the folder again or extract its frames again to fill it")

    def naming_problem(self) -> str:
        """Why no frame was found when the folder holds images under other names (another tool's
        ``img_00001.jpg`` or ``frame000001.jpg``, or another zero padding, ``image_0001.jpg`` as
        ffmpeg's %04d writes it): what is there, what is expected, and the fix. "" when that is
        not the trouble."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return ""
        images = sorted(name for name in names if name.lower().endswith(_IMAGE_SUFFIXES))
        if not images or any(frame_number(name) is not None for name in images):
            return ""
        expected = "image_%05d.jpg (image_00001.jpg, image_00002.jpg, ...), the names resnet3d and both originals read"
        numbered = [name for name in images if _IMAGE_RE.match(name)]
        if numbered:
            digits = sorted({len(_IMAGE_RE.match(name).group(1)) for name in numbered})
            first = min(numbered, key=lambda name: (int(_IMAGE_RE.match(name).group(1)), name))
            return (f"the folder holds {len(numbered)} frames numbered with {' or '.join(map(str, digits))} digits "
                    f"like '{first}', none named {expected}: the zero padding must be 5 digits; rename them "
                    f"('{first}' -> '{IMAGE_NAME.format(int(_IMAGE_RE.match(first).group(1)))}', ...) or extract the "
                    "frames again with 'resnet3d prepare frames VIDEO_DIR FRAME_DIR'")
        return (f"the folder holds {len(images)} image files named like '{images[0]}', none named "
                f"{expected}: extract the frames again with 'resnet3d prepare frames VIDEO_DIR FRAME_DIR', or rename them")


class FlowJpegFolderSource(JpegFolderSource):
    """Optical flow as grey JPEG pairs: ``<dir>/u/image_%05d.jpg`` + ``<dir>/v/image_%05d.jpg``,
    or ``<dir>/flow_x_%05d.jpg`` + ``<dir>/flow_y_%05d.jpg`` (the layout of common flow extractors)."""

    gray = True

    def _names(self) -> Tuple[str, str]:
        if os.path.isdir(os.path.join(self.path, "u")):
            return os.path.join("u", IMAGE_NAME), os.path.join("v", IMAGE_NAME)
        return "flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"

    def frame_bytes(self, indices: Sequence[int]) -> Dict[int, object]:
        names = self._names()
        out: Dict[int, object] = {}
        past_end: Optional[Tuple[int, str]] = None
        for index in indices:
            parts: List[bytes] = []
            for name in names:
                try:
                    parts.append(read_bytes(os.path.join(self.path, name.format(index))))
                except OSError:
                    break
            if len(parts) < 2:
                past_end = past_end or self._past_the_end()
                out[index] = past_end[1] if index > past_end[0] else self._gap(past_end[0])
            else:
                out[index] = parts if all(parts) else EMPTY_FILE
        return out

    def _highest_frame(self) -> int:
        x_name = self._names()[0]
        folder = os.path.join(self.path, os.path.dirname(x_name))
        pattern = re.compile("^" + re.escape(os.path.basename(x_name)).replace(r"\{:05d\}", r"(\d+)") + "$")
        try:
            names = os.listdir(folder)
        except OSError:
            return 0
        return max((int(m.group(1)) for m in map(pattern.match, names) if m), default=0)

    def describe(self, index: int) -> str:
        return os.path.join(self.path, self._names()[0].format(index))

    def naming_problem(self) -> str:
        return ""  # two layouts of flow names are read; the RGB folder's check does not apply


class Hdf5Source(EncodedSource):
    """The successor's HDF5 video: dataset ``video``, one JPEG-encoded frame per element (frame 1
    is element 0). Flow files hold ``video_u`` and ``video_v`` instead."""

    def __init__(self, path: str, decoder: str = "auto", flow: bool = False, **decode_options) -> None:
        super().__init__(path, decoder, **decode_options)
        self.gray = flow
        self.keys = ("video_u", "video_v") if flow else ("video",)

    def _open(self):
        try:
            import h5py
        except ImportError:
            from resnet3d.errors import missing_package

            raise missing_package("file_type hdf5", "h5py", "hdf5") from None
        return h5py.File(self.path, "r")

    def frame_bytes(self, indices: Sequence[int]) -> Dict[int, object]:
        out: Dict[int, object] = {}
        try:
            handle = self._open()
        except OSError as error:
            reason = EMPTY_FILE if _is_empty(self.path) else f"HDF5 file unreadable ({error})"
            return {index: reason for index in indices}
        with handle:
            absent = [key for key in self.keys if key not in handle]
            if absent:  # as no_frames_reason says it: what the file holds instead
                held = ", ".join(sorted(handle.keys())) or "none"
                reason = f"the HDF5 file has no dataset '{absent[0]}' (its datasets: {held})"
                return {index: reason for index in indices}
            datasets = [handle[key] for key in self.keys]
            length = min(len(d) for d in datasets)
            past_end = self._segment_past_end(f"the file holds {length} frames") or "missing"
            for index in indices:
                if not 1 <= index <= length:
                    out[index] = past_end if index > length else "missing"
                    continue
                try:
                    parts = [np.asarray(d[index - 1], dtype=np.uint8).tobytes() for d in datasets]
                except (OSError, ValueError) as error:
                    out[index] = f"unreadable ({error})"
                else:
                    out[index] = parts if all(parts) else "empty frame (0 bytes in the HDF5 file)"
        return out

    def n_frames(self) -> int:
        try:
            with self._open() as handle:
                return min(len(handle[key]) for key in self.keys)
        except (OSError, KeyError):
            return 0

    def no_frames_reason(self) -> str:
        """Why the file holds no frame: it does not open, lacks the dataset, or the dataset is empty."""
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            return EMPTY_FILE
        try:
            with self._open() as handle:
                absent = [key for key in self.keys if key not in handle]
                if absent:
                    held = ", ".join(sorted(handle.keys())) or "none"
                    return f"the HDF5 file has no dataset '{absent[0]}' (its datasets: {held})"
                empty = [key for key in self.keys if len(handle[key]) == 0]
                return f"the HDF5 file's dataset '{empty[0]}' is empty" if empty else ""
        except OSError as error:
            return f"unreadable HDF5 file ({error})"


_reformatter = None


def _display(stream) -> DisplayFrames:
    """Frames of ``stream`` as uint8 (H, W, 3), upright and at the display aspect ratio, as
    ``prepare frames`` writes them. One reformatter per process: PyAV's
    ``frame.to_ndarray(format='rgb24')`` builds a new swscale context for every frame, which
    measured ~6x slower than reusing one."""
    global _reformatter
    if _reformatter is None:
        from av.video.reformatter import VideoReformatter

        _reformatter = VideoReformatter()
    return DisplayFrames(stream, _reformatter)


class VideoFileSource:
    """A video file decoded in-process with PyAV (FFmpeg), seeking to the keyframe before the
    window and decoding only up to its last frame. Frame ``i`` is the one shown at time
    ``(i - 1) / fps`` from the stream's start (with a variable frame rate, the latest frame
    decoded by then), upright and at the display aspect ratio as ``prepare frames`` writes it."""

    gray = False

    def __init__(self, path: str, decoder: str = "auto") -> None:
        self.path = path
        self._meta: Optional[Tuple[int, float]] = None

    def _open(self):
        import av

        return av.open(self.path)

    def _probe(self) -> Tuple[int, float]:
        if self._meta is None:
            with self._open() as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
                count = int(stream.frames or 0)
                if count <= 0 and stream.duration is not None and stream.time_base is not None:
                    count = int(float(stream.duration * stream.time_base) * rate)
                if count <= 0 and container.duration:
                    count = int(container.duration / 1_000_000 * rate)
                if count <= 0:  # a raw stream (.h264) records neither: count its packets (no decoding)
                    count = sum(1 for packet in container.demux(stream) if packet.size)
                self._meta = (count, rate)
        return self._meta

    def n_frames(self) -> int:
        try:
            return self._probe()[0]
        except Exception:  # an unreadable file has no frames; the dataset counts it
            return 0

    def fps(self) -> Optional[float]:
        try:
            return self._probe()[1]
        except Exception:
            return None

    def describe(self, index: int) -> str:
        return f"{self.path} frame {index}"

    def no_frames_reason(self) -> str:
        """Why the file gives no frame, in the words ``prepare`` and ``classify`` use: "empty file
        (0 bytes)", "no video stream (streams: audio)", "unreadable or truncated: ...", "no frame
        could be decoded (...)". Opened only once a video turned out to have no frames."""
        from pathlib import Path

        from resnet3d.prepare.decode import VideoError, VideoReader

        try:
            with VideoReader(Path(self.path)) as reader:
                for _ in reader.frames():
                    return ("frames decode, but the file announces neither a frame count nor a duration: "
                            "re-encode it into a container that records them (MP4), or extract its frames with "
                            "'resnet3d prepare frames' and train on those")
                reader.check_complete()
        except VideoError as error:
            return str(error)
        except Exception as error:  # anything else PyAV raises: still this file's reason
            return f"unreadable ({type(error).__name__}: {error})"
        return ""

    def load(
        self, indices: Sequence[int], pick_box: PickBox, out_hw: OutSize, out: Optional[torch.Tensor] = None
    ) -> Tuple[Regions, Failures, Optional[Box]]:
        """Crops at the decoded size (``out`` is not used: video frames are resized by the caller)."""
        wanted = sorted(set(indices))
        regions = Regions()
        box: Optional[Box] = None
        try:
            container = self._open()
        except Exception as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            reason = EMPTY_FILE if _is_empty(self.path) else f"cannot open the video ({reason})"
            return {}, {i: reason for i in wanted}, None
        with container:
            try:
                stream = container.streams.video[0]
                # one thread: loader workers already decode clips in parallel, and FFmpeg's
                # frame threads cost a start-up per opened file for no gain on short windows
                stream.thread_count = 1
                rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
                time_base = stream.time_base
                start = stream.start_time or 0
                first, last = wanted[0], wanted[-1]
                seeked = False
                if first > 1 and time_base:
                    target = start + int((first - 1) / rate / time_base)
                    try:
                        container.seek(target, stream=stream, backward=True, any_frame=False)
                    except OSError:  # a raw stream (.h264) cannot seek ("Operation not permitted")
                        return self._load_from_start(wanted, pick_box, out_hw)
                    seeked = True
                display = _display(stream)
                counter = 0
                want = set(wanted)
                shown: Optional[Tuple[int, object]] = None  # the last decoded (index, frame)

                def keep(index: int, frame) -> None:
                    nonlocal box
                    image = display.rgb(frame)
                    if box is None:
                        box = pick_box(image.shape[1], image.shape[0])
                    b = box.for_size(image.shape[1], image.shape[0])
                    regions[index] = image[b.y0 : b.y1, b.x0 : b.x1]

                for frame in container.decode(stream):
                    counter += 1
                    if frame.pts is not None and time_base:
                        index = int(round((frame.pts - start) * time_base * rate)) + 1
                    elif not seeked:
                        index = counter
                    else:  # no timestamps after a seek: start over without seeking
                        return self._load_from_start(wanted, pick_box, out_hw)
                    if shown is not None:
                        # a variable frame rate leaves instants with no frame of their own: the
                        # screen still shows the previous frame then
                        for skipped in range(shown[0] + 1, min(index, last + 1)):
                            if skipped in want and skipped not in regions:
                                keep(skipped, shown[1])
                    if index > last:
                        break
                    if index in want and index not in regions:
                        keep(index, frame)
                    shown = (index, frame)
            except Exception as error:  # a damaged stream: keep what decoded, count the rest
                reason = f"decoding failed ({type(error).__name__}: {error})"
                return regions, {i: reason for i in wanted if i not in regions}, box
        return regions, {i: "past the end of the video" for i in wanted if i not in regions}, box

    def _load_from_start(self, wanted, pick_box, out_hw):
        regions = Regions()
        box = None
        with self._open() as container:
            display = _display(container.streams.video[0])
            for counter, frame in enumerate(container.decode(video=0), start=1):
                if counter > wanted[-1]:
                    break
                if counter in wanted:
                    image = display.rgb(frame)
                    box = box or pick_box(image.shape[1], image.shape[0])
                    b = box.for_size(image.shape[1], image.shape[0])
                    regions[counter] = image[b.y0 : b.y1, b.x0 : b.x1]
        return regions, {i: "past the end of the video" for i in wanted if i not in regions}, box


def make_source(
    path: str,
    file_type: str,
    input_type: str = "rgb",
    decoder: str = "auto",
    decode_tolerance: float = 1.0,
    fast_decode: bool = False,
):
    """The source for one video of ``file_type`` ('jpg', 'hdf5', 'video'). The decode options
    apply to JPEG frames (``EncodedSource``)."""
    flow = input_type == "flow"
    options = {"decode_tolerance": decode_tolerance, "fast_decode": fast_decode}
    if file_type == "jpg":
        return FlowJpegFolderSource(path, decoder, **options) if flow else JpegFolderSource(path, decoder, **options)
    if file_type == "hdf5":
        return Hdf5Source(path, decoder, flow=flow, **options)
    if file_type == "video":
        if flow:
            from resnet3d.errors import UserError

            raise UserError("--input_type flow needs flow frames (--file_type jpg or hdf5), not video files")
        return VideoFileSource(path, decoder)
    raise ValueError(f"unknown file_type {file_type!r}")


def source_for(path: str, cfg: DataConfig):
    """The source of one video read as ``cfg`` (a ``DataConfig``) says: file and input type,
    decoder and decode mode. Training, validation and per-video recognition all read through
    here, so each frame is decoded alike whichever of them reads it."""
    return make_source(path, cfg.file_type, cfg.input_type, cfg.decoder, cfg.decode_tolerance, cfg.fast_decode)
