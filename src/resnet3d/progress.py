"""A dependency-free progress line with rate and ETA.

On a terminal it redraws one line; in a log file it prints a line every ``log_every`` seconds
(10 unless RESNET3D_PROGRESS_EVERY says otherwise), so long runs under nohup stay readable.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import IO, Optional


PROGRESS_EVERY_ENV = "RESNET3D_PROGRESS_EVERY"
_DEFAULT_LOG_EVERY = 10.0


def log_interval() -> float:
    """Seconds between progress lines in a log file: RESNET3D_PROGRESS_EVERY, else 10."""
    text = os.environ.get(PROGRESS_EVERY_ENV, "").strip()
    if not text:
        return _DEFAULT_LOG_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also catches nan
        warnings.warn(f"{PROGRESS_EVERY_ENV}={text!r} is not a number of seconds >= 0; "
                      f"progress lines come every {_DEFAULT_LOG_EVERY:g} s", stacklevel=2)
        return _DEFAULT_LOG_EVERY
    return seconds


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    def __init__(
        self,
        total: Optional[int],
        desc: str = "",
        unit: str = "it",
        stream: Optional[IO[str]] = None,
        enabled: bool = True,
        log_every: Optional[float] = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream  # resolved now: pytest swaps sys.stderr
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.interactive:
            self.log_every = 0.1
        else:
            self.log_every = log_interval() if log_every is None else log_every
        self.count = 0
        self.start = time.monotonic()
        self._last_draw = self.start
        self._postfix = ""
        self._drawn_count: Optional[int] = None

    def update(self, n: int = 1, **postfix: object) -> None:
        self.count += n
        if postfix:
            self._postfix = "  ".join(f"{k}={v}" for k, v in postfix.items())
        now = time.monotonic()
        if now - self._last_draw >= self.log_every or (self.total and self.count >= self.total):
            self._draw(now)

    def line(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        parts = [self.desc] if self.desc else []
        if self.total:
            percent = 100.0 * self.count / self.total
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            eta_text = format_duration(eta) if eta != float("inf") else "?"
            parts.append(f"{self.count}/{self.total} ({percent:3.0f}%)")
            parts.append(f"{rate:.2f} {self.unit}/s  elapsed {format_duration(elapsed)}  ETA {eta_text}")
        else:
            parts.append(f"{self.count} {self.unit}  {rate:.2f} {self.unit}/s  elapsed {format_duration(elapsed)}")
        if self._postfix:
            parts.append(self._postfix)
        return "  ".join(parts)

    def write(self, text: str) -> None:
        """``text`` on a line of its own, whether or not the bar is shown (an interactive bar is
        drawn again under it)."""
        if self.enabled and self.interactive:
            self.stream.write("\r\033[K" + text + "\n" + self.line())
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._drawn_count = self.count
        if not self.enabled:
            return
        if self.interactive:
            self.stream.write("\r\033[K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            if self._drawn_count != self.count:  # the last update may already have drawn the final line
                self._draw(time.monotonic())
            if self.interactive:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
