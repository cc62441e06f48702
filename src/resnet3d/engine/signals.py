"""Pre-emption: SIGTERM or SIGINT asks the run to stop after the current step, with a checkpoint.

A scheduler that pre-empts a job (Slurm, Kubernetes, a spot instance) sends SIGTERM and waits a
little; Ctrl-C sends SIGINT. The first signal sets a flag that the training loop reads (and
agrees on across processes) at the end of each step; a second SIGINT stops at once.

Ctrl-C reaches every process of the terminal's process group, DataLoader workers included, and
forked processes inherit the handler: only the process that installed it acts and speaks, so one
Ctrl-C prints one line. The loaders' workers (training and recognition) go further
(``leave_stopping_to_the_parent``) and keep serving until their process stops them. Of several
training processes only rank 0 speaks.

A local multi-process run (``--nproc-per-node``) has a launching process above the training
processes; ``ForwardToWorkers`` is its side (see its docstring).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional


# a signal this soon after the one that stopped the work is the same request arriving again (the
# terminal's Ctrl-C and the launcher's SIGTERM passed on): it must not cut the saving short
_SAME_REQUEST_S = 1.0


def stopped_by(signum: int, message: str = "") -> KeyboardInterrupt:
    """The KeyboardInterrupt that ends work stopped by ``signum``: the command prints ``message``
    and exits with 128 + ``signal_of`` it (143 for SIGTERM)."""
    interrupt = KeyboardInterrupt(message)
    interrupt.signum = signum  # type: ignore[attr-defined]
    return interrupt


def signal_of(interrupt: BaseException) -> int:
    """The signal an interrupt stands for: a plain Ctrl-C's KeyboardInterrupt carries none."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


class StopRequest:
    """``at_once``: work that keeps what it has done whenever it stops (recognition saves the
    videos scored so far) stops at the first SIGINT or SIGTERM, by a KeyboardInterrupt
    (``stopped_by``); a repeat within a second is ignored. Otherwise (training)
    the first signal is a request read at the end of each step, and a second Ctrl-C stops at once.
    """

    def __init__(self, at_once: bool = False) -> None:
        self.signal: Optional[int] = None
        self.at_once = at_once
        self._previous: Dict[int, object] = {}
        self._owner_pid: Optional[int] = None
        self._raised_at: Optional[float] = None

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
        if self.at_once:
            self._stop_now(signum)
            return
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signal is None:
            self.signal = signum
            if os.environ.get("RANK", "0") != "0":
                return  # one line per run, not one per training process
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            print(f"resnet3d: {signal.Signals(signum).name} received: finishing the steps under way (one more is queued ahead), then saving "
                  f"a checkpoint{again}", file=sys.stderr, flush=True)

    def _stop_now(self, signum: int) -> None:
        if self._raised_at is not None and time.monotonic() - self._raised_at < _SAME_REQUEST_S:
            return
        self.signal = self.signal or signum
        self._raised_at = time.monotonic()
        raise stopped_by(signum)

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


