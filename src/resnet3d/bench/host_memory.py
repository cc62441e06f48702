"""Host memory of this process and its children (loader workers), read from Linux's /proc.

No psutil: ``/proc/<pid>/status`` gives VmRSS, ``/proc/<pid>/smaps_rollup`` gives Pss (each
shared page divided among the processes that map it, so the Pss of a forked worker does not count
again the pages it still shares with its parent, where summing RSS would), and each
``/proc/<pid>/stat`` names the parent, which is how children are found.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional


def _kib_field(path: str, name: str) -> Optional[int]:
    """The ``name:   1234 kB`` line of a /proc file, in KiB (None: not readable, or no such line)."""
    try:
        with open(path, "r") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):  # the process ended, or no permission
        return None
    return None


def rss_kib(pid: int) -> Optional[int]:
    return _kib_field(f"/proc/{pid}/status", "VmRSS")


def pss_kib(pid: int) -> Optional[int]:
    return _kib_field(f"/proc/{pid}/smaps_rollup", "Pss")


def _parents() -> Dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "r") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> List[int]:
    """Every process started by ``pid``, directly or through its children."""
    children: Dict[int, List[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: List[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return sorted(found)


@dataclass(frozen=True)
class HostMemory:
    """MiB of resident memory: this process, its children summed, and the Pss of all of them."""

    main_rss_mib: float
    children_rss_mib: float
    n_children: int
    total_pss_mib: Optional[float]  # None where smaps_rollup is not readable (Linux < 4.14)

    def as_record(self) -> Dict[str, object]:
        record: Dict[str, object] = {"rss_main_mib": round(self.main_rss_mib, 1),
                                     "rss_workers_mib": round(self.children_rss_mib, 1),
                                     "n_worker_processes": self.n_children}
        if self.total_pss_mib is not None:
            record["pss_total_mib"] = round(self.total_pss_mib, 1)
        return record


def host_memory(pid: Optional[int] = None) -> Optional[HostMemory]:
    """``pid``'s (default: this process's) memory and its children's; None without /proc."""
    pid = os.getpid() if pid is None else pid
    main = rss_kib(pid)
    if main is None:
        return None
    children = descendants(pid)
    child_rss = [rss_kib(child) for child in children]
    pss = [pss_kib(p) for p in [pid, *children]]
    # a child may end between listing and reading: it then holds no memory
    total_pss = None if pss[0] is None else sum(v for v in pss if v is not None) / 1024
    return HostMemory(main_rss_mib=main / 1024, children_rss_mib=sum(v for v in child_rss if v is not None) / 1024,
                      n_children=sum(v is not None for v in child_rss), total_pss_mib=total_pss)
