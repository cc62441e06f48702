"""The dataset: annotation entries resolved to files on disk, and one clip per item.

An item is a dict (docs/architecture.md, "Batches")::

    {"clip": uint8 (T, H, W, C), "target": int (-1 when unlabelled), "video": int (index into
     dataset.videos), "segment": int64 (2,) first frame and last + 1, "bad_frames": int (stand-in
     frames in this clip), "bad_video": int (1 when the clip stands in for an unreadable video)}

(with ``DataConfig.decode_device`` "cuda", ``"jpeg"``: the clip's ``EncodedClip``, frames still
JPEG bytes, in place of ``"clip"``; ``gpu_decode.assemble_clips`` decodes the batch on the device;
with "mixed", whole batches of either kind, ``data.decode_share``)

and, in a training dataset, the clip's device-side augmentation, which ``DeviceTransform``
applies to the batch: ``"flip": bool`` and ``"jitter": float32 (4,)`` (brightness, contrast,
saturation factors and hue shift).

Items are deterministic: the random draws of item ``i`` in epoch ``e`` (window, crop, flip,
jitter) come from ``(seed, e, i)``, whatever worker, process or batch loads it, so a resumed run
sees the same clips and a distributed run the same as one process. The loader's sampler passes
``(index, epoch)`` pairs; a bare ``index`` means epoch 0.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from resnet3d.data import spatial, temporal
from resnet3d.data.annotations import Annotation, VideoEntry, load_annotation, seconds_to_frames
from resnet3d.data.clip import UnreadableVideo, read_clip, read_encoded_clip, report_once
from resnet3d.data.config import DataConfig, canonical_subset
from resnet3d.data.decode_share import DecodeShare, as_jpeg_bytes, share_for
from resnet3d.data.device import draw_augmentation
from resnet3d.data.loader import new_batch_tensor
from resnet3d.data.sources import naming_problem, source_for
from resnet3d.errors import UserError, missing_package
from resnet3d.prepare.frame_folders import seed_fps
from resnet3d.video_files import is_video_file

log = logging.getLogger("resnet3d.data")

SAMPLINGS = ("random", "center", "even", "sliding")
EVAL_CROPS = ("center", "nocrop")
MAX_SUBSTITUTES = 20  # unreadable videos in a row before we call it a configuration error


@dataclass(frozen=True)
class Video:
    """One sample of the data set as found on disk (an ActivityNet segment counts as one)."""

    key: str  # the annotation's video id
    label: Optional[str]
    target: int  # class index, -1 when unlabelled
    path: str  # JPEG folder, HDF5 file or video file
    frames: Optional[Tuple[int, int]]  # 1-based end-exclusive range, None: resolved on first use
    seconds: Optional[Tuple[float, float]] = None
    fps: Optional[float] = None
    duration: Optional[float] = None  # ActivityNet: seconds, per the JSON (for a missing fps)


def segment_fps(video: Video, n_frames: int, source_fps: Optional[float]) -> Tuple[Optional[float], bool]:
    """The frame rate that turns ``video``'s segment seconds into frames, and whether it was
    computed from the JSON's ``duration``: the JSON's ``fps`` (successor), else the folder's
    ``fps`` file or the video file's rate (seed), else frames / duration, 2 decimals, as
    ``resnet3d prepare activitynet-json`` computes it. (None, False) when nothing gives one."""
    if video.fps:
        return video.fps, False
    if source_fps:
        return source_fps, False
    if n_frames > 0 and video.duration:
        return seed_fps(n_frames, video.duration), True
    return None, False


def segment_range(seconds: Tuple[float, float], fps: float, n_frames: int) -> Tuple[int, int]:
    """A segment's frames, ``[begin, end)``, the end clipped to the frames present (when known).
    ``end <= begin`` means the segment starts after the video's last frame."""
    begin, end = seconds_to_frames(seconds[0], seconds[1], fps)
    return (begin, min(end, n_frames + 1)) if n_frames > 0 else (begin, end)


def _probe(path: str, cfg: DataConfig) -> Tuple[int, Optional[float]]:
    source = source_for(path, cfg)
    return source.n_frames(), source.fps()


