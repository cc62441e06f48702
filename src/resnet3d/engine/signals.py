"""Pre-emption: SIGTERM or SIGINT asks the run to stop after the current step, with a checkpoint.

A scheduler that pre-empts a job (Slurm, Kubernetes, a spot instance) sends SIGTERM and waits a
little; Ctrl-C sends SIGINT. The first signal sets a flag that the training loop reads (and
agrees on across processes) at the end of each step; a second SIGINT stops at once.

Ctrl-C reaches every process of the terminal's process group, DataLoader workers included, and
forked workers inherit the handler: only the process that installed it acts and speaks, so one
Ctrl-C prints one line, and a worker keeps serving batches until the trainer stops.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Dict, Optional


class StopRequest:
    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._owner_pid: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + int(self.signal or 0)

    def _handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked worker: the installing process decides when to stop
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signal is None:
            self.signal = signum
            print(f"resnet3d: {signal.Signals(signum).name} received: finishing the current step, then saving "
                  "a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._owner_pid = os.getpid()
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
