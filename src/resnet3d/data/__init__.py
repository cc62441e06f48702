"""The data pipeline: annotations -> sources -> clips -> batches -> device.

Public API (names are stable; the engine and commands use only these):

- ``DataConfig``: every data option (``resnet3d.data.config``).
- ``build_dataset(cfg, subset, *, train=None, sampling=None, n_clips=None, stride=None,
  full_only=False, seed=0, eval_crop="center") -> VideoDataset``: the clips of 'training' / 'validation' / 'testing'.
  Items are dicts ``{"clip": uint8 (T, H, W, C), "target", "video", "segment", "bad_frames",
  "bad_video"}``; ``dataset.class_names``, ``dataset.videos`` (with ``.key``, ``.target``,
  ``.path``) and ``dataset.n_videos`` describe it.
- ``build_loader(dataset, batch_size, *, train, num_workers, distributed=False, seed=0, ...)``
  and ``set_epoch(loader, epoch)``.
- ``DeviceTransform(norm, *, train, hflip, colorjitter, ...)`` / ``DeviceTransform.from_config(cfg,
  train)``: uint8 (N, T, H, W, C) on the device -> float (N, C, T, H, W), channels_last_3d.
- ``batch_counters(batch) -> dict``: the bad-data counts of a batch, to sum per epoch.
"""
from __future__ import annotations

from typing import Dict

from resnet3d.data.config import DataConfig, canonical_subset
from resnet3d.data.dataset import Video, VideoDataset, build_dataset, resolve_videos
from resnet3d.data.device import DeviceTransform
from resnet3d.data.loader import ClipSampler, build_loader, set_epoch

COUNTER_KEYS = ("bad_frames", "bad_video")


def batch_counters(batch: dict) -> Dict[str, int]:
    """{'bad_frames': stand-in frames, 'bad_video': substituted videos} of one collated batch."""
    return {key: int(batch[key].sum()) for key in COUNTER_KEYS if key in batch}


__all__ = [
    "DataConfig",
    "canonical_subset",
    "Video",
    "VideoDataset",
    "build_dataset",
    "resolve_videos",
    "DeviceTransform",
    "ClipSampler",
    "build_loader",
    "set_epoch",
    "batch_counters",
    "COUNTER_KEYS",
]