def place_segments(videos: List[Video], cfg: DataConfig, annotation: str, subset: str) -> List[Video]:
    """ActivityNet segments (seconds) -> frame ranges, once, when the data set is built.

    Each video's frame count and rate are read here, in the main process, so that a segment that
    cannot be placed is dropped with one counted line naming the key, instead of standing in for
    an unreadable video in every worker of every epoch: one starting after the video's last frame
    (a wrong fps, or frames cut short), or one of a video with no frame rate anywhere (JSON,
    ``fps`` file) and no duration to compute it from. Rates computed from the JSON's duration are
    announced once.
    """
    paths = sorted({v.path for v in videos if v.seconds is not None and v.frames is None})
    if not paths:
        return videos
    with ThreadPoolExecutor(max_workers=min(8, len(paths))) as pool:  # file system and PyAV waits
        probed = dict(zip(paths, pool.map(lambda path: _probe(path, cfg), paths)))
    kept: List[Video] = []
    from_duration: List[str] = []  # keys
    no_fps: List[str] = []
    past_end: List[str] = []
    for video in videos:
        if video.path not in probed or video.frames is not None:
            kept.append(video)
            continue
        n_frames, source_fps = probed[video.path]
        fps, computed = segment_fps(video, n_frames, source_fps)
        if fps is None:
            no_fps.append(video.key)
            continue
        if computed and video.key not in from_duration:
            from_duration.append(video.key)
        begin, end = segment_range(video.seconds, fps, n_frames)
        if n_frames > 0 and end <= begin:
            past_end.append(f"'{video.key}' ({video.seconds[0]:g}-{video.seconds[1]:g} s at {fps:g} fps starts at "
                            f"frame {begin}; the video has {n_frames})")
            continue
        kept.append(replace(video, frames=(begin, end), fps=fps))
    fix = (f"record each video's frame rate with 'resnet3d prepare activitynet-json VIDEO_DIR {annotation} "
           f"--fps-files --frame-dir {cfg.video_path}'")
    if from_duration:
        log.warning("%s: %d %s videos have no fps (not in the JSON, no fps file): using their frames / the JSON's "
                    "duration (first: '%s'); to set it, %s", annotation, len(from_duration), subset,
                    from_duration[0], fix)
    if no_fps:
        log.warning("%s: %d %s segments of %d videos have no fps (not in the JSON, no fps file) and no duration "
                    "and frames to compute it (first: '%s'); skipped: %s", annotation, len(no_fps), subset,
                    len(set(no_fps)), no_fps[0], fix)
    if past_end:
        log.warning("%s: %d %s segments start after their video's last frame (first: %s); skipped: check the "
                    "video's fps and that its frames are complete", annotation, len(past_end), subset, past_end[0])
    return kept


def _resolve_paths(entries: Sequence[VideoEntry], cfg: DataConfig) -> Tuple[List[Tuple[VideoEntry, str]], List[str]]:
    """Pair each entry with its file or folder; list the missing ones. One directory listing per
    parent folder, not one stat per video."""
    listings: Dict[str, Optional[Dict[str, str]]] = {}

    def listing(folder: str) -> Optional[Dict[str, str]]:
        if folder not in listings:
            try:
                names = os.listdir(folder)
            except OSError:
                listings[folder] = None
            else:
                table: Dict[str, str] = {}
                for name in names:
                    table.setdefault(name, name)
                    if cfg.file_type == "video" and is_video_file(name):
                        table.setdefault("\0" + os.path.splitext(name)[0], name)
                listings[folder] = table
        return listings[folder]

    found, missing = [], []
    for entry in entries:
        target = os.path.join(cfg.video_path, entry.rel_path)
        folder, base = os.path.split(target)
        names = listing(folder)
        if cfg.file_type == "jpg":
            name = names.get(base) if names else None
        elif cfg.file_type == "hdf5":
            name = names.get(base + ".hdf5") if names else None
        else:
            # the key names the file without its extension, or (rarely) with it
            name = (names.get("\0" + base) or (base if base in names and is_video_file(base) else None)) if names else None
        if name is None:
            missing.append(entry.rel_path)
        else:
            found.append((entry, os.path.join(folder, name)))
    return found, missing


