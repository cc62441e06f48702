"""One run at a time on what it writes: training's result folder, recognition's results file.

Two runs writing to one result folder (a job submitted twice, a retry started while the first
attempt still runs, two shells) interleave their logs, replace each other's checkpoints, and a
later ``--resume auto`` continues from whichever wrote last. Two runs recognising into one results
file replace each other's saves and shares. The run's rank 0 holds an advisory lock on a hidden
file beside what it writes (``PathLock``) for as long as it runs; a second run is refused at once
with the holder's process, machine and start time. The kernel drops the lock when its holder
dies, however it dies, so a killed run never leaves anything locked.

Training locks its whole folder (``RunLock``); recognition only its results file
(``ResultsLock``): recognising a checkpoint while its run goes on training into the same folder is
fine, and so is validating. A file system without locks (some network mounts) gets a warning and
no lock.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Callable, List, Optional, Set

from resnet3d.errors import UserError, describe_os_error

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("resnet3d.engine")

LOCK_NAME = ".resnet3d-run.lock"

# The descriptors of the locks this process holds. A flock belongs to the open file, which a
# fork shares: loader workers forked while the trainer holds the lock held it with it, so a
# trainer killed by SIGKILL left its folder locked until its orphaned workers noticed (seconds)
# and a retry started at once was refused. A forked child points its copy at /dev/null instead
# (the descriptor number stays valid for the copied file object, which never closes it).
_held_descriptors: Set[int] = set()


def _drop_inherited_locks() -> None:
    if not _held_descriptors:
        return
    nothing = os.open(os.devnull, os.O_RDONLY)
    try:
        for descriptor in _held_descriptors:
            with contextlib.suppress(OSError):
                os.dup2(nothing, descriptor)
    finally:
        os.close(nothing)
    _held_descriptors.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class PathLock:
    """An advisory lock on the hidden file ``path``, held by one process at a time. ``in_use(holder)``
    is the line that refuses a second run (``holder``: its process, machine, start and command);
    ``unnoticed`` ends the warning where the file system has no locks; ``folder`` names the folder
    the lock file lies in, which is created with its missing parents and removed again at release
    while empty (a run refused at set-up leaves no folder behind)."""

    def __init__(self, path: Path, in_use: Callable[[str], str], unnoticed: str, folder: str) -> None:
        self.path = Path(path)
        self._in_use = in_use
        self._unnoticed = unnoticed
        self._folder = folder
        self._handle: Optional[IO[str]] = None
        self._created: List[Path] = []

    def acquire(self) -> None:
        """Hold the lock, or raise a UserError naming the run that holds it."""
        if fcntl is None:
            return
        where = self.path.parent
        # the folders this run creates (the lock's folder and any missing parents), innermost first
        self._created = [folder for folder in (where, *where.parents) if not folder.exists()]
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create {self._folder} {describe_os_error(error, where)}") from None
        while self._handle is None:
            handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                raise UserError(self._in_use(holder)) from None
            except OSError as error:  # no locks on this file system
                handle.close()
                log.warning("cannot lock %s (%s): %s", self.path, error.strerror, self._unnoticed)
                return
            if same_file_still_there(handle, self.path):
                self._handle = handle
                _held_descriptors.add(handle.fileno())
            else:  # the previous holder removed it between our open and our lock: lock the new one
                handle.close()
        self._handle.seek(0)
        self._handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "command": " ".join(sys.argv), "cwd": os.getcwd()}, self._handle)
        self._handle.flush()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (not where the file system has no locks)."""
        return self._handle is not None

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it (see same_file_still_there)
        _held_descriptors.discard(self._handle.fileno())
        self._handle.close()
        self._handle = None
        for folder in self._created:
            try:
                folder.rmdir()  # only when empty: a run refused at set-up leaves no folder behind
            except OSError:
                break


class RunLock(PathLock):
    """Training's lock: one training run per result folder."""

    def __init__(self, result_path: Path) -> None:
        self.result_path = Path(result_path)
        super().__init__(
            self.result_path / LOCK_NAME,
            lambda holder: (f"{self.result_path} is in use by another training run ({holder}): two runs in one "
                            "folder would replace each other's checkpoints and logs; wait for it to finish (or "
                            "stop it), or choose another --result_path"),
            "a second run started into this folder would not be noticed", "the result folder")


class ResultsLock(PathLock):
    """Recognition's lock: one run per results file, on ``.<name>.lock`` beside it (the folder
    stays open to other runs: a training run, a recognition into another file)."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        super().__init__(
            self.output.with_name(f".{self.output.name}.lock"),
            lambda holder: (f"{self.output} is in use by another recognition run ({holder}): two runs writing "
                            "one results file would replace each other's results; wait for it to finish (or "
                            "stop it), or choose another --output or --result_path"),
            "a second run started on this results file would not be noticed", "the folder of the results file")


def same_file_still_there(handle: IO[str], path: Path) -> bool:
    """Whether ``path`` still names the file ``handle`` holds open (a lock taken on a file that its
    finishing holder has just removed locks nothing)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _read_holder(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        holder = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "it is starting"
    where = f" (in {holder['cwd']})" if holder.get("cwd") else ""  # its command's relative paths start there
    return (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}: "
            f"{holder.get('command')}{where}")
