"""The one exception type that reaches the user as a message instead of a traceback."""
from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input or a bad request: the message names the file, the key and the fix.

    The CLI prints it as one line and exits with status 2. Raise it for anything the user can
    correct; let genuine bugs raise ordinary exceptions so they keep their traceback.
    """


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
