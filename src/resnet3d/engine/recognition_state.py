"""What a recognition run starts from and ends with: the results an earlier run left, and the
shares of several processes.

At the start (``start_state``) rank 0 decides what becomes of an earlier results file and of the
hidden shares beside it (continued with ``--resume``, or by ``resnet3d main`` when the same
weights and settings made them; else set aside as ``<name>.<n>.json``, or removed with
``--overwrite``), and the other processes learn what is already done, including shares that only
their machine sees. At the end (``merge_shares``) every process's share travels to rank 0 over
the process group, and rank 0 writes the one results file. Before any of this, under the lock that
keeps a second run off the results file (``run_lock.ResultsLock``), rank 0 removes what a killed
save left (``remove_partial_writes``). The files' formats and the writer are
``resnet3d.engine.results``; the recognition itself is ``resnet3d.engine.predict``.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from resnet3d.engine import results as resultfiles
from resnet3d.errors import UserError
from resnet3d.fileio import TEMPORARY_SUFFIX, remove_leftovers

if TYPE_CHECKING:  # (predict imports this module: its options only annotate here)
    from resnet3d.engine.predict import RecognitionOptions


def remove_partial_writes(output: Path) -> List[str]:
    """Remove the temporary files that saves killed mid-write left beside ``output``: of the results
    file, of its record of the weights and settings, and of the processes' shares; nothing else
    (another output's, a file of the user's). Called by rank 0 under the results file's lock, when
    no other run can be writing them; returns the names removed, with their sizes."""
    name = re.escape(output.name)
    ours = re.compile(rf"(\.{name}|\.\.{name}\.state\.json|\.\.{name}\.rank\d+of\d+\.json){TEMPORARY_SUFFIX}")
    try:
        names = sorted(entry.name for entry in os.scandir(output.parent) if ours.fullmatch(entry.name))
    except FileNotFoundError:  # no folder yet: nothing left in it
        return []
    return remove_leftovers(output.parent / name for name in names)


def start_state(output: Path, options: RecognitionOptions, settings: Dict[str, Any],
                 dist: Any, device: torch.device, video_ids: Optional[set] = None, group: Optional[Any] = None,
                 order: Sequence[str] = ()) -> Optional[Dict[str, Any]]:
    """Rank 0 decides what to do with what an earlier run left, and tells the other ranks.

    - ``resume`` True: keep the earlier results (an error if they came from other weights or
      settings); None (``resnet3d main``): keep them only if they came from the same weights and
      settings, else start afresh; False: start afresh.
    - Starting afresh keeps an earlier file as ``<name>.<n>.json`` unless ``overwrite``, which
      removes it at once.
    - Several processes: the shares another machine saved where rank 0 cannot see them (no shared
      file system) are continued too, or removed when the run starts afresh (``_shares_elsewhere``).
      A share that records other weights or settings than this run's is removed, not continued.

    Returns ``results`` (what is done), ``errors`` and ``stamp``, the digest of this run's
    weights and settings that its shares record (``results.settings_stamp``); None on every rank
    when one failed (rank 0 deciding, another machine reading its shares), which is said once
    (``distributed.on_every_rank``): the others waited for it in their next collective.
    """
    from resnet3d.engine.distributed import on_every_rank

    state: Dict[str, Any] = {"results": {}, "errors": {}}
    stamp = resultfiles.settings_stamp(settings) if dist.is_main else None

    def decide() -> Tuple[bool, Dict[str, Optional[Tuple[int, int]]], Dict[str, Any], List[Path]]:
        """Rank 0's part: (resume, the shares it read or removed: name -> (size, mtime), the results
        it read from the shares it sees, the shares of a run with other weights or settings)."""
        resume = False
        seen: Dict[str, Optional[Tuple[int, int]]] = {}
        from_shares: Dict[str, Any] = {}
        stale: List[Path] = []
        if not dist.is_main:
            return resume, seen, from_shares, stale
        if options.resume and options.overwrite:
            raise UserError("--resume keeps the earlier results and --overwrite replaces them: give one")
        partials = list(resultfiles.partial_paths(output))
        seen = {path.name: _identity(path) for path in partials}
        earlier = ([output] if output.exists() else []) + partials
        stored = resultfiles.read_state(output)
        changed = resultfiles.differences(stored, settings) if stored is not None else None
        resume = options.resume
        if resume and earlier and changed:
            raise UserError(f"--resume: the results in {output} were made with other settings ({', '.join(changed)}) "
                            "than this run's; rerun with the same ones, or start over with --overwrite")
        if resume is None:  # automatic: continue only what this very model and these views produced
            resume = bool(earlier) and changed == [] and not options.overwrite
        if resume:
            if output.exists():
                state["results"].update(resultfiles.read_existing(output)["results"])
            from_shares, stale = _shares_of_this_run(partials, stamp)
            state["results"].update(from_shares)
            _refuse_foreign(state["results"], video_ids, output)
            if stored is None and earlier:
                print(f"resnet3d: --resume: {output} does not record the weights and settings that produced it; "
                      "its results are kept as they are", file=sys.stderr, flush=True)
            if state["results"]:
                print(f"resnet3d: resuming: {len(state['results'])} videos already have results in {output}",
                      file=sys.stderr, flush=True)
        elif output.exists() and not options.overwrite:
            moved = resultfiles.set_aside(output)
            if options.resume is None:  # resnet3d main: it continues by itself what it can continue
                why = (f"its results were made with other settings ({', '.join(changed)}) than this run's" if changed
                       else "it does not record the weights and settings that produced it")
                hint = f"{why}; the same weights and settings continue a results file"
            else:
                hint = "pass --resume to continue it, --overwrite to replace it"
            print(f"resnet3d: {output} already existed: kept it as {moved.name} ({hint})",
                  file=sys.stderr, flush=True)
        elif output.exists():
            # --overwrite: gone now, not at this run's first save. Several processes write the file
            # only at the end: a run stopped before left the earlier results beside this run's
            # record (below), and --resume took them for this run's
            output.unlink()
        # not continued: shares of other weights or settings, or of an earlier run that this one does not continue
        for path in (stale if resume else partials):
            path.unlink(missing_ok=True)
        resultfiles.write_state(output, settings)
        return bool(resume), seen, from_shares, stale

    decided = on_every_rank(decide, dist, device)
    if decided is None:
        return None
    resume, seen, from_shares, stale = decided
    n_stale = len(stale)
    if dist.distributed:
        from resnet3d.engine.distributed import broadcast_object

        resume, seen, stamp = broadcast_object((resume, seen, stamp), group)
        found = _shares_elsewhere(output, dist, device, resume, seen, stamp, video_ids, group)
        if found is None:
            return None
        elsewhere, n_stale_elsewhere = found
        n_stale += n_stale_elsewhere
        new = {video_id: entry for video_id, entry in elsewhere.items() if video_id not in state["results"]}
        if dist.is_main and new:
            state["results"].update(new)
            print(f"resnet3d: resuming: {len(new)} more videos have results in the shares other machines saved; "
                  f"kept in {output}", file=sys.stderr, flush=True)
        if dist.is_main and (from_shares or new):
            # in the results file at once: each rank saves its new share under its rank's name,
            # over an earlier share of that name, which a run stopped again would have lost
            resultfiles.ResultWriter(output, options.flavour, earlier=state, order=order).save()
        done = broadcast_object(sorted(state["results"]), group)
        if not dist.is_main:
            state = {"results": {video_id: None for video_id in done}, "errors": {}}
    if dist.is_main and n_stale:
        shares = "1 share" if n_stale == 1 else f"{n_stale} shares"
        print(f"resnet3d: resuming: {shares} of a run with other weights or settings than this run's (left beside "
              f"{output.name} by a stopped run) cannot be continued: removed", file=sys.stderr, flush=True)
    state["stamp"] = stamp
    return state


def _shares_of_this_run(paths: Sequence[Path], stamp: Optional[str]) -> Tuple[Dict[str, Any], List[Path]]:
    """(the results of the shares ``paths`` that this run's weights and settings made, the
    shares made with other ones). A share records its run's ``stamp``; one without the record
    (saved before shares had it) is continued, as a results file without a state file is."""
    results: Dict[str, Any] = {}
    others: List[Path] = []
    for path in paths:
        share = resultfiles.read_existing(path)
        if share["settings"] not in (None, stamp):
            others.append(path)
        else:
            results.update(share["results"])
    return results, others


def _identity(path: Path) -> Optional[Tuple[int, int]]:
    """(size, mtime) of a share file; None once it is gone (another rank removed it meanwhile)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_size, status.st_mtime_ns


