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
import socket
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from resnet3d.engine.run_lock import same_file_still_there
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
    # done, but frames of them lost to corrupt data: (video path, frames lost, frames written)
    damaged: List[Tuple[str, int, int]] = field(default_factory=list)

    def add(self, job: VideoJob, outcome: Outcome) -> None:
        if outcome.status == "done":
            self.done += 1
            self.frames += outcome.frames
            if outcome.lost:
                self.damaged.append((str(job.video), outcome.lost, outcome.frames))
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
        if self.damaged:
            lost = sum(n for _, n, _ in self.damaged)
            text += (f"; {lost} frame{'' if lost == 1 else 's'} of {len(self.damaged)} "
                     f"video{'' if len(self.damaged) == 1 else 's'} lost to corrupt data (named above)")
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
    """One ``prepare frames`` per FRAME_DIR at a time: two would redo each other's videos.

    The lock is an flock on ``FRAME_DIR/.resnet3d-prepare.lock``; the kernel drops it when its
    holder dies, however it dies. The file is removed when the run ends, so that a finished
    FRAME_DIR holds only frames. Removing a lock file races with a process taking it: B opens the
    file, A removes it and unlocks, B locks the removed file while C creates a new one and locks
    that, and both run. So the holder removes the file while it still holds the lock, and a
    process that got the lock checks that the file it locked is still the one under that name;
    if not (a finishing holder removed it meanwhile), it opens the name again. Whoever holds the
    lock on the file that the name points to is therefore the only holder.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path = frame_dir / LOCK_FILE
    handle: Optional[IO[str]]
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(handle)
            handle.close()
            raise UserError(
                f"another 'resnet3d prepare frames' is writing into {frame_dir} ({holder}; lock {path}); "
                "wait for it to finish or stop it"
            ) from None
        except OSError as error:  # a file system without locks (some network mounts)
            handle.close()
            print(f"resnet3d prepare: warning: cannot lock {path} ({error.strerror}): a second "
                  "'prepare frames' into this folder at the same time would not be noticed", file=sys.stderr)
            handle = None
            break
        if same_file_still_there(handle, path):
            break
        handle.close()  # the previous holder removed it between our open and our lock
    if handle is None:
        with contextlib.suppress(OSError):
            path.unlink()  # the empty file open() made; nobody can hold a lock on it
        yield
        return
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding the lock (see above)
        handle.close()  # closing drops the lock


def _lock_holder(handle: IO[str]) -> str:
    """"process <pid> on <host>", as the holder wrote it into the lock file."""
    try:
        handle.seek(0)
        pid, host = handle.read().split()
    except (OSError, ValueError):
        return "it is starting"
    return f"process {pid} on {host}"


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


def damaged_line(video: str, lost: int, written: int) -> str:
    """The line that names a video some of whose frames did not decode: a video that is done, but
    not whole, is never passed over in silence."""
    return (f"resnet3d prepare: {video}: {lost} frame{'' if lost == 1 else 's'} could not be decoded (corrupt "
            f"data); {written} frames written, a lost frame between two decoded ones filled with one of them as "
            "ffmpeg fills it, so the frames after it keep their numbers")


def write_failures(
    frame_dir: Path, failures: Sequence[Tuple[str, str]], settled: Optional[Callable[[str], bool]] = None
) -> Optional[Path]:
    """``prepare_failures.tsv`` (video path, reason): this run's failures, plus the rows of an
    earlier list that this run did not settle (``settled(video)`` False; without ``settled`` it
    settles them all). A data set is often extracted into one FRAME_DIR by one run per split
    folder (``train/``, then ``val/``): the second run's clean pass removed the first run's list.
    The file is removed when no row is left. Returns the path when this run had failures."""
    path = frame_dir / FAILURES_FILE
    kept = [row for row in _read_failures(path) if settled is not None and not settled(row[0])]
    rows = sorted(set(kept) | {(video, reason) for video, reason in failures})
    if not rows:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    def clean(text: str) -> str:
        return " ".join(text.split("\t")).replace("\n", " ").replace("\r", " ")

    lines = ["video\treason"] + [f"{clean(video)}\t{clean(reason)}" for video, reason in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path if failures else None


def _settled_by(attempted: Iterable[str], video_dir: Optional[Path]) -> Callable[[str], bool]:
    """Which rows of an earlier failure list a run settles: those of the videos it attempted, and,
    when it went through the whole of ``video_dir`` (not interrupted), those of videos under it
    that are gone. Rows of other video folders stay, and so do those of videos this run passed
    over (with --annotation, one split's JSON leaves out videos that another split uses)."""
    absolute = {os.path.abspath(video) for video in attempted}
    root = None if video_dir is None else os.path.abspath(video_dir).rstrip(os.sep) + os.sep

    def settled(video: str) -> bool:
        path = os.path.abspath(video)
        return path in absolute or (root is not None and path.startswith(root) and not os.path.lexists(path))

    return settled


def _read_failures(path: Path) -> List[Tuple[str, str]]:
    """The rows of an earlier failure list; none when there is none (or it is unreadable)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [(video, reason) for video, _, reason in (line.partition("\t") for line in lines[1:]) if reason]


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
        seen: List[str] = [str(video) for video, _ in videos.duplicates]  # the videos this run got to
        try:
            for job, outcome in run_jobs(videos.jobs, frame_dir, options, workers, extract):
                seen.append(str(job.video))
                summary.add(job, outcome)
                if outcome.status == "done" and outcome.lost:
                    bar.write(damaged_line(str(job.video), outcome.lost, outcome.frames))
                bar.update(done=summary.done, skipped=summary.skipped, failed=summary.failed)
            completed = True
        finally:
            summary.seconds = time.monotonic() - start
            bar.close()
            if completed or summary.failures:
                settled = _settled_by(seen, video_dir if completed else None)
                summary.failures_file = write_failures(frame_dir, summary.failures, settled)
    return summary
