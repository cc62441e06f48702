"""Processes and ranks: one process per GPU (or per CPU worker), DDP between them.

Three ways in, one code path after:
- ``torchrun`` (one or several machines) sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* and starts us;
- ``--n_gpus K`` / ``--nproc-per-node K`` on one machine: ``launch_local`` starts K workers
  itself through torch's elastic launcher (what torchrun uses inside); with the successor's
  ``--distributed --world_size N`` under mpirun or srun, it does so on each of N machines, which
  meet at ``--dist_url`` (``engine.machines``);
- one process: no process group at all.

Every metric that crosses ranks goes through ``all_sum`` (one reduction helper for training and
validation). Only rank 0 writes files.

Numbers that are already on the host (a step's loss and accuracy, read a step late; a stop
request) are reduced over a gloo group of their own when the main group is NCCL. Through NCCL
they would be copied to the GPU and queued behind the step just launched, so reading step k-1's
numbers would wait for step k, and the GPU would idle while Python fetches the next batch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

from resnet3d.engine.machines import MachineGroup, check_meeting_place
from resnet3d.engine.signals import LEFT_TO_ELASTIC, ForwardToWorkers, stopped_by
from resnet3d.engine.worker_process import SAID_FOLDER_ENV, another_process_of_the_machine, say_once
from resnet3d.errors import UserError, user_error_text

log = logging.getLogger("resnet3d.engine")
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a worker started by torchrun or by ``launch_local``."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def env_info() -> DistInfo:
    if not launched_by_torchrun():
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def init_process_group(info: DistInfo, device: torch.device, backend: str = "auto") -> None:
    """Join the group torchrun described in the environment (no-op for one process)."""
    if not info.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: Dict[str, Any] = {"backend": backend, "rank": info.rank, "world_size": info.world_size}
    if device.type == "cuda":
        kwargs["device_id"] = device
    try:
        dist.init_process_group(**kwargs)
    except TypeError:  # torch < 2.3 has no device_id
        kwargs.pop("device_id", None)
        dist.init_process_group(**kwargs)
    if backend != "gloo":
        open_host_group()


# A CPU (gloo) group over every rank for numbers that live on the host; None: the main group
# serves them (one process, or a gloo main group, which reduces host tensors without a device).
_host_group: Optional[Any] = None


def open_host_group() -> None:
    """Create the gloo group ``all_sum`` uses for host numbers. Collective: every rank calls it."""
    global _host_group
    try:
        _host_group = dist.new_group(backend="gloo")
    except (RuntimeError, ValueError) as error:  # gloo built out, or no usable interface
        _host_group = None
        log.warning("no gloo group for the per-step metrics (%s): they go through the main group, which waits "
                    "for the step just launched; set GLOO_SOCKET_IFNAME to the network interface to fix it", error)


def destroy_process_group() -> None:
    global _host_group
    _host_group = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()  # every group, the host group included


def all_sum(values: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum numbers (or a tensor) over all ranks; float64 so counts and sums stay exact.

    The one reduction of the engine: callers send sums and counts, never means, so ranks with
    different amounts of data still give the exact global mean.
    """
    tensor = values if isinstance(values, torch.Tensor) else torch.tensor(list(values), dtype=torch.float64)
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        # one process: nothing to reduce, and no trip through the device (which would wait for
        # every step queued there)
        return tensor.to("cpu", torch.float64)
    if _host_group is not None and tensor.device.type == "cpu":
        tensor = tensor.to(torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_host_group)
        return tensor
    tensor = tensor.to(device=device, dtype=torch.float64)
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (a stop request, a non-finite loss)."""
    return bool(all_sum([1.0 if flag else 0.0], device)[0] > 0)


def on_every_rank(step: Callable[[], T], info: DistInfo, device: torch.device) -> Optional[T]:
    """``step()``'s result, or None when it raised a UserError here or on another rank: every rank
    learns of a failure (``say_failures`` says it), so none waits for the others forever. One
    process raises its error."""
    failure: Optional[UserError] = None
    result: Optional[T] = None
    try:
        result = step()
    except UserError as error:
        if not info.distributed:
            raise
        failure = error
    if info.distributed and any_rank(failure is not None, device):
        say_failures(failure, info)
        return None
    return result


def say_failures(failure: Optional[UserError], info: DistInfo) -> None:
    """Rank 0 says each rank's error once: the same error on every rank (a bad flag) was one line
    per process, and two processes' lines ran together. So does the first process of every other
    machine: there, where the user reads that machine's output, nothing said why the run ended."""
    texts: List[Optional[str]] = [None] * info.world_size
    dist.all_gather_object(texts, None if failure is None else user_error_text(failure))
    say_each_rank(texts, info)