@contextmanager
def children_start_deaf_to_stops() -> Iterator[None]:
    """Processes started inside begin with SIGINT and SIGTERM blocked, until their own set-up
    (``leave_stopping_to_the_parent``) takes the signals over.

    A signal mask passes through fork and exec, so the block holds from a worker's first
    instruction, in all its threads: a spawned loader worker is still importing torch for a second
    or two, and a Ctrl-C to the whole job then ended it with a KeyboardInterrupt traceback, and
    the run with "DataLoader worker ... killed by signal". Here a signal that comes meanwhile waits
    (it is delivered once the block is lifted, and a worker's set-up ignores or sorts it)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a pending Ctrl-C reaches this process now


def leave_stopping_to_the_parent() -> None:
    """Call in a DataLoader worker: only the trainer that started it stops it.

    A terminal's Ctrl-C and a scheduler's pre-emption (Slurm at the time limit, a stop of the
    whole process group) signal every process of the job at once, loader workers included:
    - torch's workers die on any SIGTERM (quietly when their parent sent it, as its loader's
      ``terminate()`` does), and the trainer then failed with "DataLoader worker ... is killed by
      signal: Terminated" instead of saving. Here a SIGTERM from anyone but the parent is let
      pass: the trainer, which had it too, finishes its step, saves, and shuts its workers down
      as usual (SIGKILL still ends a worker). Python's handlers cannot see who sent a signal, so
      SIGTERM is blocked and a thread takes it with ``sigwaitinfo``, which says; where that call
      does not exist, torch's behaviour stays. The block is in place from the worker's start,
      in every thread, when its loader started it inside ``children_start_deaf_to_stops``.
    - SIGINT is ignored: it interrupted the worker's hand-over of a batch now and then (one run
      in three of a 2-process Ctrl-C ended in "Connection reset by peer" in the trainer).
    - A worker whose trainer is gone ends itself, within a second. torch's workers watch their
      parent, but one that the trainer started just before it died (SIGKILL, a failed rank)
      took its new parent, init, for its trainer and waited for batches to make for ever,
      holding the run's output pipes (so a script reading them waited too).
    - A parent that stops while it fetches a batch from the worker hangs up on the worker's
      file-descriptor server (multiprocessing's resource sharer), whose thread then printed a
      traceback after the run's last line: that hang-up is not reported.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    parent = _spawning_process()
    # Under the fork and spawn start methods the trainer is this worker's OS parent until it dies;
    # under forkserver (Python 3.14's default on Linux) the OS parent is the fork server, and
    # only the trainer's own state tells (the fork server outlives it by a moment)
    forked_by_trainer = os.getppid() == parent
    if _trainer_gone(parent, forked_by_trainer):
        os._exit(0)  # the trainer died while this worker started: nobody will ask it for a batch
    _quiet_when_the_parent_hangs_up()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigtimedwait"):
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # (threads started later inherit it)

    def take_sigterms() -> None:
        while True:
            taken = signal.sigtimedwait({signal.SIGTERM}, _PARENT_CHECK_S)
            if (taken is not None and taken.si_pid == parent) or _trainer_gone(parent, forked_by_trainer):
                os._exit(0)  # the parent's terminate(), answered as torch's own handler does; or no parent

    threading.Thread(target=take_sigterms, name="resnet3d-sigterm", daemon=True).start()


_PARENT_CHECK_S = 1.0  # how often a loader worker checks that its trainer is alive


def _spawning_process() -> int:
    """The process that started this one, even if it has died meanwhile (``os.getppid()`` then
    names whoever took its children over)."""
    import multiprocessing

    spawner = multiprocessing.parent_process()
    return spawner.pid if spawner is not None and spawner.pid else os.getppid()


def _trainer_gone(trainer: int, forked_by_trainer: bool) -> bool:
    """Whether the trainer ``trainer`` has died: its worker was taken over by another parent, or
    (a worker that a fork server started, or that started after its trainer died) the trainer
    no longer runs."""
    if forked_by_trainer:
        return os.getppid() != trainer
    return not _running(trainer)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a dead trainer its launcher has not
    reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS): it exists
        return True


def _quiet_when_the_parent_hangs_up() -> None:
    """In a loader worker, only background threads that report through ``sys.excepthook`` reach
    it (torch sends the main thread's errors to the parent): of those, multiprocessing's resource
    sharer reports a connection the parent broke off as it stopped."""
    report = sys.excepthook

    def hook(kind, value, traceback) -> None:
        if not issubclass(kind, (ConnectionError, EOFError)):
            report(kind, value, traceback)

    sys.excepthook = hook


# torch's elastic launcher turns these into an exception in the launching process unless told
# otherwise through this variable (read when it starts the workers)
ELASTIC_SIGNALS_VARIABLE = "TORCHELASTIC_SIGNALS_TO_HANDLE"
LEFT_TO_ELASTIC = "SIGHUP,SIGQUIT"
# where torch logs a worker's end (its exit status and traceback) in the launching process
_TORCH_LAUNCHER_LOGGERS = ("torch.distributed.elastic.multiprocessing.api", "torch.multiprocessing.spawn")


