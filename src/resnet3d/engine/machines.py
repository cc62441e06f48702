"""Several machines started by an MPI launcher or Slurm, the successor's way.

The successor trained on several machines with ``mpirun ... python main.py --distributed
--dist_url tcp://HOST:PORT --world_size N``: one process per machine, which read its machine's
rank from ``OMPI_COMM_WORLD_RANK`` and started one worker per GPU; every worker met the others at
``--dist_url``. ``resnet3d main`` takes that command line as it is: each machine's launcher rank
(Open MPI, MPICH / Intel MPI, or Slurm's ``srun``) is its node rank, and torch's elastic launcher
starts this machine's processes with a static rendezvous at the address of the machine of rank 0
(what ``torchrun --node_rank R --master_addr HOST`` does). torchrun itself needs none of this.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from resnet3d.errors import UserError

# (launcher, its variable for this process's rank, its variable for the number of processes)
LAUNCHER_RANKS = (
    ("Open MPI's mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # what the successor read
    ("MPICH / Intel MPI", "PMI_RANK", "PMI_SIZE"),
    ("Slurm's srun", "SLURM_PROCID", "SLURM_NTASKS"),
)
# the successor's default --dist_url
DEFAULT_DIST_URL = "tcp://127.0.0.1:23456"
# how the number of machines is given: resnet3d main (the successor's flag), resnet3d train
MACHINES_FLAGS = "--world_size / --nodes"


@dataclass(frozen=True)
class MachineGroup:
    """This machine's place among ``count`` machines that meet at ``host:port``."""

    count: int
    rank: int
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{host}:{self.port}"

    def describe(self) -> str:
        return f"machine {self.rank} of {self.count}, meeting at {self.endpoint}"


def rendezvous_address(dist_url: str, environ: Mapping[str, str] = os.environ) -> Tuple[str, int]:
    """``(host, port)`` of ``--dist_url``: ``tcp://HOST:PORT``, or ``env://`` (MASTER_ADDR and
    MASTER_PORT, as torch reads them)."""
    url = dist_url.strip()
    if url == "env://":
        host, port = environ.get("MASTER_ADDR", ""), environ.get("MASTER_PORT", "")
        if not host or not port.isdigit():
            raise UserError("--dist_url env:// reads MASTER_ADDR and MASTER_PORT, which are not both set; set them "
                            "(the address and a free port of the machine of rank 0) or pass --dist_url tcp://HOST:PORT")
        return host, int(port)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None:
        raise UserError(f"--dist_url {dist_url!r}: expected tcp://HOST:PORT (the address of the machine of rank 0 "
                        f"and a free port on it, e.g. tcp://node0:23456) or env://")
    return parts.hostname, port


def launcher_rank(count: int, environ: Mapping[str, str] = os.environ) -> int:
    """This machine's rank among ``count``, from the launcher that started one process per machine."""
    for launcher, rank_name, size_name in LAUNCHER_RANKS:
        if rank_name not in environ:
            continue
        rank, size = environ[rank_name], environ.get(size_name)
        if not rank.isdigit():
            raise UserError(f"{rank_name}={rank!r} ({launcher}) is not a rank")
        if size is not None and size.isdigit() and int(size) != count:
            raise UserError(f"{launcher} started {size} processes ({size_name}) but {MACHINES_FLAGS} is {count}: start "
                            "one process per machine (mpirun -np N --map-by ppr:1:node / -npernode 1, srun "
                            "--ntasks-per-node 1); each starts one training process per GPU itself")
        if int(rank) >= count:
            raise UserError(f"{rank_name}={rank} ({launcher}) but {MACHINES_FLAGS} is {count}: ranks run from 0 to "
                            f"{count - 1}")
        return int(rank)
    names = ", ".join(rank_name for _, rank_name, _ in LAUNCHER_RANKS)
    raise UserError(f"{MACHINES_FLAGS} {count} trains on {count} machines, and this process was not started by a "
                    f"launcher that says which machine it is ({names} are unset): start it on every machine with "
                    "mpirun or srun (one process per machine), or use torchrun (docs/training.md, 'Several GPUs and "
                    "several machines')")


def check_meeting_place(group: MachineGroup, timeout_s: float) -> None:
    """Fail with one line, before torch's launcher tries, where the machines cannot meet: the
    port taken on the machine of rank 0, or nothing listening there for ``timeout_s`` seconds
    (torch's own failure prints pages of C++ stack first). The other machines wait here for
    rank 0 to listen, as torch would."""
    import socket
    import time

    where = f"{group.describe()}: "
    if group.rank == 0:
        with socket.socket(socket.AF_INET6 if ":" in group.host else socket.AF_INET) as probe:
            try:
                probe.bind(("", group.port))
            except OSError as error:
                raise UserError(f"{where}port {group.port} cannot be used on this machine ({error.strerror}): choose "
                                "a free one in --dist_url") from None
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((group.host, group.port), timeout=5).close()
            return
        except socket.gaierror as error:
            raise UserError(f"{where}cannot resolve {group.host} ({error.strerror}): --dist_url must name the machine "
                            "of launcher rank 0 as this machine knows it") from None
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"{where}nothing listened at {group.endpoint} for {timeout_s:.0f} s: check that "
                                "--dist_url names the machine of launcher rank 0, that its port is open between "
                                f"the machines, and that all {group.count} machines started") from None
            time.sleep(1)


def unbind_from_launcher() -> Optional[str]:
    """A note when this process was bound to fewer cores than the machine has, and is no longer.

    MPI launchers bind each process they start to one core (Open MPI's default, also with
    ``--map-by ppr:1:node``); this process starts the machine's training processes and their
    loader workers, which would all share that core (and the default worker count would be 1).
    Its affinity is widened to every core the machine lets it use (a Slurm or container cpuset
    still limits it). Call before anything counts the usable cores."""
    try:
        bound = os.sched_getaffinity(0)
    except AttributeError:  # (no affinity on macOS, Windows)
        return None
    every = set(range(os.cpu_count() or 1))
    if bound >= every:
        return None
    try:
        os.sched_setaffinity(0, every)
    except OSError:
        return None
    widened = os.sched_getaffinity(0)
    if len(widened) <= len(bound):
        return None
    return (f"the launcher bound this process to {len(bound)} core(s): widened to {len(widened)} for this machine's "
            "training processes and loader workers (mpirun --bind-to none leaves it unbound)")


def machine_group(count: int, rendezvous: str, environ: Mapping[str, str] = os.environ) -> Optional[MachineGroup]:
    """The group this machine belongs to; None for one machine. ``rendezvous``: a ``--dist_url``."""
    if count < 1:
        raise UserError(f"{MACHINES_FLAGS} ([hardware] nodes) {count}: the number of machines is 1 or more")
    if count == 1:
        return None
    host, port = rendezvous_address(rendezvous or DEFAULT_DIST_URL, environ)
    return MachineGroup(count=count, rank=launcher_rank(count, environ), host=host, port=port)
