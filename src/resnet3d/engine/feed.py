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

A third applies to batches of JPEG bytes (``decode_device`` "cuda"), which are decoded on the
device as they are sent. torchvision's ``decode_jpeg`` blocks its caller until nvJPEG has decoded
the whole batch (it synchronises its own stream; about 70 ms for 64 clips of 16 frames at 240p on
an H200), and while the main thread is blocked it queues no step. Such batches are decoded in a
thread of their own (``decode_thread``; torch releases the GIL in the call), and
``DeviceFeed.batches`` keeps ``AHEAD`` (4) batches in flight, so that the thread goes from one
batch to the next while the main thread queues steps.

On the CPU the copies are plain synchronous operations, so the CPU path is unchanged.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple,
                    TypeVar, Union)

import torch

if TYPE_CHECKING:
    from resnet3d.data.decode_share import DecodeShare


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


_decode_thread: Optional[ThreadPoolExecutor] = None
_decode_thread_lock = threading.Lock()


def decode_thread() -> ThreadPoolExecutor:
    """The one thread of this process that decodes JPEG bytes on the device (module docstring).
    One is enough: torchvision decodes one batch at a time per process (a global lock)."""
    global _decode_thread
    with _decode_thread_lock:
        if _decode_thread is None:
            _decode_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet3d-decode")
        return _decode_thread


def with_index(device: torch.device) -> torch.device:
    """``device`` with its index: "cuda" means the caller thread's current GPU, which another
    thread does not share (call this in the thread that chose the device)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def on_device_of(device: torch.device, stream: Optional["torch.cuda.Stream"] = None):
    """In a thread other than the main one, the CUDA device (and stream) to work on: both are
    per thread, so a new thread starts on GPU 0's default stream. ``device`` needs its index
    (``with_index``)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.cuda.device(device))
    if stream is not None:
        stack.enter_context(torch.cuda.stream(stream))
    return stack


Sent = Union[Dict[str, torch.Tensor], "Future[Dict[str, torch.Tensor]]"]
# Batches in flight. Two would do for copies; decoding a batch on the GPU takes longer than a
# step (about 80 ms for 64 clips of 16 240p frames against ~32 ms for a ResNet-18 step on an
# H200), so its decoding must start a few steps before the batch is needed, or the loop waits on
# it even where the decoder keeps up (and decode_device "mixed" would read that as "too many").
AHEAD = 4


class DeviceFeed:
    """Copies the tensors of a batch to the device; on CUDA on a side stream. Batches of JPEG
    bytes are decoded on the device in ``decode_thread``."""

    def __init__(self, device: torch.device, keys: Iterable[str]) -> None:
        self.device = with_index(device)
        self.keys = tuple(keys)
        self.stream: Optional["torch.cuda.Stream"] = side_stream(device) if device.type == "cuda" else None

    def send(self, batch: dict) -> Sent:
        """Start copying ``batch[key]`` for the keys present; the result is used after ``ready``.

        A batch of JPEG bytes (``decode_device`` "cuda") has its clips decoded, cropped and
        resized on the device, also on the side stream, in ``decode_thread``. That can change the
        batch's bad-data counts and, for a clip that did not decode, its target: read those after
        ``ready``.
        """
        if "jpeg" in batch and "clip" in self.keys:
            return decode_thread().submit(self._send_here, batch)
        return self._send_here(batch)

    def _send_here(self, batch: dict) -> Dict[str, torch.Tensor]:
        if self.stream is None:
            return self._send(batch, non_blocking=False)
        # no wait on the compute stream: the inputs are host memory, and the outputs are fresh
        # blocks of the side stream (``ready`` hands them over with record_stream)
        with on_device_of(self.device, self.stream):
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

    def ready(self, sent: Sent) -> Dict[str, torch.Tensor]:
        """Make the compute stream wait for the copies of ``sent``, and tell the allocator that the
        compute stream uses those tensors (their memory is not reused before it is done). For a
        batch decoded in ``decode_thread``, wait for that first (its errors are raised here)."""
        if isinstance(sent, Future):
            sent = sent.result()
        if self.stream is None:
            return sent
        compute = torch.cuda.current_stream(self.device)
        compute.wait_stream(self.stream)
        for tensor in sent.values():
            tensor.record_stream(compute)
        return sent

    def batches(self, batches: Iterable[dict], ahead: int = AHEAD,
                share: Optional["DecodeShare"] = None) -> Iterator[Tuple[dict, Dict[str, torch.Tensor], float]]:
        """``(batch, its tensors on the device, seconds waited for it)`` for each of ``batches``.

        ``ahead`` batches are sent before the oldest is handed over, so while a step runs the
        next batches are already copied (or decoded, or under way in ``decode_thread``). The seconds
        waited are the time blocked on the loader and on the batch's decoding: the loop's data
        wait. ``share``: see ``started_ahead``. Close the iterator (``contextlib.closing``) when
        leaving early; batches in flight then finish in the background and are dropped."""
        for batch, sent, waits in started_ahead(batches, self.send, ahead, share):
            yield batch, self.ready(sent), waits.loader + waits.decode


@dataclass(frozen=True)
class Waits:
    """What the main thread waited for before an item was handed over (``started_ahead``)."""

    loader: float  # seconds blocked on the loader
    decode: float  # seconds blocked on the item's decoding in ``decode_thread``


T = TypeVar("T")
S = TypeVar("S")


def started_ahead(items: Iterable[T], start: Callable[[T], S], ahead: int = AHEAD,
                  share: Optional["DecodeShare"] = None) -> Iterator[Tuple[T, S, Waits]]:
    """``(item, start(item), waits)`` for each item, ``start`` called ``ahead`` items before the
    item is handed over. Where ``start`` returned a ``Future`` (work given to ``decode_thread``),
    it is done when handed over: the wait for it is ``waits.decode``.

    ``share`` (decode_device "mixed", ``data.decode_share_of(loader)``) is told, for each item
    after the first, both waits and the seconds since the previous item: how it finds the share
    of the batches the GPU decodes."""
    iterator = iter(items)
    in_flight: Deque[Tuple[T, S]] = deque()
    exhausted = False
    failed: Optional[Exception] = None  # the error the items raised, once those before it are handed over
    previous: Optional[float] = None  # when the previous item was handed over
    while True:
        started = time.perf_counter()
        while not exhausted and len(in_flight) < max(1, ahead):
            try:
                item = next(iterator)
            except StopIteration:
                exhausted = True
            except Exception as error:
                # The loader failed at this batch (a dead worker, data that gave out): the batches
                # fetched before it are still stepped on, and the error comes in its place, so the
                # steps the caller settles and keeps are all those before it.
                exhausted, failed = True, error
            else:
                in_flight.append((item, start(item)))
        if not in_flight:
            if failed is not None:
                raise failed
            return
        loaded = time.perf_counter()
        item, begun = in_flight.popleft()
        if isinstance(begun, Future):
            futures.wait([begun])
        now = time.perf_counter()
        if share is not None and previous is not None:
            share.observe(loaded - started, now - loaded, now - previous)
        previous = now
        yield item, begun, Waits(loader=loaded - started, decode=now - loaded)


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
