"""Classifying one's own videos (``resnet3d classify``): the companion tool's job, in-process.

``classify_video(path, ...)`` returns the companion tool's record for one file::

    score mode:   {"video": name, "clips": [{"segment": [first, last], "label": name,
                                             "scores": [p_0, ..., p_{n-1}]}, ...]}
    feature mode: {"video": name, "clips": [{"segment": [first, last], "features": [f_0, ...]}, ...]}

``scores`` are softmax probabilities over all classes (the companion wrote raw network outputs);
``features`` are the model's pooled features (``forward_features``: 512 values for ResNet-18/34,
2048 for ResNet-50 and deeper). A file that cannot be read gives ``{"video", "error", "clips": []}``;
one that decodes only in part (cut short, corrupt packets) keeps its clips and adds ``"warning"``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from resnet3d.classify.ahead import made_ahead
from resnet3d.classify.clips import VideoReadError, video_clips
from resnet3d.engine.scoring import CpuThreadSplit

MODES = ("score", "feature")


@dataclass(frozen=True)
class ClassifyOptions:
    mode: str = "score"
    sample_size: int = 112
    sample_duration: int = 16
    stride: Optional[int] = None  # None: consecutive clips (stride = sample_duration)
    batch_size: int = 32
    sample_t_stride: int = 1  # keep every n-th frame, as the model was trained
    # batches in page-locked memory (a GPU): their copy to the device is then a DMA behind the
    # running kernels; from pageable memory CUDA first waits for the GPU to finish its queue
    pin_memory: bool = False


def clip_batches(path: str, options: ClassifyOptions, problems: List[str],
                 stop: Optional[threading.Event] = None) -> Iterator[Tuple[torch.Tensor, List[List[int]]]]:
    """``(uint8 (N, T, S, S, 3) clips, their segments)`` of one file, ``options.batch_size`` clips
    at a time (the last batch may be smaller). Once ``stop`` is set, nothing more: decoding ends
    at the next clip, not at the end of the batch under way (a large batch of a large video takes
    seconds to decode, and Ctrl-C waits for it)."""
    batch: List[torch.Tensor] = []
    segments: List[List[int]] = []
    for segment, clip in video_clips(path, options.sample_size, options.sample_duration, options.stride,
                                     options.sample_t_stride, problems):
        if stop is not None and stop.is_set():
            return
        batch.append(clip)
        segments.append(list(segment))
        if len(batch) == options.batch_size:
            yield _stacked(batch, options.pin_memory), segments
            batch, segments = [], []
    if batch:
        yield _stacked(batch, options.pin_memory), segments


def _stacked(clips: List[torch.Tensor], pin_memory: bool) -> torch.Tensor:
    if not pin_memory:
        return torch.stack(clips)
    out = torch.empty((len(clips), *clips[0].shape), dtype=clips[0].dtype, pin_memory=True)
    return torch.stack(clips, out=out)


def classify_video(path: str, name: str, scorer, class_names: Optional[Sequence[str]],
                   options: ClassifyOptions, threads: Optional[CpuThreadSplit] = None) -> Dict[str, Any]:
    """One file -> its record. ``scorer`` is a ``resnet3d.engine.predict.Scorer`` whose outputs
    are softmax scores (score mode) or pooled features (feature mode).

    A thread of its own decodes the next batch of clips while the model scores the current one
    (``ahead.made_ahead``). ``threads`` (a CPU device): the model's threads beside that decoding,
    told what each batch cost each side."""
    clips: List[Dict[str, Any]] = []
    problems: List[str] = []

    def book(ready) -> None:
        for outputs, batch_segments in ready:
            for segment, row in zip(batch_segments, outputs):
                clips.append(_clip_record(segment, row, class_names, options.mode))

    mark = time.process_time()  # the whole process: this thread, the decoding one and FFmpeg's
    stop = threading.Event()  # set when this thread stops early (Ctrl-C): the decoding ends at its next clip
    try:
        for batch, segments in made_ahead(clip_batches(path, options, problems, stop), stop=stop):
            if threads is None or not threads.settling:
                book(scorer.submit(batch, segments))
                continue
            began, began_here = time.process_time(), time.thread_time()
            ready = scorer.submit(batch, segments)
            # settling, the model runs on this thread alone; the rest of the process's CPU went to
            # decoding (the decoding thread and FFmpeg's), which goes on while the model runs
            model = time.thread_time() - began_here
            threads.on_decoded(max(0.0, began - mark), len(batch))
            threads.on_batch(model, len(batch))
            mark = began + model
            book(ready)
        book(scorer.drain())
    except VideoReadError as error:
        book(scorer.drain())
        return {"video": name, "error": f"{path}: {error}", "clips": []}
    record: Dict[str, Any] = {"video": name, "clips": clips}
    if problems:
        record["warning"] = f"{path}: " + "; ".join(problems)
    return record


def _clip_record(segment: List[int], row: torch.Tensor, class_names: Optional[Sequence[str]], mode: str) -> Dict[str, Any]:
    values = row.float().tolist()
    if mode == "feature":
        return {"segment": segment, "features": values}
    best = max(range(len(values)), key=lambda i: values[i])
    label = class_names[best] if class_names else str(best)
    return {"segment": segment, "label": label, "scores": values}


__all__ = ["MODES", "ClassifyOptions", "classify_video"]
