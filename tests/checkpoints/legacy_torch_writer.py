"""Writes a checkpoint as PyTorch 0.3 / 0.4.0 wrote it on a GPU, the form of the successor's
2018 release (``resnet-34-kinetics.pth`` ...): the legacy (non-zip) format, whose tensors are
rebuilt by ``torch._utils._rebuild_tensor`` (not ``_v2``) from ``torch.cuda.FloatStorage`` at
``cuda:0``. Today's ``torch.save(..., _use_new_zipfile_serialization=False)`` writes neither."""
from __future__ import annotations

import pickle
import struct
from typing import Any

import torch

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class _Storage:
    def __init__(self, key: str, tensor: torch.Tensor) -> None:
        self.key, self.tensor = key, tensor


class _Tensor:
    def __init__(self, storage: _Storage) -> None:
        self.storage = storage

    def __reduce__(self):
        t = self.storage.tensor
        return (torch._utils._rebuild_tensor, (self.storage, 0, tuple(t.shape), tuple(t.stride())))


def write_pytorch03_checkpoint(obj: Any, path) -> None:
    storages = []

    def wrap(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            storage = _Storage(str(len(storages)), value.detach().float().contiguous())
            storages.append(storage)
            return _Tensor(storage)
        if isinstance(value, dict):
            return type(value)((k, wrap(v)) for k, v in value.items())
        if isinstance(value, list):
            return [wrap(v) for v in value]
        return value

    wrapped = wrap(obj)

    class Pickler(pickle.Pickler):
        def persistent_id(self, value: Any):
            if isinstance(value, _Storage):
                return ("storage", torch.cuda.FloatStorage, value.key, "cuda:0", value.tensor.numel(), None)
            return None

    with open(path, "wb") as f:
        pickle.dump(MAGIC_NUMBER, f, protocol=2)
        pickle.dump(PROTOCOL_VERSION, f, protocol=2)
        pickle.dump({"protocol_version": PROTOCOL_VERSION, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        Pickler(f, protocol=2).dump(wrapped)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for storage in storages:  # each: its element count (int64), then the raw float32 data
            f.write(struct.pack("<q", storage.tensor.numel()))
            f.write(storage.tensor.numpy().tobytes())
