"""One process's share of a recognition run: its chunks of views through the model, each video's
result into the results writer as its last view is scored.

``run_recognition`` (``resnet3d.engine.predict``) sets the run up (checks, the results file's
lock, what an earlier run left, the model and the loader), hands this class the chunks, and ends
the run (the save, the shares' merge, the summary). Here: chunks are batched across videos
(``scoring.RowBatcher``), scored with one batch in flight (``scoring.Scorer``), tallied per video
(``scoring.Tally``), and on the CPU the model's threads are set beside the decoding workers from
the first batches' costs (``scoring.CpuThreadSplit``).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from resnet3d.data.clip import UnreadableVideo
from resnet3d.engine.feed import Waits
from resnet3d.engine.scoring import CpuThreadSplit, RowBatcher, Scorer, Tally, result_entry
from resnet3d.progress import Progress

log = logging.getLogger("resnet3d.predict")

Ready = List[Tuple[torch.Tensor, Dict[str, torch.Tensor]]]  # scored batches: (scores, their views' meta)


class ShareScoring:
    """Scores ``units`` (this process's videos, ``windows.group_units``) into ``writer``.

    After ``run`` (or its error): ``counts`` (videos scored, unreadable, frames replaced),
    ``first_chunk`` (when the workers' first chunk came: their start-up), ``waited`` (seconds
    blocked on the workers, and on decoding on the device, after it), ``threads`` (the CPU split,
    to restore), ``incomplete`` (videos with views still unscored)."""

    def __init__(self, units: Sequence[Any], labels: Sequence[str], options: Any, writer: Any, scorer: Scorer,
                 device: torch.device, num_workers: int, progress: Progress, output: Path) -> None:
        self.units, self.labels, self.options = units, labels, options
        self.writer, self.scorer, self.device = writer, scorer, device
        self.progress, self.output = progress, output
        self.tally = Tally(keep_windows=not options.average)
        self.batcher = RowBatcher(options.batch_size, pin_memory=device.type == "cuda")  # device rows stay there
        self.threads = CpuThreadSplit(device, num_workers)
        self.counts = {"videos": 0, "errors": 0, "bad_frames": 0}
        self.first_chunk: Optional[float] = None
        self.waited = 0.0
        self._failed: set = set()  # units whose JPEGs did not decode here: their later chunks are dropped

    @property
    def incomplete(self) -> int:
        return len(self.tally.units)

    def run(self, chunks: Iterable[Tuple[dict, Optional[Future], Waits]]) -> None:
        """Score every chunk of ``chunks`` (``predict._decoded_ahead``: each with the decoding of
        its JPEGs on the device, when the workers did not decode it), then the last batch."""
        for chunk, decoding, waits in chunks:
            if self.first_chunk is None:
                self.first_chunk = time.monotonic()  # the wait for the first chunk is the start-up: first_chunk_s
            else:
                self.waited += waits.loader + waits.decode
            self._take(chunk, decoding)
        for rows, meta in self.batcher.batches(flush=True):
            self._score(rows, meta)
        self._book(self.scorer.drain())

    def keep_the_batch_in_flight(self) -> None:
        """After an error: the batch in flight was scored before it (a later batch failed), so its
        videos are kept too, unless the error's cause (a broken device) fails this as well."""
        try:
            self._book(self.scorer.drain())
        except Exception:
            pass  # what was booked before stays

    def _take(self, chunk: dict, decoding: Optional[Future]) -> None:
        unit = int(chunk["unit"])
        if unit in self._failed:
            return
        if "error" in chunk:
            self._finish(self.tally.on_error(unit, chunk["error"]))
            return
        if decoding is not None:
            try:
                rows, n_bad = decoding.result()  # done: _decoded_ahead waited for it
            except UnreadableVideo as error:
                self._failed.add(unit)
                self._finish(self.tally.on_error(unit, str(error)))
                return
            chunk = {**chunk, "rows": rows, "bad_frames": int(chunk["bad_frames"]) + n_bad}
        self.tally.on_chunk(chunk)
        self.threads.on_chunk(chunk)
        rows = chunk["rows"]
        if self.device.type == "cuda" and rows.device.type == "cpu":  # pinned by the loader: a DMA, no host copy here
            rows = rows.to(self.device, non_blocking=True)
        self.batcher.add(unit, rows, chunk["window"], chunk["segment"])
        for rows, meta in self.batcher.batches():
            self._score(rows, meta)

    def _score(self, rows: torch.Tensor, meta: Dict[str, torch.Tensor]) -> None:
        if not self.threads.settling:
            self._book(self.scorer.submit(rows, meta))
            return
        began = time.process_time()
        ready = self.scorer.submit(rows, meta)
        self.threads.on_batch(time.process_time() - began, len(rows))
        self._book(ready)

    def _book(self, ready: Ready) -> None:
        for scores, meta in ready:
            self._finish(self.tally.on_scores(scores, meta))

    def _finish(self, unit_numbers: List[int]) -> None:
        """The videos whose last view was scored (or that failed): into the writer."""
        options, counts = self.options, self.counts
        for number in unit_numbers:
            unit_state = self.tally.pop(number)
            video_id = self.units[number].video_id
            counts["bad_frames"] += unit_state.bad_frames
            if unit_state.error is not None:
                counts["errors"] += 1
                log.warning("%s: %s; listed under 'errors' in %s", video_id, unit_state.error, self.output)
                self.writer.add_error(video_id, unit_state.error)
            else:
                counts["videos"] += 1
                self.writer.add(video_id, result_entry(unit_state, self.labels, options.top_k, options.average))
            self.progress.update(1, errors=counts["errors"])


__all__ = ["ShareScoring"]
