"""Checks on where a command will write, made before any work: a run never ends by failing to
save what it computed, and never replaces one of its own inputs (``--overwrite`` or not)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

from resnet3d.errors import UserError

PathLike = Union[str, "os.PathLike[str]"]


def same_file(a: PathLike, b: PathLike) -> bool:
    """The same file, through links too; by name where either does not exist (yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): compare the names
        return Path(a).resolve() == Path(b).resolve()


def refuse_input_as_output(output: PathLike, flag: str, inputs: Iterable[Tuple[str, Optional[PathLike]]]) -> None:
    """``inputs``: (flag, path) pairs of what the command reads; an output naming one of them is
    refused, so that ``--overwrite`` cannot replace a checkpoint or an annotation with results."""
    for input_flag, path in inputs:
        if path and os.path.exists(path) and same_file(output, path):
            raise UserError(f"{flag} {output} is the file {input_flag} reads; choose another name")


def check_writable(output: PathLike, flag: str) -> None:
    """A file can be created where ``output`` will go: its folder exists or can be made, and a
    probe file is created there and removed at once. A folder at ``output`` is refused."""
    path = Path(output)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; name a file (e.g. {path / 'results.json'})")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"{flag} {path}: cannot write there ({reason}); choose another place") from None