def resolve_videos(cfg: DataConfig, subset: str) -> Tuple[List[Video], List[str], Annotation]:
    """The subset's videos that exist under ``cfg.video_path``, with a one-line summary of those
    that do not."""
    subset = canonical_subset(subset)
    if cfg.file_type == "hdf5" and importlib.util.find_spec("h5py") is None:
        # (set by a config file or a checkpoint, past the CLI's check of the flags): not a
        # per-video "unreadable" in every worker
        raise missing_package("file_type hdf5", "h5py", "hdf5")
    if not cfg.annotation_path:
        raise UserError("no annotation file given: pass --annotation_path")
    if not cfg.video_path or not os.path.isdir(cfg.video_path):
        raise UserError(f"video path '{cfg.video_path}' is not a folder: check --video_path (and --root_path)")
    ann = load_annotation(cfg.annotation_path, cfg.dataset, subset, cfg.folder_layout)
    index = {name: i for i, name in enumerate(ann.class_names)}
    found, missing = _resolve_paths(ann.entries, cfg)
    what = {"jpg": "frame folder", "hdf5": ".hdf5 file", "video": "video file"}[cfg.file_type]
    if missing:
        log.warning(
            "%s: %d of %d %s entries have no %s under %s (first: %s); skipped",
            ann.path, len(missing), len(ann.entries), subset, what, cfg.video_path, missing[0],
        )
    if ann.n_empty:
        log.warning("%s: %d %s entries have a segment that holds no frame (first: %s; the successor writes [1, 1] "
                    "for a video whose frames were missing when it made the file); skipped: to use them, extract "
                    "their frames and make the annotation again ('resnet3d prepare ...', docs/prepare.md)",
                    ann.path, ann.n_empty, subset, ann.first_empty)
    if ann.n_unlabelled:
        # (a sample with no label trained nothing and counted as a miss in every accuracy)
        log.warning("%s: %d %s entries have no labelled segment in 'annotations' (first: '%s'); skipped, as both "
                    "originals skip them: add their segments to use them", ann.path, ann.n_unlabelled, subset,
                    ann.first_unlabelled)
    if len(ann.spellings) > 1:
        spelled = ", ".join(f"{name!r} {count}" for name, count in sorted(ann.spellings.items()))
        log.warning("%s: the %s entries spell their subset in %d ways (%s); all are read as %s",
                    ann.path, subset, len(ann.spellings), spelled, subset)
    if ann.other_subsets:
        others = ", ".join(f"{name!r} {count}" for name, count in sorted(ann.other_subsets.items()))
        report_once(f"{ann.path}\0other subsets",  # once per run, not once per subset read
                    f"{ann.path}: {sum(ann.other_subsets.values())} entries have a subset that is none of training, "
                    f"validation, testing (or train, val, test): {others}; they belong to no subset and are not "
                    "read: rename their subset to use them")
    videos = [
        Video(
            key=e.key,
            label=e.label,
            target=index[e.label] if e.label is not None else -1,
            path=path,
            frames=e.frames,
            seconds=e.seconds,
            fps=e.fps,
            duration=e.duration,
        )
        for e, path in found
    ]
    videos = place_segments(videos, cfg, ann.path, subset)
    if not videos and ann.entries:
        raise UserError(
            f"none of the {len(ann.entries)} {subset} videos of {ann.path} were found under {cfg.video_path}: "
            f"the first was expected at {os.path.join(cfg.video_path, ann.entries[0].rel_path)}"
            f"{'' if cfg.file_type == 'jpg' else '.hdf5' if cfg.file_type == 'hdf5' else '.<ext>'}; "
            "check --video_path, --dataset and --file_type"
        )
    return videos, missing, ann


