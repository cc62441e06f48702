"""Which windows and views a video is recognised from, and the worker-side dataset that reads them.

Per-video recognition looks at every video through many *views*: a temporal window of
``sample_duration`` frames times a spatial crop. This module decides the views (pure functions)
and reads them (``WindowDataset``, run inside DataLoader workers):

- temporal schemes: ``seed`` (windows from frames 1, 1+d, ... while the start is <= n - d, the
  seed's ``--test_video``), ``sliding`` (every ``stride`` frames while the start is inside the
  video, the last ones loop-padded; the successor's ``--inference``), ``even`` (``n_clips``
  windows spread evenly from the first to the last frame: multi-view testing). Every video gets
  at least one window; a video shorter than one window loops its own frames.
- spatial crops: ``center`` (the centred square of side min(w, h), resized to sample_size: the
  seed's crop and the successor's Resize + CenterCrop), ``nocrop`` (the whole frame with its short
  side resized to sample_size, for fully convolutional models), ``three`` (three squares of side
  min(w, h) at the start, centre and end of the long side: left/centre/right for landscape
  frames, top/centre/bottom for portrait ones).

A worker yields *chunks*: at most ``chunk_rows`` views of one video as one uint8 tensor, so a
two-hour video never sits in memory at once, and the main process fills model batches from
chunks of several videos. A video that cannot be read yields one error record instead. With
``DataConfig.decode_device`` "cuda" a chunk holds the JPEG bytes of its frames instead, and
``assemble_views`` decodes, crops and resizes them on the device into the same views.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from resnet3d.data import temporal
from resnet3d.data.clip import UnreadableVideo, read_clip
from resnet3d.data.config import DataConfig
from resnet3d.data.dataset import Video, VideoDataset
from resnet3d.data.decode_share import DecodeShare, as_jpeg_bytes, share_for
from resnet3d.data.sources import naming_problem, source_for
from resnet3d.data.spatial import Box, center_box

log = logging.getLogger("resnet3d.predict")

SCHEMES = ("seed", "sliding", "even")
CROPS = ("center", "nocrop", "three")


@dataclass(frozen=True)
class ViewPlan:
    """How every video is looked at: temporal scheme and spatial crop."""

    sample_duration: int
    sample_size: int
    scheme: str = "sliding"
    stride: int = 16
    n_clips: int = 1  # windows per video for the "even" scheme
    crop: str = "center"
    chunk_rows: int = 64  # views per chunk a worker hands over

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}")
        if min(self.sample_duration, self.sample_size, self.stride, self.n_clips, self.chunk_rows) < 1:
            raise ValueError("sample_duration, sample_size, stride, n_clips and chunk_rows must be >= 1")

    @property
    def n_crops(self) -> int:
        return 3 if self.crop == "three" else 1


def window_starts(n_positions: int, plan: ViewPlan) -> List[int]:
    """0-based start positions of a video's windows (never empty for a video with frames)."""
    size = plan.sample_duration
    if plan.scheme == "seed":
        return temporal.sliding_starts(n_positions, size, size, full_only=True)
    if plan.scheme == "even":
        return temporal.even_starts(n_positions, size, plan.n_clips)
    return temporal.sliding_starts(n_positions, size, plan.stride)


def short_side_size(width: int, height: int, side: int) -> Tuple[int, int]:
    """(height, width) of a frame scaled so that its short side is ``side`` (the successor's
    ``Resize(sample_size)``)."""
    if width >= height:
        return side, max(side, int(round(width * side / height)))
    return max(side, int(round(height * side / width))), side