class ForwardToWorkers:
    """The launching process of a local multi-process run: pass a stop request on, then wait.

    torch's elastic launcher, left to itself, turns SIGINT and SIGTERM into an exception and sends
    the same signal again to every worker. A Ctrl-C, which the terminal had already delivered to
    the workers, so arrived twice: they stopped at once, without a checkpoint, and the launcher
    died with torch's traceback (exit 1). A SIGTERM sent to the launcher alone (``kill PID``)
    ended in SIGKILL after torch's 30 s.

    Inside this context the launcher leaves SIGINT and SIGTERM to us: the first one sends each
    worker one SIGTERM, which their ``StopRequest`` takes as "finish the step, save, exit"
    (a worker that already had the terminal's SIGINT ignores it), and the launcher keeps waiting
    for them, so their exit status (130 or 143) is the run's. Later signals are not passed on: a
    second Ctrl-C reaches the workers from the terminal and stops them at once (one more SIGINT
    from here would interrupt their clean-up). ``workers`` lists the processes to signal.
    """

    def __init__(self, workers: Callable[[], Iterable[int]]) -> None:
        self.workers = workers
        self.signals_seen: List[int] = []
        self._previous: Dict[int, object] = {}
        self._variable: Optional[str] = None
        self._torch_handler: Optional[Callable[[int, object], None]] = None

    def _send(self, signum: int) -> None:
        for pid in self.workers():
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass  # already gone

    def _handle(self, signum: int, frame: object) -> None:
        self.signals_seen.append(signum)
        if len(self.signals_seen) == 1:
            self._send(signal.SIGTERM)

    def _instead_of_torchs(self, signum: int, frame: object) -> None:
        """Stands in for torch's ``_terminate_process_handler`` while the launcher starts: ours
        for SIGINT and SIGTERM, torch's for the signals left to it."""
        if signum in (signal.SIGINT, signal.SIGTERM):
            self._handle(signum, frame)
        elif self._torch_handler is not None:
            self._torch_handler(signum, frame)

    def filter(self, record: logging.LogRecord) -> bool:
        """As a logging filter: torch's own report of a worker stopped by the signal passed on
        (a traceback per worker, in torch's log format) is not news after a Ctrl-C."""
        return not self.signals_seen

    def __enter__(self) -> "ForwardToWorkers":
        for name in _TORCH_LAUNCHER_LOGGERS:
            logging.getLogger(name).addFilter(self)
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; the launcher handles them there
        self._variable = os.environ.get(ELASTIC_SIGNALS_VARIABLE)
        os.environ[ELASTIC_SIGNALS_VARIABLE] = LEFT_TO_ELASTIC
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        # torch before the variable (2.4: its process context's start() sets its own handler for
        # SIGINT, SIGTERM, SIGHUP and SIGQUIT, whatever the variable says) would replace ours as
        # it starts the workers, raise a SignalException at the first Ctrl-C (a traceback, exit 1)
        # and send the workers the signal again. Its start() takes the handler by its module-level
        # name, so the launcher installs ours instead; a torch that reads the variable installs
        # it for SIGHUP and SIGQUIT only, which it passes to torch's own.
        elastic = sys.modules.get("torch.distributed.elastic.multiprocessing.api")
        if elastic is not None and callable(getattr(elastic, "_terminate_process_handler", None)):
            self._torch_handler = elastic._terminate_process_handler
            elastic._terminate_process_handler = self._instead_of_torchs
        return self

    def __exit__(self, *exc: object) -> None:
        for name in _TORCH_LAUNCHER_LOGGERS:
            logging.getLogger(name).removeFilter(self)
        if self._torch_handler is not None:
            elastic = sys.modules.get("torch.distributed.elastic.multiprocessing.api")
            if elastic is not None and getattr(elastic, "_terminate_process_handler", None) == self._instead_of_torchs:
                elastic._terminate_process_handler = self._torch_handler
            # (kept: a SIGHUP or SIGQUIT handler that torch left installed still reaches torch's)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
        if self._variable is None:
            os.environ.pop(ELASTIC_SIGNALS_VARIABLE, None)
        else:
            os.environ[ELASTIC_SIGNALS_VARIABLE] = self._variable


def stop_with_the_launcher(launcher: int) -> None:
    """Ask the kernel for a SIGTERM when the launcher that started this process dies (Linux).

    Killed alone (kill -9), the launcher forwards nothing: its training processes trained on, or
    waited for it for ever. The SIGTERM is the stop request a scheduler sends: the step under way
    finishes and is saved, and the process ends."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the launcher's own forwarding still applies
        return
    if os.getppid() != launcher:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)

