"""The one exception type that reaches the user as a message instead of a traceback."""
from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input or a bad request: the message names the file, the key and the fix.

    The CLI prints it as one line and exits with status 2. Raise it for anything the user can
    correct; let genuine bugs raise ordinary exceptions so they keep their traceback.
    """


class AlreadySaid(Exception):
    """A failure that every process of a run has learned of and whose lines are said already (by
    each machine's first process, ``distributed.say_failures``): the command exits with ``status``
    and prints nothing more."""

    def __init__(self, status: int = 1) -> None:
        super().__init__(status)
        self.status = status


def missing_package(what: str, module: str, extra: str) -> UserError:
    """The one wording for an optional package that is not installed, wherever it is found out:
    '--tensorboard needs tensorboard, which is not installed: pip install "resnet3d[tensorboard]"'."""
    return UserError(f'{what} needs {module}, which is not installed: pip install "resnet3d[{extra}]"')


_WORKER_WRAPPER = "Caught UserError in DataLoader worker"


def user_error_text(error: BaseException) -> str:
    """A UserError's one line, also when torch re-raised it from a loader worker wrapped in the
    worker's traceback text ("Caught UserError in DataLoader worker process 0. Original Traceback
    ... resnet3d.errors.UserError: <the line>"), which would bury the line under a stack trace."""
    text = str(error)
    line = f"{UserError.__module__}.{UserError.__qualname__}: "
    if text.startswith(_WORKER_WRAPPER) and line in text:
        return text.rsplit(line, 1)[1].strip()
    return text


_OS_HINTS = {
    errno.EEXIST: "a file of that name is in the way of a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder of that name is in the way of the file",
    errno.EACCES: "no permission: choose another path or change its permissions",
    errno.EPERM: "not permitted: choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "the disk is full: free space or choose another path",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another path",
    errno.EFBIG: "larger than this process may write: raise the file size limit (ulimit -f) or choose another path",
}


def describe_os_error(error: OSError, path: object = None) -> str:
    """'results/x.json: Permission denied (no permission: ...)' for an OSError of the file system."""
    where = path if path is not None else error.filename
    if path is None and error.filename2 is not None:
        where = f"{error.filename} -> {error.filename2}"
    reason = error.strerror or type(error).__name__
    hint = _OS_HINTS.get(error.errno)
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")
