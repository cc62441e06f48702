"""The seed's learning-rate file (``lr.lua``): its ``opt.regimes`` table read into ``Regime`` rows.

Read without a Lua interpreter: ``parse_lr_lua`` understands the part of Lua those files use, and
its errors name the file and line. Where the file is looked for (``--lr_path``, else
``<result_path>/lr.lua``) and how the regimes meet the learning-rate flags is ``resnet3d.compat``'s business.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import List

from resnet3d.config import Regime
from resnet3d.errors import UserError


_TOKEN = re.compile(r"\s*(?:(?P<num>[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))"
                    r"|(?P<name>[A-Za-z_][A-Za-z_0-9.]*)|(?P<punct>[{},;=]))")


def _strip_lua_comments(text: str) -> str:
    """Blank out ``--`` and ``--[[ ]]`` comments, keeping every newline so line numbers hold."""
    out = []
    i = 0
    n = len(text)
    in_string = None
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == in_string:
                in_string = None
            i += 1
            continue
        if ch in "'\"":
            in_string = ch
            out.append(ch)
            i += 1
            continue
        if text.startswith("--", i):
            block = re.match(r"--\[(=*)\[", text[i:])
            if block:
                close = "]" + block.group(1) + "]"
                end = text.find(close, i + block.end())
                end = n if end < 0 else end + len(close)
            else:
                end = text.find("\n", i)
                end = n if end < 0 else end
            out.append("".join(c if c == "\n" else " " for c in text[i:end]))
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _lua_number(token: str) -> float:
    sign = -1.0 if token.startswith("-") else 1.0
    body = token.lstrip("+-")
    if body.lower().startswith("0x"):
        return sign * int(body, 16)
    return sign * float(body)


def parse_lr_lua(path: os.PathLike | str) -> List[Regime]:
    """Read the regimes table of the seed's ``lr.lua``.

    Accepts what the seed's files hold: ``opt.regimes = { {first, last, lr, wd}, ... }`` with
    ``--`` comments, trailing commas or semicolons, Lua numbers (``1e8``, ``0x10``) and
    ``math.huge``. Anything else inside the table is an error naming the file and line.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise UserError(f"{path}: cannot read the learning-rate file ({error.strerror})") from None
    text = _strip_lua_comments(raw)
    start = re.search(r"(?:^|[^A-Za-z0-9_])(?:[A-Za-z_][A-Za-z0-9_]*\.)?regimes\s*=\s*\{", text)
    if start is None:
        raise UserError(f"{path}: no 'opt.regimes = {{ ... }}' table found; each row is "
                        "{first_epoch, last_epoch, lr, weight_decay}")
    line_of = lambda offset: text.count("\n", 0, offset) + 1  # noqa: E731
    pos = start.end()  # just after the outer '{'
    rows: List[Regime] = []

    def token_at(p: int):
        m = _TOKEN.match(text, p)
        if m is None or m.end() == p:
            rest = text[p:].lstrip()
            if not rest:
                raise UserError(f"{path} line {line_of(len(text))}: the regimes table is not closed with '}}'")
            bad_at = len(text) - len(rest)
            bad = rest.split()[0][:20]
            raise UserError(f"{path} line {line_of(bad_at)}: unexpected '{bad}' in the regimes table")
        kind = m.lastgroup
        return kind, m.group(kind), m.start(kind), m.end()

    while True:
        kind, tok, at, pos = token_at(pos)
        if kind == "punct" and tok in ",;":
            continue
        if kind == "punct" and tok == "}":
            break
        if not (kind == "punct" and tok == "{"):
            raise UserError(f"{path} line {line_of(at)}: expected a row '{{first_epoch, last_epoch, lr, "
                            f"weight_decay}}', found '{tok}'")
        row_line = line_of(at)
        numbers: List[float] = []
        while True:
            kind, tok, at, pos = token_at(pos)
            if kind == "punct" and tok in ",;":
                continue
            if kind == "punct" and tok == "}":
                break
            if kind == "num":
                numbers.append(_lua_number(tok))
            elif kind == "name" and tok == "math.huge":
                numbers.append(math.inf)
            else:
                raise UserError(f"{path} line {line_of(at)}: expected a number in the row, found '{tok}'")
        if len(numbers) != 4:
            raise UserError(f"{path} line {row_line}: a row needs 4 numbers {{first_epoch, last_epoch, lr, "
                            f"weight_decay}}; found {len(numbers)}")
        first, last, lr, wd = numbers
        if first != int(first) or first < 1:
            raise UserError(f"{path} line {row_line}: first_epoch must be a whole number >= 1 (got {first:g})")
        if last != math.inf and last != int(last):
            raise UserError(f"{path} line {row_line}: last_epoch must be a whole number (got {last:g})")
        if last < first:
            raise UserError(f"{path} line {row_line}: last_epoch {last:g} is before first_epoch {first:g}")
        if lr < 0 or wd < 0:
            raise UserError(f"{path} line {row_line}: lr and weight_decay must be >= 0 (got {lr:g}, {wd:g})")
        last_epoch = 2**62 if last == math.inf or last > 2**62 else int(last)
        rows.append(Regime(int(first), last_epoch, float(lr), float(wd)))
    if not rows:
        raise UserError(f"{path} line {line_of(start.start())}: the regimes table is empty")
    return rows