def _refuse_foreign(results: Dict[str, Any], video_ids: Optional[set], output: Path) -> None:
    """Results of videos this subset does not hold would pass for this run's: refused."""
    foreign = [v for v in results if video_ids is not None and v not in video_ids]
    if foreign:
        raise UserError(f"--resume: {len(foreign)} of the {len(results)} results in {output} are of "
                        f"videos this subset does not hold (e.g. {foreign[0]}): it holds another data set's or "
                        "subset's results; choose another --output, or replace it with --overwrite")


def _shares_elsewhere(output: Path, dist: Any, device: torch.device, resume: bool,
                      seen: Dict[str, Optional[Tuple[int, int]]], stamp: Optional[str],
                      video_ids: Optional[set], group: Optional[Any]) -> Optional[Tuple[Dict[str, Any], int]]:
    """On rank 0: (the results of the shares that other machines' processes see beside ``output``
    and rank 0 did not (the results folders of machines without a shared file system), how many
    of those were made with other weights or settings than ``stamp`` says and were removed);
    ({}, 0) elsewhere; None on every rank when a machine could not read its shares. Starting
    afresh, those shares are removed instead. Collective."""
    from resnet3d.engine.distributed import gather_object, on_every_rank

    def read() -> Tuple[Dict[str, Any], List[Path]]:
        found: Dict[str, Any] = {}
        stale: List[Path] = []
        # one process per machine looks: two would read, or remove, the same files
        if not dist.is_main and dist.local_rank == 0:
            unseen = []
            for path in resultfiles.partial_paths(output):
                identity = _identity(path)
                if identity is None or seen.get(path.name) == identity:
                    continue  # gone, or the same file rank 0 read (a shared file system)
                unseen.append(path)
            if resume:
                found, stale = _shares_of_this_run(unseen, stamp)
                # checked here, before the gather, so that every process learns of it (``on_every_rank``)
                _refuse_foreign(found, video_ids, output)
            for path in (stale if resume else unseen):
                path.unlink(missing_ok=True)
        return found, stale

    read_here = on_every_rank(read, dist, device)
    if read_here is None:
        return None
    found, stale = read_here
    gathered = gather_object((found, len(stale)), group)
    merged: Dict[str, Any] = {}
    for results, _ in gathered or []:
        merged.update(results)
    return merged, sum(n_stale for _, n_stale in gathered or [])