def say_each_rank(texts: Sequence[Optional[str]], info: DistInfo) -> None:
    """``texts``: each rank's error, or None (every rank holds the same list). Said by each
    machine's first process, each distinct error once, with the ranks it came from."""
    if info.local_rank != 0:  # (ranks run machine by machine: rank 0 is its machine's first)
        return
    ranks: Dict[str, List[int]] = {}
    for rank, text in enumerate(texts):
        if text is not None:
            ranks.setdefault(text, []).append(rank)
    for text, where in ranks.items():
        if len(where) == info.world_size:
            say_once(f"resnet3d: error: {text}")
        else:
            say_once(f"resnet3d: error (rank {', '.join(map(str, where))}): {text}")


# What gloo and NCCL say when a collective's peer process is gone (it failed, or was killed)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote process exited")


def peer_gone(error: BaseException) -> bool:
    """Whether ``error`` is a collective's failure because another process of the run ended: that
    process's own lines say why, and this one's traceback (inside torch's collective) says nothing
    more. Only in a process of a launch: a process alone has no peers."""
    return (launched_by_torchrun() and isinstance(error, RuntimeError)
            and any(sign in str(error) for sign in _PEER_GONE))


def peer_gone_line(command: str) -> Optional[str]:
    """The line a process says when ``peer_gone``, or None where it keeps quiet: each machine's
    first process speaks for the machine (eight lines from eight processes said one thing), the
    others stay quiet; a first process that failed itself has said its own error."""
    if another_process_of_the_machine():
        return None
    if command == "test":
        saved = "what it scored is saved beside the results file: continue with --resume"
    else:
        saved = "--resume auto continues from the last checkpoint written, if any"
    return (f"resnet3d {command}: error (rank {os.environ.get('RANK', '?')}): another process of the run ended, so "
            f"this one stopped (the lines of that process, on its machine, say why); {saved}")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, group: Optional[Any] = None) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, group=group)
    return holder[0]


def gather_object(obj: Any, group: Optional[Any] = None) -> Optional[List[Any]]:
    """Every rank's ``obj`` on rank 0, in rank order; None on the other ranks."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    gathered: Optional[List[Any]] = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0, group=group)
    return gathered


# How long a collective of the patient group waits for the slowest rank: rank 0 gathering the
# recognition shares waits for whatever the others still have to recognise, which the main
# group's timeout (NCCL 10 minutes, gloo 30) does not allow for.
PATIENT_TIMEOUT = timedelta(days=7)


def open_patient_group() -> Optional[Any]:
    """A gloo group over every rank whose collectives wait up to ``PATIENT_TIMEOUT``; None (the
    main group) for one process, or where gloo cannot run. Collective: every rank calls it."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    try:
        return dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)
    except (RuntimeError, ValueError) as error:  # gloo built out, or no usable interface
        log.warning("no gloo group to gather the results over (%s): the main group serves, and gives up when a "
                    "process waits longer than its timeout for the others; set GLOO_SOCKET_IFNAME to the network "
                    "interface to fix it", error)
        return None


