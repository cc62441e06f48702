"""``resnet3d prepare frames``: every video of VIDEO_DIR into FRAME_DIR, in parallel, resumable.

Each video is one task for a process pool (one video per worker at a time, decoded in-process
with PyAV). Finished videos are skipped, failures are collected with their reason into
``FRAME_DIR/prepare_failures.tsv``, and a worker that dies (a decoder crash on a damaged file)
costs only its own video: the pool is rebuilt and the videos it held are retried one by one.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from resnet3d.engine.signals import children_start_deaf_to_stops
from resnet3d.errors import UserError
from resnet3d.fileio import atomic_write_text
from resnet3d.hardware import usable_cores
from resnet3d.prepare.extract import ExtractOptions, Outcome, extract_video
from resnet3d.prepare.videos import VideoJob, find_videos
from resnet3d.progress import Progress

FAILURES_FILE = "prepare_failures.tsv"
LOCK_FILE = ".resnet3d-prepare.lock"
CRASH_REASON = "the decoder crashed on this file (its worker process died)"

ExtractFn = Callable[[Path, Path, ExtractOptions], Outcome]


@dataclass
class Summary:
    layout: str = ""
    total: int = 0
    done: int = 0
    skipped: int = 0
    adopted: int = 0  # of skipped: finished by another tool, n_frames/fps added
    failed: int = 0
    frames: int = 0  # frames written by this run
    seconds: float = 0.0
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (video path, reason)
    ignored: int = 0  # videos outside the layout
    ignored_examples: List[str] = field(default_factory=list)
    missing: int = 0  # annotation entries without a video
    failures_file: Optional[Path] = None

    def add(self, job: VideoJob, outcome: Outcome) -> None:
        if outcome.status == "done":
            self.done += 1
            self.frames += outcome.frames
        elif outcome.status == "skipped":
            self.skipped += 1
            self.adopted += int(outcome.adopted)
        else:
            self.failed += 1
            self.failures.append((str(job.video), outcome.reason))

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.skipped} skipped", f"{self.failed} failed"]
        text = f"prepare frames: {self.total} video{'' if self.total == 1 else 's'}: " + ", ".join(parts)
        if self.adopted:
            text += f" ({self.adopted} of the skipped were finished by another tool; n_frames/fps added)"
        text += f"; {self.frames} frames written in {self.seconds:.1f} s"
        if self.ignored:
            where = "not in the annotation" if self.layout == "annotation" else f"outside the '{self.layout}' layout"
            text += (f"; {self.ignored} video{'' if self.ignored == 1 else 's'} {where} ignored "
                     f"(e.g. {', '.join(self.ignored_examples)})")
        if self.missing:
            text += (f"; {self.missing} annotated video{'' if self.missing == 1 else 's'} not found under the "
                     "video directory")
        if self.failures_file is not None:
            text += f"; failures listed in {self.failures_file}"
        return text


@contextlib.contextmanager
def exclusive_lock(frame_dir: Path) -> Iterator[None]:
    """One ``prepare frames`` per FRAME_DIR at a time: two would redo each other's videos."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path = frame_dir / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another 'resnet3d prepare frames' is writing into {frame_dir} (lock {path}); "
                "wait for it to finish or stop it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops them; no traceback per worker. They start
    with SIGINT and SIGTERM blocked (``_pool_pass`` submits inside ``children_start_deaf_to_stops``:
    a Ctrl-C while a spawned worker still imported printed its traceback); a signal that came
    meanwhile is delivered here, once the handler is in place."""
    import signal

    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def run_jobs(
    jobs: Sequence[VideoJob],
    frame_dir: Path,
    options: ExtractOptions,
    workers: int,
    extract: ExtractFn = extract_video,
) -> Iterator[Tuple[VideoJob, Outcome]]:
    """(job, outcome) for every job, in completion order."""
    if workers <= 1:
        for job in jobs:
            yield job, extract(job.video, frame_dir / job.output, options)
        return
    pending: Deque[VideoJob] = collections.deque(jobs)
    suspects: List[VideoJob] = []
    yield from _pool_pass(pending, frame_dir, options, workers, extract, suspects)
    # The videos a dead worker may have been holding: one at a time, so the culprit is known.
    for job in suspects:
        alone: Deque[VideoJob] = collections.deque([job])
        crashed: List[VideoJob] = []
        yield from _pool_pass(alone, frame_dir, options, 1, extract, crashed)
        if crashed:
            yield job, Outcome("failed", reason=CRASH_REASON)


def _pool_pass(
    pending: Deque[VideoJob],
    frame_dir: Path,
    options: ExtractOptions,
    workers: int,
    extract: ExtractFn,
    suspects: List[VideoJob],
) -> Iterator[Tuple[VideoJob, Outcome]]:
    """Run ``pending`` on a pool; if the pool breaks, its in-flight jobs go to ``suspects`` and
    a new pool takes the rest."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    while pending:
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_quiet_worker)
        in_flight: Dict[Future, VideoJob] = {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < 2 * workers:
                    job = pending.popleft()
                    try:
                        with children_start_deaf_to_stops():  # (a submit may start a worker)
                            in_flight[executor.submit(extract, job.video, frame_dir / job.output, options)] = job
                    except BrokenProcessPool:
                        pending.appendleft(job)
                        raise
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = in_flight.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        in_flight[future] = job
                        raise
                    yield job, outcome
        except BrokenProcessPool:
            suspects.extend(in_flight.values())
            executor.shutdown(wait=False, cancel_futures=True)
            continue
        except BaseException:
            # (Ctrl-C): shutdown() forgets the worker processes, so take them first
            processes = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
        executor.shutdown(wait=True)


def write_failures(frame_dir: Path, failures: Sequence[Tuple[str, str]]) -> Optional[Path]:
    """``prepare_failures.tsv`` (video path, reason) when anything failed; a stale one from an
    earlier run is removed when nothing did."""
    path = frame_dir / FAILURES_FILE
    if not failures:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    def clean(text: str) -> str:
        return " ".join(text.split("\t")).replace("\n", " ").replace("\r", " ")

    lines = ["video\treason"] + [f"{clean(video)}\t{clean(reason)}" for video, reason in sorted(failures)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def prepare_frames(
    video_dir: Path,
    frame_dir: Path,
    options: ExtractOptions,
    layout: Optional[str] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    stream=None,
    extract: ExtractFn = extract_video,
    annotation: Optional[Path] = None,
) -> Summary:
    """Extract every video of ``video_dir``; returns the summary (failures included)."""
    stream = sys.stderr if stream is None else stream
    videos = find_videos(video_dir, layout, annotation)
    workers = usable_cores() if workers is None or workers <= 0 else workers
    workers = min(workers, max(1, len(videos.jobs)))
    if options.threads <= 0:  # decoder threads: share the cores the workers leave free
        options = dataclasses.replace(options, threads=max(1, usable_cores() // workers))
    frame_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(
        layout=videos.layout,
        total=len(videos.jobs) + len(videos.duplicates),
        ignored=len(videos.ignored),
        ignored_examples=[str(path) for path in videos.ignored[:3]],
        missing=len(videos.missing),
    )
    for video, reason in videos.duplicates:
        summary.failed += 1
        summary.failures.append((str(video), reason))
    start = time.monotonic()
    with exclusive_lock(frame_dir):
        bar = Progress(total=len(videos.jobs), desc="prepare frames", unit="videos", stream=stream, enabled=progress)
        completed = False
        try:
            for job, outcome in run_jobs(videos.jobs, frame_dir, options, workers, extract):
                summary.add(job, outcome)
                bar.update(done=summary.done, skipped=summary.skipped, failed=summary.failed)
            completed = True
        finally:
            summary.seconds = time.monotonic() - start
            bar.close()
            # An interrupted run still lists what failed so far, but keeps an earlier list.
            if completed or summary.failures:
                summary.failures_file = write_failures(frame_dir, summary.failures)
    return summary
