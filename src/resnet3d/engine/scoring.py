"""Scoring views in batches filled across videos, and booking the scores per video.

- ``Scorer``: uint8 views (on the host, or already on the device) -> model outputs on the host;
  on CUDA it keeps one batch in flight, so the GPU never waits while the host books results or
  assembles the next batch.
- ``RowBatcher``: fills batches of a fixed size from chunks of any videos (the originals ran one
  video per batch); host rows are joined in (pinned) host memory, rows on the device (sent
  there as their chunk arrived, or decoded there: ``decode_device`` "cuda") are joined there.
- ``Tally``: per-video sums of view scores (and per-window ones for per-segment output); says
  when a video is complete, including one that failed midway.
- ``CpuThreadSplit``: on a CPU device, how many intra-op threads the model gets beside the
  loader workers that decode on the same cores.
"""
from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from resnet3d.engine import results as resultfiles


# -- running the model -------------------------------------------------------------------------


class Scorer:
    """uint8 views (on the host, or on the device already) -> per-view outputs on the host, one
    batch kept in flight on CUDA.

    ``submit`` starts a batch and returns the batches that have finished (on CUDA, the previous
    one: its results are copied to pinned memory behind the next batch's kernels, so the GPU
    never waits while the host books results or assembles the next batch).
    """

    def __init__(self, model: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 amp_dtype: Optional[torch.dtype] = None, softmax: bool = True,
                 forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        self.model = model
        self.transform = transform
        self.device = device
        self.amp_dtype = amp_dtype
        self.softmax = softmax
        self.forward = forward or model
        self.calls = 0
        self._pending: Deque[Tuple[Any, torch.Tensor, Any]] = collections.deque()

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def submit(self, rows: torch.Tensor, meta: Any) -> List[Tuple[torch.Tensor, Any]]:
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            x = self.transform(rows.to(self.device, non_blocking=cuda))  # (N, C, T, H, W)
            with self._autocast():
                out = self.forward(x)
            out = out.float()
            if self.softmax:
                out = torch.softmax(out, dim=1)
            self.calls += 1
            if not cuda:
                return [(out, meta)]
            host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending.append((event, host, meta))
        ready = []
        while len(self._pending) > 1:
            ready.append(self._collect())
        return ready

    def _collect(self) -> Tuple[torch.Tensor, Any]:
        event, host, meta = self._pending.popleft()
        event.synchronize()
        return host, meta

    def drain(self) -> List[Tuple[torch.Tensor, Any]]:
        return [self._collect() for _ in range(len(self._pending))]


def prepare_for_inference(model: nn.Module, device: torch.device, channels_last: bool,
                          fold_bn: bool = True) -> Tuple[nn.Module, int]:
    """(the model to run, number of BatchNorm layers folded into their convs).

    ``model`` is put in eval mode and moved to ``device`` as before (and, with ``channels_last``,
    to channels_last_3d: on every device, in place). With ``fold_bn`` the model
    that runs is a copy with every conv->BN pair folded (``resnet3d.models.fold``): the BN passes
    over the activations disappear, the outputs change only by float rounding, and ``model``
    keeps its own weights, so a checkpoint saved from it later (or the results' weights digest)
    is what it was. A model with nothing to fold runs as it is."""
    model.eval()
    model.to(device)
    n_folded = 0
    if fold_bn:
        from resnet3d.models.fold import fold_batchnorm

        model, n_folded = fold_batchnorm(model)
    if channels_last:
        # on the CPU too: DeviceTransform hands the model channels_last_3d input, and oneDNN's
        # convolutions run ~10-15% faster on ResNet-10/18 when the weights share that layout
        # (docs/benchmarks.md); the outputs change by float rounding only
        model.to(memory_format=torch.channels_last_3d)
    return model, n_folded


def autotune_convolutions(device: torch.device, fixed_shapes: bool) -> None:
    """Let cuDNN time its convolution algorithms on each input shape and keep the fastest
    (``cudnn.benchmark``), as training does. Worth it when the clips have one shape (a centred
    square: every batch alike but the last); with ``nocrop`` each frame size is another shape to
    time, seconds each, so the setting is left as it is. Never where a run asked for
    deterministic kernels (``--manual_seed`` with determinism)."""
    if device.type == "cuda" and fixed_shapes and not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = True


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool, fold_bn: bool = True) -> nn.Module:
    """The model to run for inference (``prepare_for_inference`` without the count)."""
    return prepare_for_inference(model, device, channels_last, fold_bn)[0]


# -- batches across videos ---------------------------------------------------------------------


