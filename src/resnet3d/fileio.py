"""Atomic writes: a temporary file beside the target, then a rename.

An interrupted run never leaves a half-written file under the final name, and a reader never sees
one. Every file resnet3d writes for the user goes through here.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Iterable, Iterator, List, Set, Tuple, Union

PathLike = Union[str, os.PathLike]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe mid-run.
_UMASK = _current_umask()


def _final_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: an existing file's, else 0o666 minus the
    umask (mkstemp's temporary files are 0o600, which would hide results from the user's group)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


# what ``atomic_open`` adds to a file's name X for its temporary file, ``.X<TEMPORARY_SUFFIX>``
# (mkstemp's 8 random characters): how the removers of what killed writes left know their own
TEMPORARY_SUFFIX = r"\.[a-z0-9_]{8}\.tmp"


def remove_leftovers(paths: Iterable[Path], unit: str = "KiB") -> List[str]:
    """Remove ``paths`` (temporary files killed writes left, found by the caller under its run's
    lock); "name (size unit)" of each removed, in their order. One that cannot be removed stays."""
    scale = {"KiB": 2**10, "MiB": 2**20}[unit]
    removed = []
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed.append(f"{path.name} ({size / scale:.1f} {unit})")
    return removed


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _cannot_write(path, error) from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _final_mode(path))
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and (error.filename in (tmp, str(path))
                                           or error.errno in (errno.ENOSPC, errno.EDQUOT)):  # the write failed
            raise _cannot_write(path, error) from None
        raise


def _cannot_write(path: Path, error: OSError) -> Exception:
    """A UserError naming the file the user asked for (not our temporary file beside it)."""
    from resnet3d.errors import UserError, describe_os_error

    return UserError(f"cannot write {describe_os_error(error, path)}")


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = None) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=indent)


class _WriteErrorRecorder:
    """A binary handle that remembers the OSError of a failed write.

    torch.save reports a full disk as "RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos ..."; the OSError (ENOSPC) it swallowed is kept here to be named instead.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        try:
            self._handle.flush()
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:  # tell, seek, fileno...: the handle's own
        return getattr(self._handle, name)


def atomic_save(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Atomically write binary content produced by ``write(handle)`` (e.g. ``torch.save``)."""
    with atomic_open(path, "wb") as handle:
        recorder = _WriteErrorRecorder(handle)
        try:
            write(recorder)  # type: ignore[arg-type]
        except Exception:
            if recorder.error is not None:  # (the temporary file is removed on the way out)
                raise _cannot_write(Path(path), recorder.error) from None
            raise


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    import torch

    atomic_save(path, lambda handle: torch.save(obj, handle))


def refuse_existing(path: PathLike, what: str, overwrite: bool) -> None:
    """No user file is replaced without a flag: an existing ``path`` is one line naming it and
    ``--overwrite``, unless ``overwrite`` says the user asked for it. Call before any work is
    written, so that a refused run leaves nothing behind."""
    from resnet3d.errors import UserError

    if os.path.isdir(path):  # (--overwrite would not make a file of it: the write failed after the work)
        raise UserError(f"{what} {path} is a folder: give a file's name (inside it, if it is to go there)")
    if not overwrite and os.path.lexists(path):
        raise UserError(f"{what} {path} already exists: pass --overwrite to replace it, or choose another name")


def require_folder(path: PathLike, what: str, fix: str = "") -> None:
    """``path`` must be a folder: one line naming ``what`` it is for when it is missing or is a
    file (a file given where the command wants its folder was said to "not exist"); ``fix``, when
    given, follows after a semicolon."""
    if os.path.isdir(path):
        return
    from resnet3d.errors import UserError

    problem = "is a file, not a folder" if os.path.exists(path) else "does not exist"
    raise UserError(f"{what} {path} {problem}" + (f"; {fix}" if fix else ""))


def _repeated_key_hook(conflicting: List[str], repeated: List[str]) -> Callable[[List[Tuple[str, Any]]], dict]:
    """A ``json`` object_pairs_hook that builds the same dict ``json`` would (the last value of a
    key wins) and lists keys given more than once in one object: in ``conflicting`` when their
    values differ (the file holds two things under one name, and which one is meant is unknown),
    else in ``repeated``."""

    def hook(pairs: List[Tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):  # rare: the cheap test first
            first: dict = {}
            for key, value in pairs:
                if key not in first:
                    first[key] = value
                elif first[key] != value:
                    if key not in conflicting:
                        conflicting.append(key)
                elif key not in repeated and key not in conflicting:
                    repeated.append(key)
        return obj

    return hook


def _key_list(keys: List[str]) -> str:
    shown = ", ".join(repr(key) for key in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


_warned_repeats: Set[Tuple[str, Tuple[str, ...]]] = set()


def read_user_json(path: PathLike, what: str) -> Any:
    """Parse a JSON file the user gave us; a missing or broken file is a UserError naming it.

    ``what`` says what the file is for ("annotation", "results"), so the message tells which
    argument to fix; a syntax error names the line and column. A UTF-8 byte-order mark (Windows
    Notepad writes one) is skipped. A key given twice in one object with different values (two
    database entries under one video id), which ``json`` would silently resolve to the last, is
    a UserError naming the keys; the same key and value twice is kept once, with a warning.
    """
    conflicting: List[str] = []
    repeated: List[str] = []
    try:
        with open(path, "r", encoding="utf-8-sig") as handle:
            data = json.load(handle, object_pairs_hook=_repeated_key_hook(conflicting, repeated))
    except FileNotFoundError:
        from resnet3d.errors import UserError

        raise UserError(f"{what} {path}: no such file") from None
    except OSError as error:
        from resnet3d.errors import UserError

        raise UserError(f"{what} {path}: cannot read it ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        from resnet3d.errors import UserError

        where = f"line {error.lineno} column {error.colno}: {error.msg}" if isinstance(error, json.JSONDecodeError) else str(error)
        raise UserError(f"{what} {path}: not valid JSON ({where})") from None
    if conflicting:
        from resnet3d.errors import UserError

        raise UserError(f"{what} {path}: key{'s' if len(conflicting) > 1 else ''} {_key_list(conflicting)} "
                        f"appear{'' if len(conflicting) > 1 else 's'} more than once in one object, with different "
                        "values (JSON readers keep only the last, silently): keep one entry per key, or rename the others")
    warning_key = (os.path.abspath(path), tuple(repeated))
    if repeated and warning_key not in _warned_repeats:
        # once per process: a run reads its annotation once per subset (training, validation)
        _warned_repeats.add(warning_key)
        import logging

        logging.getLogger("resnet3d").warning(
            "%s %s: key%s %s appear%s twice or more in one object with the same value; read once",
            what, path, "s" if len(repeated) > 1 else "", _key_list(repeated), "" if len(repeated) > 1 else "s")
    return data