class VideoDataset(torch.utils.data.Dataset):
    """Clips of one subset. ``sampling`` says which clips an item is:

    - ``random``: one random window per video per epoch (training);
    - ``center``: the middle window (``--train_t_crop center``);
    - ``even``: ``n_clips`` evenly spaced windows per video, one item each (validation);
    - ``sliding``: windows every ``stride`` frames (per-video recognition); ``full_only`` keeps
      only windows that fit (the seed's ``--test_video``).

    ``train`` selects the training crop (``cfg.train_crop``); otherwise ``eval_crop`` is
    ``center`` (short-side resize + centre crop) or ``nocrop`` (the whole frame, short side
    resized to ``sample_size``: the successor's ``--inference_crop nocrop``).
    """

    def __init__(
        self,
        videos: List[Video],
        class_names: List[str],
        cfg: DataConfig,
        *,
        train: bool,
        sampling: str,
        n_clips: int = 1,
        stride: int = 16,
        full_only: bool = False,
        seed: int = 0,
        subset: str = "",
        eval_crop: str = "center",
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}")
        if eval_crop not in EVAL_CROPS:
            raise ValueError(f"eval_crop must be one of {EVAL_CROPS}")
        self.eval_crop = eval_crop
        self.videos = videos
        self.class_names = list(class_names)
        self.cfg = cfg
        self.train = train
        self.sampling = sampling
        self.n_clips = n_clips
        self.stride = stride
        self.full_only = full_only
        self.seed = seed
        self.subset = subset
        self._ranges: Dict[int, Tuple[int, int]] = {}
        self._unreadable: Dict[int, str] = {}  # video index -> why it could not be read
        # decode_device "mixed": which batches the workers hand to the GPU as JPEG bytes
        self.decode_share: Optional[DecodeShare] = share_for(cfg.decode_device)
        if sampling == "sliding":
            self.items = self._sliding_items()
        else:
            per_video = n_clips if sampling == "even" else 1
            self.items = [(v, c) for v in range(len(videos)) for c in range(per_video)]

    # -- public helpers -------------------------------------------------------------------------
    @property
    def encoded(self) -> bool:
        """Whether every item carries JPEG bytes for ``gpu_decode.assemble_clips`` (``"jpeg"``)
        instead of decoded pixels (``"clip"``): ``DataConfig.decode_device`` "cuda". With
        "mixed", some batches do (``decode_share``)."""
        return self.cfg.decode_device == "cuda"

    @property
    def n_videos(self) -> int:
        return len(self.videos)

    @property
    def video_ids(self) -> List[str]:
        return [v.key for v in self.videos]

    def __len__(self) -> int:
        return len(self.items)

    def frame_range(self, video_index: int) -> Tuple[int, int]:
        """The video's (or segment's) frames, ``[begin, end)``, reading the source if needed."""
        if video_index not in self._ranges:
            self._ranges[video_index] = self._resolve_range(self.videos[video_index])
        return self._ranges[video_index]

    # -- internals ------------------------------------------------------------------------------
    def _source(self, video: Video):
        source = source_for(video.path, self.cfg)
        if video.frames is not None and video.seconds is None and hasattr(source, "claim_segment"):
            # the annotation's segment (successor) sets the frames: one past the source's end is its fault
            begin, end = video.frames
            source.claim_segment(end - 1, f"the annotation {self.cfg.annotation_path} gives '{video.key}' a segment "
                                          f"of frames {begin}")
        return source

    def _resolve_range(self, video: Video) -> Tuple[int, int]:
        """A video's frame range; ``resolve_videos`` has placed ActivityNet segments already, and
        this places those of videos built by hand."""
        if video.frames is not None:
            return video.frames
        source = self._source(video)
        if video.seconds is not None:
            n_frames = source.n_frames()
            fps, _ = segment_fps(video, n_frames, source.fps())
            if fps is None:
                raise UnreadableVideo(f"{video.path}: no fps (not in the annotation entry, no fps file, no duration); "
                                      f"cannot place segment {video.seconds}")
            return segment_range(video.seconds, fps, n_frames)
        return 1, source.n_frames() + 1

    def _sliding_items(self) -> List[Tuple[int, int]]:
        items = []
        for v in range(len(self.videos)):
            try:
                begin, end = self.frame_range(v)
            except UnreadableVideo as error:
                log.warning("%s; skipped", error)
                continue
            n = len(temporal.frame_range(begin, end, self.cfg.sample_t_stride))
            if n <= 0:
                log.warning("%s; skipped", self._no_frames(v, begin, end))
                continue
            starts = temporal.sliding_starts(n, self.cfg.sample_duration, self.stride, self.full_only)
            items += [(v, s) for s in starts]
        return items

    def _no_frames(self, video_index: int, begin: int, end: int) -> str:
        """'<path>: no frames (why)': the source's own reason when it has one (another frame
        naming, an empty file, a file with no video stream), else what the frame range says."""
        path = self.videos[video_index].path
        source = self._source(self.videos[video_index])
        why = naming_problem(source)
        if not why and begin != 1:
            return f"{path}: no frames in [{begin}, {end})"
        if not why and hasattr(source, "absent_reason"):  # gone, unreadable, or no frame files
            why = source.absent_reason() or f"no frame files: none named like {os.path.relpath(source.describe(1), path)}"
        elif not why:
            why = "the file holds no frames" if self.cfg.file_type == "hdf5" else "the file is damaged or not a video"
        return f"{path}: no frames ({why})"

    def _indices(self, video_index: int, clip: int, rng: random.Random) -> List[int]:
        begin, end = self.frame_range(video_index)
        frames = temporal.frame_range(begin, end, self.cfg.sample_t_stride)
        if not frames:
            raise UnreadableVideo(self._no_frames(video_index, begin, end))
        size = self.cfg.sample_duration
        if self.sampling == "random":
            return temporal.random_crop(frames, size, rng)
        if self.sampling == "center":
            return temporal.center_crop(frames, size)
        if self.sampling == "even":
            return temporal.even_crop(frames, size, self.n_clips, clip)
        return temporal.window(frames, clip, size)

    def _out_size(self):
        size = self.cfg.sample_size
        if not self.train and self.eval_crop == "nocrop":
            return lambda box: spatial.short_side_size(box, size)
        return (size, size)

    def _box_picker(self, rng: random.Random):
        cfg = self.cfg
        if not self.train and self.eval_crop == "nocrop":
            return spatial.full_box
        if not self.train or cfg.train_crop == "center":
            return spatial.center_box
        if cfg.train_crop == "random":
            scale = (cfg.train_crop_min_scale, 1.0)
            ratio = (cfg.train_crop_min_ratio, 1.0 / cfg.train_crop_min_ratio)
            return lambda w, h: spatial.random_resized_box(w, h, scale, ratio, rng)
        if cfg.train_crop == "corner":
            return lambda w, h: spatial.random_corner_box(w, h, cfg.scales, rng)
        return lambda w, h: spatial.random_position_box(w, h, cfg.scales, rng)

    def clip_shape(self) -> Optional[Tuple[int, int, int, int]]:
        """(T, H, W, C) of every clip, or None when it depends on the video (``nocrop``)."""
        if not self.train and self.eval_crop == "nocrop":
            return None
        size = self.cfg.sample_size
        return self.cfg.sample_duration, size, size, self.cfg.n_channels

    def _load(self, item: int, epoch: int, out: Optional[torch.Tensor] = None, encode: bool = False) -> dict:
        video_index, clip = self.items[item]
        if video_index in self._unreadable:
            raise UnreadableVideo(self._unreadable[video_index])
        rng = random.Random(f"{self.seed}/{epoch}/{item}")
        indices = self._indices(video_index, clip, rng)
        source = self._source(self.videos[video_index])
        if encode:
            encoded, n_bad = read_encoded_clip(source, indices, self._box_picker(rng), self._out_size(), self.frame_range(video_index))
            sample = {"jpeg": encoded}
        else:
            frames, n_bad = read_clip(source, indices, self._box_picker(rng), self._out_size(), self.frame_range(video_index), out)
            sample = {"clip": frames}
        sample.update({
            "target": self.videos[video_index].target,
            "video": video_index,
            "segment": torch.tensor([min(indices), max(indices) + 1], dtype=torch.int64),
            "bad_frames": n_bad,
            "bad_video": 0,
        })
        if self.train:
            # a stream of its own: the crop's draws above stay as they were
            flip, jitter = draw_augmentation(random.Random(f"{self.seed}/{epoch}/{item}/device"), self.cfg.jitter_strength)
            sample.update(flip=flip, jitter=jitter)
        return sample

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> dict:
        return self._item(index, encode=as_jpeg_bytes(self.decode_share, self.cfg.decode_device))

    def __getitems__(self, indices: Sequence[Union[int, Tuple[int, int]]]) -> List[dict]:
        """The items of one batch (the DataLoader asks for them together). Their clips are
        written straight into one uint8 batch tensor, which ``resnet3d.data.loader.collate``
        passes on whole: no per-batch copy of the clips, no per-clip allocation."""
        shape = self.clip_shape()
        # one kind per batch: collate packs either kind, not both
        encode = as_jpeg_bytes(self.decode_share, self.cfg.decode_device)
        if shape is None or encode:
            return [self._item(index, encode=encode) for index in indices]
        batch = new_batch_tensor((len(indices),) + shape)
        return [self._item(index, batch[k]) for k, index in enumerate(indices)]

    def _item(self, index: Union[int, Tuple[int, int]], out: Optional[torch.Tensor] = None, encode: bool = False) -> dict:
        item, epoch = (index if isinstance(index, tuple) else (index, 0))
        item = int(item)
        last_error = ""
        for attempt in range(MAX_SUBSTITUTES + 1):
            candidate = (item + attempt * 7919) % len(self.items)  # a prime stride spreads substitutes
            try:
                sample = self._load(candidate, epoch, out, encode)
            except UnreadableVideo as error:
                video_index = self.items[candidate][0]
                last_error = self._unreadable.setdefault(video_index, str(error))
                report_once("unreadable:" + self.videos[video_index].path, f"{error}; this video is replaced by another and counted")
                if len(self._unreadable) == len(self.videos):
                    break  # (a small subset: the prime stride would only come back to the same videos)
                continue
            if attempt:
                sample["bad_video"] = 1
            return sample
        if len(self._unreadable) == len(self.videos):
            what = (f"none of the {len(self.videos)} {self.subset or 'data set'} videos has a readable frame"
                    if len(self.videos) > 1 else f"the one {self.subset or 'data set'} video has no readable frame")
        else:
            what = f"{MAX_SUBSTITUTES + 1} videos in a row had no readable frame"
        raise UserError(
            f"{what} (the last: {last_error}); "
            "check --video_path, --file_type, --input_type (flow frames or RGB) and the files"
        )


