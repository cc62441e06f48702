"""Helpers shared by the recognition tests (imported by name: tests have no packages)."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

SIZE, DURATION = 32, 8


def recognition_config(motion, result_path, *, flavour: str = "successor", file_type: str = "jpg",
                       stride: int = DURATION, crop: str = "center", average: bool = True, top_k: int = 5,
                       batch_size: int = 4, workers: int = 0, **data_changes: Any):
    from resnet3d.config import Config, InferenceConfig, RunConfig
    from resnet3d.data import DataConfig

    video_path = motion.jpg_path if file_type == "jpg" else motion.video_path
    data = DataConfig(dataset=motion.dataset, video_path=video_path, annotation_path=motion.annotation_path,
                      file_type=file_type, sample_size=SIZE, sample_duration=DURATION, num_workers=workers)
    if data_changes:
        data = dataclasses.replace(data, **data_changes)
    return Config(data=data, run=RunConfig(result_path=str(result_path), batch_size=batch_size),
                  inference=InferenceConfig(flavour=flavour, subset="val", stride=stride, crop=crop,
                                            average=average, top_k=top_k, batch_size=batch_size))


class ClipCounter:
    """Counts the clips a model is run on (to prove what --resume skips), through a forward hook,
    so the model and its weights stay exactly as they are. Use as a context manager."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.clips = 0
        self.shapes = []
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        self.clips += args[0].shape[0]
        self.shapes.append(tuple(args[0].shape))

    def __enter__(self) -> "ClipCounter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