@dataclass
class _Queue:
    parts: Deque[Dict[str, torch.Tensor]] = field(default_factory=collections.deque)
    rows: int = 0


class RowBatcher:
    """Fills batches of ``batch_size`` views from chunks of any videos (views of one shape per
    batch: with ``nocrop``, videos of different aspect ratios go to different batches).

    Rows on the host are copied once, into a (pinned, with ``pin_memory``) batch tensor that the
    scorer copies to the device; rows already on a device (assembled there from JPEG bytes) are
    joined by one ``torch.cat`` on that device and never pass through the host."""

    def __init__(self, batch_size: int, pin_memory: bool = False, max_buffered_batches: int = 4) -> None:
        self.batch_size = batch_size
        self.pin_memory = pin_memory
        self.max_buffered = max_buffered_batches * batch_size
        self.queues: Dict[Tuple[Any, ...], _Queue] = {}  # (device, T, H, W, C) -> rows waiting

    @property
    def buffered(self) -> int:
        return sum(q.rows for q in self.queues.values())

    def add(self, unit: int, rows: torch.Tensor, window: torch.Tensor, segment: torch.Tensor) -> None:
        queue = self.queues.setdefault((rows.device, *rows.shape[1:]), _Queue())
        queue.parts.append({"rows": rows, "unit": torch.full((len(rows),), unit, dtype=torch.int64),
                            "window": window, "segment": segment})
        queue.rows += len(rows)

    def batches(self, flush: bool = False) -> Iterator[Tuple[torch.Tensor, Dict[str, torch.Tensor]]]:
        """Full batches; with ``flush`` (or too much buffered) the partial ones too."""
        for shape in list(self.queues):
            queue = self.queues[shape]
            while queue.rows >= self.batch_size or (queue.rows and (flush or self.buffered > self.max_buffered)):
                yield self._take(shape, queue, min(self.batch_size, queue.rows))
            if not queue.rows:
                del self.queues[shape]

    def _take(self, shape: Tuple[Any, ...], queue: _Queue, n: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        pieces: Dict[str, List[torch.Tensor]] = {"rows": [], "unit": [], "window": [], "segment": []}
        needed = n
        while needed:
            part = queue.parts[0]
            count = len(part["rows"])
            if count <= needed:
                queue.parts.popleft()
                taken = part
            else:
                taken = {k: v[:needed] for k, v in part.items()}
                queue.parts[0] = {k: v[needed:] for k, v in part.items()}
                count = needed
            for key in pieces:
                pieces[key].append(taken[key])
            needed -= count
        queue.rows -= n
        device, *row_shape = shape
        if device.type != "cpu":  # decoded on the device: joined there
            rows = torch.cat(pieces["rows"])
        else:
            rows = torch.empty((n, *row_shape), dtype=torch.uint8, pin_memory=self.pin_memory)
            torch.cat(pieces["rows"], out=rows)
        meta = {key: torch.cat(pieces[key]) for key in ("unit", "window", "segment")}
        return rows, meta


# -- booking scores per video ------------------------------------------------------------------


@dataclass
class _UnitState:
    expected: Optional[int] = None
    received: int = 0
    scored: int = 0
    error: Optional[str] = None
    total: Optional[torch.Tensor] = None  # sum of view scores (float64)
    windows: Dict[int, List[Any]] = field(default_factory=dict)  # window -> [segment, sum, count]
    bad_frames: int = 0


class Tally:
    """Per-video sums of view scores; says when a video is complete."""

    def __init__(self, keep_windows: bool) -> None:
        self.keep_windows = keep_windows
        self.units: Dict[int, _UnitState] = {}

    def state(self, unit: int) -> _UnitState:
        return self.units.setdefault(unit, _UnitState())

    def on_chunk(self, chunk: Dict[str, Any]) -> None:
        state = self.state(int(chunk["unit"]))
        state.expected = int(chunk["expected"])
        state.received += len(chunk["rows"])
        state.bad_frames += int(chunk.get("bad_frames", 0))

    def on_error(self, unit: int, message: str) -> List[int]:
        state = self.state(unit)
        state.error = message
        return [unit] if state.scored == state.received else []

    def on_scores(self, scores: torch.Tensor, meta: Dict[str, torch.Tensor]) -> List[int]:
        scores = scores.double().cpu()
        units = meta["unit"].tolist()
        finished = []
        for unit in dict.fromkeys(units):
            mask = meta["unit"] == unit
            state = self.state(unit)
            chosen = scores[mask]
            total = chosen.sum(dim=0)
            state.total = total if state.total is None else state.total + total
            if self.keep_windows:
                for window, segment, row in zip(meta["window"][mask].tolist(), meta["segment"][mask].tolist(), chosen):
                    entry = state.windows.setdefault(window, [segment, torch.zeros_like(row), 0])
                    entry[1] += row
                    entry[2] += 1
            state.scored += int(mask.sum())
            if self.complete(state):
                finished.append(unit)
        return finished

    @staticmethod
    def complete(state: _UnitState) -> bool:
        if state.error is not None:
            return state.scored == state.received
        return state.expected is not None and state.scored == state.expected

    def pop(self, unit: int) -> _UnitState:
        return self.units.pop(unit)


def result_entry(state: _UnitState, class_names: Sequence[str], top_k: int, average: bool) -> Any:
    """The JSON value of one video: its top-k list, or (no averaging) one list per window."""
    if average:
        mean = (state.total / max(state.scored, 1)).numpy()
        return resultfiles.top_k(mean, class_names, top_k)
    entries = []
    for window in sorted(state.windows):
        segment, total, count = state.windows[window]
        entries.append({"segment": [int(segment[0]), int(segment[1])],
                        "result": resultfiles.top_k((total / count).numpy(), class_names, top_k)})
    return entries


# -- the model's threads beside the decoding workers (CPU device) ---------------------------------


class CpuThreadSplit:
    """On a CPU device, the loader workers and the model's intra-op threads share the cores. With
    every core running a model thread and the workers decoding besides (torch's default), the
    threads wait at each operator for the one the OS has paused for a worker: on 2 cores with 2
    workers, ResNet-10 at 8x64x64 spent 3x the CPU time per batch that one thread spends.

    So the model starts on one thread, and after ``settle_batches`` batches (one: a short run
    spends the settling batches on one thread, and the first batch's warm-up adds only 2-7% to
    the model's cost) the split is set from
    what the two sides cost per view, in CPU seconds (the workers report each chunk's as
    ``decode_s``): decoding needs ``cores x D / (D + M)`` cores, at most one per worker; the
    model gets the rest, at least one thread. A model that costs ten times its decoding (ResNet-18
    at 16x112x112 from 240p JPEGs) gets every core of a 2-core machine; ResNet-10 at half width
    and 8x64x64, whose decoding costs as much as its forward pass, gets one. The threads the
    process had are given back by ``restore``. Without workers (decoding in this process, between
    batches) or on a GPU it changes nothing. Results do not depend on it (float rounding aside).
    """

    def __init__(self, device: torch.device, workers: int, settle_batches: int = 1,
                 cores: Optional[int] = None) -> None:
        """``workers``: the decoding processes (or threads), each using at most one core."""
        from resnet3d.hardware import usable_cores

        self.previous = torch.get_num_threads()
        self.cores = max(1, min(self.previous, cores or usable_cores()))
        self.workers = max(0, int(workers))
        self.settle_batches = settle_batches
        self.threads = self.previous
        self.active = torch.device(device).type == "cpu" and self.workers > 0 and self.cores > 1
        self.decode_s = 0.0
        self.decoded = 0  # views the workers made
        self.model_s = 0.0
        self.scored = 0  # views the model scored
        self.batches = 0
        if self.active:
            self._set(1)

    def _set(self, threads: int) -> None:
        self.threads = threads
        torch.set_num_threads(threads)

    @property
    def settling(self) -> bool:
        return self.active and self.batches < self.settle_batches

    def on_chunk(self, chunk: Dict[str, Any]) -> None:
        """A chunk from a worker, with what it cost there (``WindowDataset``'s ``decode_s``)."""
        if "decode_s" in chunk and "rows" in chunk:
            self.on_decoded(float(chunk["decode_s"]), len(chunk["rows"]))

    def on_decoded(self, cpu_seconds: float, views: int) -> None:
        """``views`` decoded for the model, at this many CPU seconds."""
        if self.settling:
            self.decode_s += cpu_seconds
            self.decoded += views

    def on_batch(self, cpu_seconds: float, views: int) -> None:
        """A batch the model scored, with the CPU seconds this process spent on it."""
        if not self.settling:
            return
        self.model_s += cpu_seconds
        self.scored += views
        self.batches += 1
        if self.batches == self.settle_batches:
            self._set(self.split())

    def split(self) -> int:
        """The model's threads, from the costs seen so far."""
        if not self.scored:
            return self.threads
        model = self.model_s / self.scored
        decode = self.decode_s / self.decoded if self.decoded else 0.0
        if model + decode <= 0:
            return self.cores
        decoding_cores = min(float(self.workers), self.cores * decode / (model + decode))
        return max(1, min(self.cores, round(self.cores - decoding_cores)))

    def restore(self) -> None:
        if self.active and torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)