def build_dataset(
    cfg: DataConfig,
    subset: str,
    *,
    train: Optional[bool] = None,
    sampling: Optional[str] = None,
    n_clips: Optional[int] = None,
    stride: Optional[int] = None,
    full_only: bool = False,
    seed: int = 0,
    eval_crop: str = "center",
) -> VideoDataset:
    """The dataset of one subset ('training', 'validation', 'testing'; 'train'/'val'/'test' too).

    Defaults: the training subset samples one random window per video with the training crop;
    other subsets give ``cfg.n_val_samples`` evenly spaced centre-cropped clips per video. Pass
    ``sampling='sliding'`` (with ``stride``; ``full_only`` for the seed's rule) for per-video
    recognition, and ``eval_crop='nocrop'`` for whole frames.
    """
    subset = canonical_subset(subset)
    if train is None:
        train = subset == "training"
    if sampling is None:
        sampling = (cfg.train_t_crop if train else "even")
    videos, _, ann = resolve_videos(cfg, subset)
    return VideoDataset(
        videos,
        ann.class_names,
        cfg,
        train=train,
        sampling=sampling,
        n_clips=n_clips if n_clips is not None else cfg.n_val_samples,
        stride=stride if stride is not None else cfg.sample_duration,
        full_only=full_only,
        seed=seed,
        subset=subset,
        eval_crop=eval_crop,
    )
