"""The data pipeline: annotations -> sources -> clips -> batches -> device.

Public API (names are stable; the engine and commands use only these):

- ``DataConfig``: every data option (``resnet3d.data.config``).
- ``build_dataset(cfg, subset, *, train=None, sampling=None, n_clips=None, stride=None,
  full_only=False, seed=0, eval_crop="center") -> VideoDataset``: the clips of 'training' / 'validation' / 'testing'.
  Items are dicts ``{"clip": uint8 (T, H, W, C), "target", "video", "segment", "bad_frames",
  "bad_video"}``, plus the clip's ``"flip"`` and ``"jitter"`` draws in a training dataset
  (``AUGMENT_KEYS``, for ``DeviceTransform``); ``dataset.class_names``, ``dataset.videos`` (with ``.key``, ``.target``,
  ``.path``) and ``dataset.n_videos`` describe it.
- ``build_loader(dataset, batch_size, *, train, num_workers, distributed=False, seed=0, ...)``
  and ``set_epoch(loader, epoch)``.
- ``DeviceTransform(norm, *, train, hflip, colorjitter, ...)`` / ``DeviceTransform.from_config(cfg,
  train)``: uint8 (N, T, H, W, C) on the device -> float (N, C, T, H, W), channels_last_3d;
  ``transform(clips, flip=batch["flip"], jitter=batch["jitter"])`` applies the batch's draws.
- ``batch_counters(batch) -> dict``: the bad-data counts of a batch, to sum per epoch.
- ``DataConfig(decode_device="cuda")``: items and batches carry JPEG bytes instead of ``"clip"``;
  ``assemble_clips(batch, device)`` decodes, crops and resizes a batch there (one batched
  torchvision/nvJPEG call) into the same uint8 (N, T, H, W, C); ``clips_to_device(batch, device)``
  takes either kind of batch; ``check_decode_device(cfg.decode_device, device)`` refuses "cuda"
  without a GPU (``resnet3d.data.gpu_decode``; docs/data.md, "Decoding on the GPU").
"""
from __future__ import annotations

import importlib
from typing import Dict

# name -> the module that defines it. Imported on first use (PEP 562), so that importing
# ``resnet3d.data.config`` (every command's parser does) does not import torch.
_EXPORTS = {
    "DataConfig": "resnet3d.data.config",
    "canonical_subset": "resnet3d.data.config",
    "Video": "resnet3d.data.dataset",
    "VideoDataset": "resnet3d.data.dataset",
    "build_dataset": "resnet3d.data.dataset",
    "resolve_videos": "resnet3d.data.dataset",
    "DeviceTransform": "resnet3d.data.device",
    "ClipSampler": "resnet3d.data.loader",
    "build_loader": "resnet3d.data.loader",
    "set_epoch": "resnet3d.data.loader",
    "assemble_clips": "resnet3d.data.gpu_decode",
    "clips_to_device": "resnet3d.data.gpu_decode",
    "check_decode_device": "resnet3d.data.gpu_decode",
}

COUNTER_KEYS = ("bad_frames", "bad_video")
# a training item's device-side augmentation, drawn per item and applied by DeviceTransform
AUGMENT_KEYS = ("flip", "jitter")


def batch_counters(batch: dict) -> Dict[str, int]:
    """{'bad_frames': stand-in frames, 'bad_video': substituted videos} of one collated batch."""
    return {key: int(batch[key].sum()) for key in COUNTER_KEYS if key in batch}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'resnet3d.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [*_EXPORTS, "batch_counters", "COUNTER_KEYS", "AUGMENT_KEYS"]