class Merged(NamedTuple):
    """What ``merge_shares`` tells every rank: the whole run's ``counts``, each rank's ``failure``
    (its error's line and exit status, None where its share ended well) and how many videos the
    results file holds now (``kept``: scored and unreadable, this run's and earlier runs')."""
    counts: Dict[str, int]
    failures: List[Optional[Tuple[str, int]]]
    kept: int


def merge_shares(output: Path, options: RecognitionOptions, state: Dict[str, Any],
                 share: resultfiles.ResultWriter, counts: Dict[str, int], order: Sequence[str],
                 group: Optional[Any], is_main: bool, failure: Optional[Tuple[str, int]] = None) -> Merged:
    """Every rank's share to rank 0 over ``group``, which writes the one results file; then each
    rank removes its share file. ``failure``: this rank's error (line, exit status) when its share
    stopped part way: what it scored is merged all the same, and every rank learns of the error.

    The shares travel over the process group, not through the files beside the output, so ranks
    on machines without a shared file system end with the whole file on rank 0's machine.
    """
    import threading

    from resnet3d.engine.distributed import broadcast_object, gather_object

    note = threading.Timer(60.0, lambda: print(
        "resnet3d: this process's share is recognised; waiting for the other processes' shares",
        file=sys.stderr, flush=True))
    note.daemon = True
    if is_main and failure is None:
        note.start()
    try:
        shares = gather_object({"results": share.results, "errors": share.errors, "counts": counts,
                                "failure": failure}, group)
    finally:
        note.cancel()
    merged = None
    if is_main and shares is not None:
        writer = resultfiles.ResultWriter(output, options.flavour, options.save_every, earlier=state, order=order)
        for each in shares:
            writer.merge(each)
        writer.save()
        for path in resultfiles.partial_paths(output):  # this run's shares, and earlier ones now merged
            path.unlink(missing_ok=True)
        merged = Merged(counts={key: sum(each["counts"][key] for each in shares) for key in counts},
                        failures=[each["failure"] for each in shares],
                        kept=len(writer.results) + len(writer.errors))
    merged = broadcast_object(merged, group)  # (and: the results file is written)
    share.path.unlink(missing_ok=True)  # on a machine of its own, no other process removes it
    return Merged(*merged)


def failure_of(error: Exception, rank: int) -> Tuple[str, int]:
    """This process's error while it recognised its share, as (line, exit status) for
    ``merge_shares``, as one process of a run says it (``worker_process.failure_line``). Said here
    at once, by this process: the others may work on for hours before the gather, and nobody else
    knows of it until then."""
    from resnet3d.engine.worker_process import failure_line, say_once

    text, status = failure_line(error)
    say_once(f"resnet3d: error (rank {rank}): {text}; the other processes finish their shares, then the run "
             "ends (what this one scored is kept)")
    return text, status


def say_failed_run(merged: Merged, dist: Any, output: Path, total: int, how: str) -> int:
    """Each machine's first process says the errors that stopped some ranks' shares and what the
    results file holds now; the exit status of every process (2 when every error was the user's,
    as one process's would be)."""
    from resnet3d.engine.distributed import say_each_rank
    from resnet3d.engine.worker_process import say_once

    failed = [failure for failure in merged.failures if failure is not None]
    say_each_rank([None if failure is None else failure[0] for failure in merged.failures], dist)
    if dist.local_rank == 0:
        say_once(f"resnet3d: recognition ended by the error above: {merged.kept} of the {total} videos have results "
                 f"in {output}; {how}")
    return 2 if all(status == 2 for _, status in failed) else 1
