"""Keeping the GPU busy: batches copied to the device a step ahead, step results read back late.

Two things would otherwise leave the GPU idle once per step:

- the host-to-device copy of the batch (a 64 x 16 x 112 x 112 x 3 uint8 batch is 38.5 MB, about
  1 ms over PCIe), queued on the compute stream behind the running step. ``DeviceFeed`` issues
  it on a side stream as soon as the batch leaves the loader, so it overlaps the previous step;
- reading the step's loss on the host. A plain ``float(loss)`` queues its copy behind everything
  already on the stream, so reading step k-1's loss after step k is queued still waits for step
  k to finish, and the GPU idles while Python fetches the next batch. ``HostReadout`` copies the
  numbers into pinned memory right after their own step and records an event: waiting on that
  event waits for step k-1 only.

On the CPU both are plain synchronous operations, so the CPU path is unchanged.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import torch


_side_streams: Dict[torch.device, "torch.cuda.Stream"] = {}


def side_stream(device: torch.device) -> "torch.cuda.Stream":
    """One copy stream per GPU for the whole process. The caching allocator keeps freed blocks
    per stream, so a fresh stream per epoch and per validation pass would reserve a few more
    batches of GPU memory each time, up to torch's pool of 32 streams."""
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _side_streams:
        _side_streams[device] = torch.cuda.Stream(device)
    return _side_streams[device]


class DeviceFeed:
    """Copies the tensors of a batch to the device; on CUDA on a side stream."""

    def __init__(self, device: torch.device, keys: Iterable[str]) -> None:
        self.device = device
        self.keys = tuple(keys)
        self.stream: Optional["torch.cuda.Stream"] = side_stream(device) if device.type == "cuda" else None

    def send(self, batch: dict) -> Dict[str, torch.Tensor]:
        """Start copying ``batch[key]`` for the keys present; the result is used after ``ready``.

        A batch of JPEG bytes (``decode_device`` "cuda") has its clips decoded, cropped and
        resized on the device here, also on the side stream. That can change the batch's
        bad-data counts and, for a clip that did not decode, its target: read those after this.
        """
        if self.stream is None:
            return self._send(batch, non_blocking=False)
        # no wait on the compute stream: the inputs are host memory, and the outputs are fresh
        # blocks of the side stream (``ready`` hands them over with record_stream)
        with torch.cuda.stream(self.stream):
            return self._send(batch, non_blocking=True)

    def _send(self, batch: dict, non_blocking: bool) -> Dict[str, torch.Tensor]:
        from resnet3d.data import clips_to_device

        sent: Dict[str, torch.Tensor] = {}
        if "clip" in self.keys and ("clip" in batch or "jpeg" in batch):
            # first: decoding JPEG bytes can change the batch's targets and counts
            sent["clip"] = clips_to_device(batch, self.device, non_blocking=non_blocking)
        for key in self.keys:
            if key in batch and key not in sent:
                sent[key] = torch.as_tensor(batch[key]).to(self.device, non_blocking=non_blocking)
        return sent

    def ready(self, sent: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Make the compute stream wait for the copies of ``sent``, and tell the allocator that the
        compute stream uses those tensors (their memory is not reused before it is done)."""
        if self.stream is None:
            return sent
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self.stream)
        for tensor in sent.values():
            tensor.record_stream(compute)
        return sent


class HostReadout:
    """Device numbers copied to the host without blocking; ``values()`` waits for that copy only."""

    def __init__(self, numbers: Sequence[torch.Tensor]) -> None:
        stacked = torch.stack([torch.as_tensor(n).detach().to(torch.float64).reshape(()) for n in numbers])
        self.event: Optional["torch.cuda.Event"] = None
        if stacked.device.type == "cuda":
            self.host = torch.empty(stacked.shape, dtype=torch.float64, pin_memory=True)
            self.host.copy_(stacked, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = stacked.cpu()

    def values(self) -> List[float]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()