def _ephemeral_port_floor() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for a launcher's rendezvous.

    Chosen below the ephemeral range: a port the kernel picks for ``bind(0)`` can be handed to
    any process's next outgoing connection between this check and the launcher's own bind (a
    rare "address already in use" on a busy machine); ports below it go only to explicit binds.
    """
    floor = _ephemeral_port_floor()
    below = range(max(1024, floor - 12000), floor)
    candidates = random.Random().sample(below, min(50, len(below)))
    for port in [*candidates, 0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free TCP port on 127.0.0.1")


# how long a machine waits for the others to meet it (torch's static rendezvous default)
MACHINES_TIMEOUT_S = 600


def launch_local(nproc: int, entrypoint: Callable[..., Any], *args: Any,
                 machines: Optional[MachineGroup] = None, role: str = "training") -> Dict[int, Any]:
    """Start ``nproc`` workers on this machine with torch's elastic launcher; wait for them.

    ``machines``: this machine's place among several, whose launchers meet at its endpoint (a
    static rendezvous, as ``torchrun --node_rank``): ranks run machine by machine, this machine's
    from ``machines.rank * nproc``, and every machine must start as many processes. ``role``
    names the processes in a failure's line ("a training process failed").

    ``entrypoint`` must be a module-level function (it is pickled into each worker). The
    workers find their rank in the environment, exactly as under torchrun. A worker that failed
    makes the whole launch raise, naming the rank and its error in one line; one that said its
    error and ended (``SAID_EXIT_CODES``) gives its status instead: the line was said. SIGINT and SIGTERM are passed on
    to the workers as a stop request (``ForwardToWorkers``), and their exit status returned.
    """
    import multiprocessing

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if machines is not None:
        check_meeting_place(machines, MACHINES_TIMEOUT_S)
    # torch's launcher keeps its workers' error files in a folder of its own under /tmp and
    # leaves it there (one torchelastic_* folder per run); ours is removed when the launch ends
    log_dir = tempfile.mkdtemp(prefix="resnet3d-launch-")
    if machines is None:
        meeting: Dict[str, Any] = {"min_nodes": 1, "max_nodes": 1, "run_id": f"resnet3d-{uuid.uuid4().hex[:8]}",
                                   "rdzv_backend": "c10d", "rdzv_endpoint": f"127.0.0.1:{free_port()}"}
    else:  # (every machine's run id must agree; the endpoint's port keeps two jobs apart)
        meeting = {"min_nodes": machines.count, "max_nodes": machines.count, "run_id": "resnet3d",
                   "rdzv_backend": "static", "rdzv_endpoint": machines.endpoint,
                   "rdzv_configs": {"rank": machines.rank, "timeout": MACHINES_TIMEOUT_S}}
    config = LaunchConfig(
        nproc_per_node=nproc,
        **meeting,
        max_restarts=0,
        monitor_interval=0.5,
        **_logs_in(log_dir),
    )
    if hasattr(config, "signals_to_handle"):  # newer torch sets the variable from here
        config.signals_to_handle = LEFT_TO_ELASTIC
    said_folder = os.path.join(log_dir, "said")  # the processes' own errors, each said once (worker_process.say_error)
    os.mkdir(said_folder)
    # the workers are this process's multiprocessing children (torch starts them with spawn)
    forward = ForwardToWorkers(lambda: [child.pid for child in multiprocessing.active_children() if child.pid])
    try:
        with forward, _launcher_quiet(), _environment(SAID_FOLDER_ENV, said_folder), _temporary_files_in(log_dir):
            return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as error:  # (read from the error files before they go, below)
        if forward.signals_seen:
            # a second Ctrl-C (the workers stopped where they were), or a signal that came while a
            # process was still starting, before it could take signals as a request
            first = forward.signals_seen[0]
            raise stopped_by(first, f"{signal.Signals(first).name} stopped a process before it could save (while it "
                                    "started, or by a second Ctrl-C); --resume auto continues from the last "
                                    "checkpoint written, if any") from None
        failed = causes_of(error.failures)
        said = {rank: failure.exitcode for rank, failure in failed.items() if _said_its_error(failure)}
        if said:  # a process said what went wrong and ended; the others' ends follow from it
            return said
        failures = "; ".join(f"rank {rank}: {_failure_text(failure)}" for rank, failure in sorted(failed.items()))
        # torch's launcher stopped the other processes with SIGTERM: their "then saving a
        # checkpoint" could not be kept (their peer was gone), hence what continues the run
        going_on = ("continue with --resume: each saved what it scored" if role == "recognition"
                    else "--resume auto continues from the last checkpoint written, if any")
        raise UserError(f"a {role} process failed ({failures}); the others were stopped: {going_on}") from None
    except RuntimeError as error:
        if machines is None:
            raise
        # the machines did not meet (torch's DistNetworkError and its kin): a wrong address, a
        # port in use or blocked, or a machine that never started
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{machines.describe()}: the machines did not meet ({first}); check that --dist_url names "
                        "the machine of launcher rank 0 and a port free there and open between the machines, and "
                        f"that all {machines.count} machines started (each waits {MACHINES_TIMEOUT_S} s)") from None
    finally:
        _say_who_else_met(said_folder)
        shutil.rmtree(log_dir, ignore_errors=True)


# the exit statuses of a launched process that printed its error and ended (``worker_process.run_as_worker``)
SAID_EXIT_CODES = (1, 2)


def _said_its_error(failure: Any) -> bool:
    """A training process that ended with one of ``SAID_EXIT_CODES`` without an exception
    (torch keeps an exception's text in an error file: ``failure.message`` is then a dict)."""
    return failure.exitcode in SAID_EXIT_CODES and not isinstance(failure.message, dict)


def _failure_text(failure: Any) -> str:
    """A failed process's error in one line. torch keeps an exception's as a dict holding the
    message and the whole traceback, which its repr turned into one line of escaped text."""
    if _followed_another(failure):  # (the launcher saw it end first: the other's own line says why)
        return "its collective failed as another process of the run ended (that process's lines say why)"
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message") or ""
    lines = [line for line in str(message or "").strip().splitlines() if line.strip()]
    if not lines or lines[0].startswith("To enable traceback"):  # (torch's text when it has no error file)
        return f"exit code {failure.exitcode}"
    return lines[0].strip()


def _say_who_else_met(folder: str) -> None:
    """For each error several processes of the launch met, said once by the first of them: which
    others met it too (``worker_process.say_error`` recorded their ranks)."""
    for record in sorted(Path(folder).glob("[0-9a-f]" * 16)):
        try:
            ranks = record.read_text(encoding="utf-8").split()
        except OSError:
            continue
        if len(ranks) > 1:
            others = sorted(ranks[1:], key=lambda rank: int(rank) if rank.isdigit() else -1)
            say_once(f"resnet3d: rank{'s' if len(others) > 1 else ''} {', '.join(others)} met the same error as "
                     f"rank {ranks[0]} (said above, once)")


@contextlib.contextmanager
def _temporary_files_in(folder: str) -> Iterator[None]:
    """This process's temporary files in ``folder`` for the launch: torch's process starter names
    a ``pytorch-errorfile-*.pickle`` in the temporary folder for each process, which a process that
    fails writes and nobody removes (one per process of every failed run was left in /tmp)."""
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = before


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``name`` set to ``value`` in this process's environment, which the launched processes
    inherit, for the launch; as it was afterwards."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def causes_of(failures: Dict[int, Any]) -> Dict[int, Any]:
    """The failed processes of a launch (rank -> torch's ``ProcessFailure``) whose failure is
    the run's: not those whose collective failed because another had ended, which only followed
    it (their gloo traceback would bury its error); all of them when every one did."""
    return {rank: failure for rank, failure in failures.items() if not _followed_another(failure)} or dict(failures)


def _followed_another(failure: Any) -> bool:
    """A launched process that ended by an exception of a collective whose peer was gone
    (``peer_gone``'s words, read from its error file)."""
    message = failure.message
    text = str(message.get("message", "")) if isinstance(message, dict) else ""
    return any(sign in text for sign in _PEER_GONE)


@contextlib.contextmanager
def _launcher_quiet() -> Iterator[None]:
    """The launcher logs a failed process with a traceback of its own waiting loop (a rank killed
    by the out-of-memory killer printed seven "E1127 ... Traceback" lines); the failure is said
    once, in the one line built from its error files below."""
    # (some of its modules set their own logger's level, so the parent's alone would not do)
    # (and torch.multiprocessing.spawn says "Terminating process ... via signal SIGTERM" of the
    # other processes, which a failed one leaves the launcher to stop)
    names = ["torch.distributed.elastic", "torch.multiprocessing.spawn"] + [
        name for name in logging.root.manager.loggerDict if name.startswith("torch.distributed.elastic.")]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _logs_in(log_dir: str) -> Dict[str, Any]:
    """LaunchConfig's setting for where the launcher keeps its workers' logs and error files."""
    try:
        from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    except ImportError:  # (a torch without it keeps its own default)
        return {}
    return {"logs_specs": DefaultLogsSpecs(log_dir=log_dir)}