def three_crop_offsets(length: int, side: int) -> List[int]:
    """Start offsets of three ``side``-long crops along an axis of ``length``: start, centre, end."""
    rest = max(0, length - side)
    return [0, rest // 2, rest]


def full_box(width: int, height: int) -> Box:
    return Box(0, 0, width, height, width, height)


def frame_size(source, frames: Sequence[int]) -> Optional[Tuple[int, int]]:
    """(width, height) of the video's frames, from the first readable one of a few probes.

    The probe decodes at the smallest size the decoder offers (1/8 scale for JPEGs)."""
    seen: List[Tuple[int, int]] = []

    def record(width: int, height: int) -> Box:
        seen.append((width, height))
        return full_box(width, height)

    picks = list(frames[:1]) + list(frames[len(frames) // 2 : len(frames) // 2 + 1]) + list(frames[-1:])
    for index in dict.fromkeys(picks):
        source.load([index], record, (1, 1))
        if seen:
            return seen[0]
    return None


@dataclass(frozen=True)
class Unit:
    """One result entry: a video, or all annotated segments of one ActivityNet video."""

    video_id: str  # the key of the result file
    videos: Tuple[int, ...]  # indices into the dataset's videos (one per segment)


def _layout(frames: Sequence[int], starts: Sequence[int],
            plan: ViewPlan) -> Tuple[List[int], torch.Tensor, List[Tuple[int, int]]]:
    """The frames the windows at ``starts`` need (each once, in order), where each frame of each
    window sits among them (int64 (len(starts) * T,)), and each window's segment (first frame,
    last real frame + 1)."""
    d = plan.sample_duration
    windows = [temporal.window(frames, start, d) for start in starts]
    segments = [(frames[start], frames[min(start + d, len(frames)) - 1] + 1) for start in starts]
    wanted = sorted({index for window in windows for index in window})
    position = {index: k for k, index in enumerate(wanted)}
    order = torch.tensor([position[i] for window in windows for i in window], dtype=torch.int64)
    return wanted, order, segments


def _out_size(source, plan: ViewPlan, size: Optional[Tuple[int, int]]):
    """The crop rule and output size of every frame: the centred square at sample_size, or (nocrop,
    three) the whole frame with its short side at sample_size."""
    s = plan.sample_size
    if plan.crop == "center":
        return center_box, (s, s)
    if size is None:
        raise UnreadableVideo(f"{source.path}: no readable frame")
    return full_box, short_side_size(size[0], size[1], s)


def views_from_frames(decoded: torch.Tensor, order: torch.Tensor, plan: ViewPlan) -> torch.Tensor:
    """uint8 (U, H', W', C) frames, on any device, -> the views: uint8 (W * n_crops, T, H, W, C),
    the crops of a window next to each other (``order``: ``_layout``'s)."""
    s = plan.sample_size
    if decoded.device.type == "cuda":  # queued, not waited for: a batch may be in flight on the GPU
        order = order.pin_memory().to(decoded.device, non_blocking=True)
    # gathered as rows of a 2-D view: torch's CPU index_select copies whole rows there, several
    # times faster than along dim 0 of the 4-D tensor
    clips = decoded.reshape(decoded.shape[0], -1).index_select(0, order.to(decoded.device))
    clips = clips.view(-1, plan.sample_duration, *decoded.shape[1:])  # (W, T, H', W', C)
    if plan.crop == "three":
        height, width = clips.shape[2], clips.shape[3]
        if width >= height:
            crops = [clips[:, :, :, x : x + s] for x in three_crop_offsets(width, s)]
        else:
            crops = [clips[:, :, y : y + s] for y in three_crop_offsets(height, s)]
        clips = torch.stack(crops, dim=1).flatten(0, 1)  # (W * 3, T, s, s, C)
    return clips.contiguous()


def read_views(
    source,
    frames: Sequence[int],
    starts: Sequence[int],
    plan: ViewPlan,
    size: Optional[Tuple[int, int]],
    video_range: Tuple[int, int],
) -> Tuple[torch.Tensor, List[Tuple[int, int]], int]:
    """The views of the windows at ``starts``: uint8 (len(starts) * n_crops, T, H, W, C) with the
    crops of a window next to each other, each window's segment (first frame, last real frame + 1),
    and the number of stand-in frames.

    Every frame the windows need is decoded once, however much the windows overlap."""
    wanted, order, segments = _layout(frames, starts, plan)
    pick_box, out_hw = _out_size(source, plan, size)
    decoded, n_bad = read_clip(source, wanted, pick_box, out_hw, video_range)  # (U, H', W', C)
    return views_from_frames(decoded, order, plan), segments, n_bad


def read_encoded_views(
    source,
    frames: Sequence[int],
    starts: Sequence[int],
    plan: ViewPlan,
    size: Optional[Tuple[int, int]],
    video_range: Tuple[int, int],
) -> Tuple[dict, torch.Tensor, List[Tuple[int, int]], int]:
    """``read_views`` without the decoding (``DataConfig.decode_device`` "cuda"): the JPEG bytes
    of every frame the windows need, collated as a one-clip batch of ``gpu_decode`` (in shared
    memory inside a worker), the frames' ``order`` in the views, the segments, and the stand-ins
    for missing frames and unreadable headers. Frames, stand-ins and boxes are those ``read_views``
    takes; ``assemble_views`` turns it into the same views on the device."""
    from resnet3d.data.clip import read_encoded_clip
    from resnet3d.data.gpu_decode import collate_encoded

    wanted, order, segments = _layout(frames, starts, plan)
    pick_box, out_hw = _out_size(source, plan, size)
    clip, n_bad = read_encoded_clip(source, wanted, pick_box, out_hw, video_range)
    return collate_encoded([clip]), order, segments, n_bad


def assemble_views(chunk: dict, plan: ViewPlan, device: torch.device) -> Tuple[torch.Tensor, int]:
    """An encoded chunk (``WindowDataset`` with decode_device "cuda") -> its views, uint8 (R, T,
    H, W, C) on ``device``, exactly as ``read_views`` lays them out, and how many of its frames
    did not decode there (each replaced by the nearest decoded frame of the chunk). One batched
    decode call per chunk (nvJPEG on a GPU). Raises ``UnreadableVideo`` when none decodes."""
    from resnet3d.data.gpu_decode import assemble_clips
    from resnet3d.errors import UserError

    counters = {key: torch.zeros(1, dtype=torch.int64) for key in ("bad_frames", "bad_video")}
    batch = {**chunk["jpeg"], **counters}  # a one-clip batch of gpu_decode
    try:
        frames = assemble_clips(batch, device)[0]  # (U, H', W', 3) in the order of _layout's frames
    except UserError:  # one clip: none of its frames decodes
        shown = batch["jpeg_frames"].tolist()
        raise UnreadableVideo(f"{chunk['path']}: no readable frame (none of the JPEGs of frames {min(shown)}-"
                              f"{max(shown)} decodes on {torch.device(device).type})") from None
    return views_from_frames(frames, chunk["order"], plan), int(batch["bad_frames"][0])


def header_size(source, frames: Sequence[int]) -> Optional[Tuple[int, int]]:
    """``frame_size`` from JPEG headers alone (the encoded mode's workers decode nothing): (width,
    height) of the first of the same probes whose header reads."""
    from resnet3d.data.clip import jpeg_header
    from resnet3d.data.decode import DecodeError

    picks = list(dict.fromkeys(list(frames[:1]) + list(frames[len(frames) // 2 : len(frames) // 2 + 1])
                               + list(frames[-1:])))
    encoded = source.frame_bytes(picks)
    for index in picks:
        parts = encoded.get(index)
        if isinstance(parts, str) or not parts:
            continue
        try:
            width, height, _ = jpeg_header(parts[0])
        except DecodeError:
            continue
        return width, height
    return None


class WindowDataset(torch.utils.data.IterableDataset):
    """Chunks of views of the ``units``, each worker taking every n-th unit.

    A chunk is ``{"unit": i, "rows": uint8 (R, T, H, W, C), "window": int64 (R,), "segment":
    int64 (R, 2), "expected": views of the whole unit, "bad_frames": int, "decode_s": CPU seconds
    the chunk cost its worker}``; a unit that cannot be read yields ``{"unit": i, "error": message}``
    (possibly after some of its chunks). ``decode_s`` is how the main process learns what decoding
    costs against the model (``scoring.CpuThreadSplit``).

    With ``cfg.decode_device`` "cuda" (the *encoded* mode) a chunk carries, in place of "rows",
    its frames' JPEG bytes (``"jpeg"``, ``"order"``, ``"path"``: ``read_encoded_views``), and the
    main process turns it into the same rows on the device (``assemble_views``); "bad_frames"
    then counts only the missing frames and unreadable headers the worker found. With "mixed",
    ``decode_share`` says which chunks are handed over so (``data.decode_share``).
    """

    def __init__(self, videos: List[Video], units: List[Unit], cfg: DataConfig, plan: ViewPlan) -> None:
        super().__init__()
        self.videos = videos
        self.units = units
        self.cfg = cfg
        self.plan = plan
        self.encoded = cfg.decode_device == "cuda"  # every chunk as JPEG bytes
        self.decode_share: Optional[DecodeShare] = share_for(cfg.decode_device)
        # frame_range() resolves n_frames files, segments in seconds and video probes.
        self._ranges = VideoDataset(videos, [], cfg, train=False, sampling="center")

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for number in range(worker, len(self.units), n_workers):
            yield from self.unit_chunks(number)

    def _plans(self, unit: Unit) -> List[Tuple[int, List[int], List[int]]]:
        """(video index, frames, window starts) of each segment of the unit."""
        plans = []
        for video_index in unit.videos:
            begin, end = self._ranges.frame_range(video_index)
            frames = temporal.frame_range(begin, end, self.cfg.sample_t_stride)
            if not frames:
                video = self.videos[video_index]
                why = naming_problem(source_for(video.path, self.cfg)) or "the file or folder is empty, damaged, or not a video"
                raise UnreadableVideo(f"{video.path}: no frames ({why})")
            plans.append((video_index, frames, window_starts(len(frames), self.plan)))
        return plans

    def unit_chunks(self, number: int) -> Iterator[dict]:
        unit = self.units[number]
        try:
            plans = self._plans(unit)
        except UnreadableVideo as error:
            yield {"unit": number, "error": str(error)}
            return
        n_crops = self.plan.n_crops
        expected = sum(len(starts) for _, _, starts in plans) * n_crops
        per_chunk = max(1, self.plan.chunk_rows // n_crops)
        window_number = 0
        for video_index, frames, starts in plans:
            video = self.videos[video_index]
            source = source_for(video.path, self.cfg)  # decoded as validation decodes it
            video_range = self._ranges.frame_range(video_index)
            try:
                size = None
                if self.plan.crop != "center":
                    from_headers = self.encoded or self.decode_share is not None
                    size = header_size(source, frames) if from_headers else frame_size(source, frames)
                for first in range(0, len(starts), per_chunk):
                    chunk_starts = starts[first : first + per_chunk]
                    began = time.process_time()  # this worker's CPU seconds (it runs one thread)
                    if as_jpeg_bytes(self.decode_share, self.cfg.decode_device):
                        jpeg, order, segments, n_bad = read_encoded_views(source, frames, chunk_starts, self.plan,
                                                                          size, video_range)
                        views = {"jpeg": jpeg, "order": order, "path": str(video.path)}
                    else:
                        rows, segments, n_bad = read_views(source, frames, chunk_starts, self.plan, size, video_range)
                        views = {"rows": rows}
                    windows = torch.arange(window_number, window_number + len(chunk_starts))
                    window_number += len(chunk_starts)
                    yield {
                        "unit": number,
                        **views,
                        "window": windows.repeat_interleave(n_crops),
                        "segment": torch.tensor(segments, dtype=torch.int64).repeat_interleave(n_crops, dim=0),
                        "expected": expected,
                        "bad_frames": n_bad,
                        "decode_s": time.process_time() - began,
                    }
            except UnreadableVideo as error:
                yield {"unit": number, "error": str(error)}
                return
            except Exception as error:  # a damaged file must not end a run of 20,000 videos
                yield {"unit": number, "error": f"{video.path}: {type(error).__name__}: {error}"}
                return


def group_units(videos: Sequence[Video], names: Dict[str, str]) -> List[Unit]:
    """One unit per result id, in annotation order; segments of one video share their unit."""
    order: Dict[str, List[int]] = {}
    for index, video in enumerate(videos):
        order.setdefault(names[video.key], []).append(index)
    return [Unit(video_id=video_id, videos=tuple(indices)) for video_id, indices in order.items()]
