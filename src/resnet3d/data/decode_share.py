"""``decode_device "mixed"``: the loader workers and the GPU decode JPEGs side by side.

With "cpu" the workers decode every clip; with "cuda" the GPU does (the workers only read bytes).
Each has a ceiling: the workers' is cores x clips per core, the GPU's is its JPEG decoder's rate
(on an H200 about 13,000 240p frames/s, 800 clips of 16 frames; docs/benchmarks.md). "mixed" hands
a share of the batches (recognition: of the chunks) to the GPU as JPEG bytes and has the workers
decode the rest, so that the two ceilings add up: on a machine with few cores per GPU, more clips
per second than either alone (the design; ``scripts/gpu_session.sh 5`` measures it on a GPU).

The share is found while the loop runs, from where the main thread waits (``DeviceFeed.batches``,
``predict.run_recognition``):

- waiting on the loader (the workers fall behind): more batches go to the GPU;
- waiting on a batch being decoded on the GPU (the decoding thread falls behind): fewer do;
- neither (the step itself is the bottleneck): fewer do as well. The workers have time to spare
  then, while decoding on the GPU may take time from the step (its kernels share the GPU), so the
  share settles where the workers only just keep up;
- whatever the waits say, when the loop runs slower (by more than ``WORSE``) than it last ran at
  the best share seen, the share goes back there: decoding on the GPU can slow the step, and on a
  machine short of cores the workers and the decoding thread slow each other, which the waits do
  not show. The best share's rate is measured again each time the share is there, so a run that
  slows down as a whole (harder data, a busy machine) does not keep pulling back to a stale figure.

A change shows only in the batches the workers start after it, behind the ``lag`` batches the
loader already holds, so after each change the controller lets ``lag`` batches pass before it
measures again, and each change in the other direction halves the step (a bisection that settles
within a few steps of ``MIN_STEP``).

The share lives in shared memory: the main process sets it, each worker reads it for every batch
it starts and, with a credit of its own, hands every 1/share-th batch to the GPU.

Which batches the GPU decodes depends on timing, so a mixed run's pixels are not bit-for-bit
reproducible (nvJPEG's full-size decode and the workers' reduced-scale one differ by rounding,
docs/data.md "Pixels"); every random draw (frames, crop box, flip, jitter) still comes from
``(seed, epoch, item)`` as in the other modes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

INITIAL_SHARE = 0.25  # a start below a half: with many cores the workers alone usually suffice
INITIAL_STEP = 0.1
MIN_STEP = 0.02
WAIT_THRESHOLD = 0.02  # waits under 2% of the loop's time are noise, not a bottleneck
MIN_WINDOW = 8  # batches measured before a decision, at the least
WORSE = 0.05  # slower than the best share's rate by more than this: back to the best share


@dataclass
class _Window:
    """The main thread's waits over the batches since the last decision."""

    batches: int = 0
    seconds: float = 0.0
    loader_wait: float = 0.0
    decode_wait: float = 0.0


@dataclass
class DecodeShare:
    """The share of batches whose JPEGs the GPU decodes; see the module docstring."""

    initial: float = INITIAL_SHARE
    lag: int = 0  # batches the loader holds ahead of the loop (prefetch x workers); set by build_loader
    history: List[float] = field(default_factory=list)  # every share decided, for logs and tests

    def __post_init__(self) -> None:
        self._value = torch.zeros(1, dtype=torch.float64).share_memory_()
        self.share = self.initial
        self._credit = 0.0
        self._step = INITIAL_STEP
        self._direction = 0
        self._settling = 0
        self._window = _Window()
        self._best: Optional[Tuple[float, float]] = None  # (share, batches/s) of the fastest window

    @property
    def share(self) -> float:
        return float(self._value[0])

    @share.setter
    def share(self, value: float) -> None:
        """Set the share by hand (the controller then goes on from there)."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the GPU share must be in [0, 1] (got {value})")
        self._value[0] = float(value)

    # -- in the workers ---------------------------------------------------------------------------
    def take(self) -> bool:
        """Whether the next batch (chunk) this process starts goes to the GPU as JPEG bytes."""
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False

    # -- in the main process ----------------------------------------------------------------------
    def observe(self, loader_wait: float, decode_wait: float, seconds: float) -> None:
        """One batch of the loop: the seconds it waited for the loader and for the GPU decoding,
        out of ``seconds`` since the previous batch."""
        if self._settling > 0:
            self._settling -= 1
            return
        window = self._window
        window.batches += 1
        window.seconds += max(seconds, 0.0)
        window.loader_wait += max(loader_wait, 0.0)
        window.decode_wait += max(decode_wait, 0.0)
        if window.batches < max(MIN_WINDOW, self.lag) or window.seconds <= 0:
            return
        rate = window.batches / window.seconds
        loader_share = window.loader_wait / window.seconds
        decode_share = window.decode_wait / window.seconds
        self._window = _Window()
        best = self._best
        if best is None or rate > best[1] or self.share == best[0]:
            self._best = (self.share, rate)  # at the best share: its rate as it is now
        elif rate < (1.0 - WORSE) * best[1]:
            self._back_to(best[0])
            return
        if loader_share > WAIT_THRESHOLD and loader_share >= decode_share:
            self._move(+1)
        else:  # the GPU's decoding holds the loop up, or nothing does and the workers can take more
            self._move(-1)

    def _move(self, direction: int) -> None:
        if self._direction and direction != self._direction:
            self._step = max(MIN_STEP, self._step / 2)
        self._direction = direction
        new = min(1.0, max(0.0, self.share + direction * self._step))
        if new != self.share:
            self._set(new)

    def _back_to(self, best: float) -> None:
        """The loop got slower than at ``best``: back there, and the next change (if the waits
        ask for one) goes half as far."""
        self._step = max(MIN_STEP, self._step / 2)
        self._direction = 0
        self._set(best)

    def _set(self, new: float) -> None:
        self.share = round(new, 4)  # steps of 0.1 halved: 4 places hold them, without float dust
        self.history.append(self.share)
        self._settling = self.lag


def share_for(decode_device: str) -> Optional[DecodeShare]:
    """A dataset's share: a fresh one for decode_device "mixed"; None for "cpu" and "cuda",
    where every batch is of one kind."""
    return DecodeShare() if decode_device == "mixed" else None


def as_jpeg_bytes(share: Optional[DecodeShare], decode_device: str) -> bool:
    """Whether the next batch (recognition: chunk) a dataset reads is handed over as JPEG bytes:
    never with "cpu", always with "cuda", as ``share`` decides with "mixed"."""
    return share.take() if share is not None else decode_device == "cuda"
