"""One training run per result folder at a time.

Two runs writing to one result folder (a job submitted twice, a retry started while the first
attempt still runs, two shells) interleave their logs, replace each other's checkpoints, and a
later ``--resume auto`` continues from whichever wrote last. The training run's rank 0 holds an
advisory lock on a file in the folder for as long as it trains; a second run is refused at once
with the holder's process, machine and start time. The kernel drops the lock when its holder
dies, however it dies, so a killed run never leaves the folder locked.

Runs that only validate or test take no lock: evaluating a checkpoint while its run goes on is
fine. A file system without locks (some network mounts) gets a warning and no lock.
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
from typing import IO, List, Optional, Set

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


class RunLock:
    def __init__(self, result_path: Path) -> None:
        self.result_path = Path(result_path)
        self.path = self.result_path / LOCK_NAME
        self._handle: Optional[IO[str]] = None
        self._created: List[Path] = []

    def acquire(self) -> None:
        """Hold the folder's lock, or raise a UserError naming the run that holds it."""
        if fcntl is None:
            return
        # the folders this run creates (the result folder and any missing parents), innermost first
        self._created = [folder for folder in (self.result_path, *self.result_path.parents) if not folder.exists()]
        try:
            self.result_path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the result folder {describe_os_error(error, self.result_path)}") from None
        while self._handle is None:
            handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                raise UserError(f"{self.result_path} is in use by another training run ({holder}): two runs in one "
                                "folder would replace each other's checkpoints and logs; wait for it to finish (or "
                                "stop it), or choose another --result_path") from None
            except OSError as error:  # no locks on this file system
                handle.close()
                log.warning("cannot lock %s (%s): a second run started into this folder would not be noticed",
                            self.path, error.strerror)
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
