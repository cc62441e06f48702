"""Reading the data sets' official CSV and TXT files with line numbers, so that every error can
say ``file: line N: what is wrong, and the fix``.

Line ends may be LF or CRLF (the UCF-101 lists come with CRLF), a UTF-8 byte-order mark is
ignored, and blank lines are skipped.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

from resnet3d.errors import UserError


def _open_text(path: Path):
    try:
        # utf-8-sig drops a byte-order mark; newline="" lets csv see CRLF inside quoted fields
        return open(path, "r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a file") from None


def text_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, text without its line end) for every non-blank line."""
    with _open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield number, text
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def csv_rows(path: Path, required: Sequence[str]) -> Iterator[Tuple[int, Dict[str, str]]]:
    """(line number, row) for every row of a CSV with a header line holding ``required``."""
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        try:
            header: List[str] = [name.strip() for name in (reader.fieldnames or [])]
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        missing = [name for name in required if name not in header]
        if missing:
            raise UserError(
                f"{path}: line 1: missing column(s) {', '.join(repr(m) for m in missing)} "
                f"(the header has {', '.join(repr(h) for h in header) or 'nothing'}); "
                f"the file needs a header line with {','.join(required)}"
            )
        reader.fieldnames = header
        line_end = reader.line_num
        try:
            for row in reader:
                number = line_end + 1  # the line where this row starts
                line_end = reader.line_num
                if not any((value or "").strip() for value in row.values()):
                    continue
                for name in required:
                    if row.get(name) is None:
                        raise UserError(f"{path}: line {number}: too few fields (no '{name}')")
                yield number, {k: (v or "").strip() for k, v in row.items() if k is not None}
        except csv.Error as error:
            raise UserError(f"{path}: line {reader.line_num}: {error}") from None
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def csv_records(path: Path) -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) for every non-blank row of a CSV without a header line (Moments in
    Time's), fields stripped of surrounding spaces; quoted fields may hold commas."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        line_end = 0
        try:
            for fields in reader:
                number = line_end + 1  # the line where this row starts
                line_end = reader.line_num
                fields = [field.strip() for field in fields]
                if any(fields):
                    yield number, fields
        except csv.Error as error:
            raise UserError(f"{path}: line {reader.line_num}: {error}") from None
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def where(path: Path, line: int) -> str:
    return f"{path}: line {line}"
