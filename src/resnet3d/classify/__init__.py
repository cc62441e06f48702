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

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from resnet3d.classify.clips import VideoReadError, video_clips

MODES = ("score", "feature")


@dataclass(frozen=True)
class ClassifyOptions:
    mode: str = "score"
    sample_size: int = 112
    sample_duration: int = 16
    stride: Optional[int] = None  # None: consecutive clips (stride = sample_duration)
    batch_size: int = 32
    sample_t_stride: int = 1  # keep every n-th frame, as the model was trained


def classify_video(path: str, name: str, scorer, class_names: Optional[Sequence[str]],
                   options: ClassifyOptions) -> Dict[str, Any]:
    """One file -> its record. ``scorer`` is a ``resnet3d.engine.predict.Scorer`` whose outputs
    are softmax scores (score mode) or pooled features (feature mode)."""
    clips: List[Dict[str, Any]] = []
    batch: List[torch.Tensor] = []
    segments: List[List[int]] = []
    problems: List[str] = []

    def book(ready) -> None:
        for outputs, batch_segments in ready:
            for segment, row in zip(batch_segments, outputs):
                clips.append(_clip_record(segment, row, class_names, options.mode))

    try:
        clips_of_video = video_clips(path, options.sample_size, options.sample_duration, options.stride,
                                     options.sample_t_stride, problems)
        for segment, clip in clips_of_video:
            batch.append(clip)
            segments.append(list(segment))
            if len(batch) == options.batch_size:
                book(scorer.submit(torch.stack(batch), segments))
                batch, segments = [], []
        if batch:
            book(scorer.submit(torch.stack(batch), segments))
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
