"""The result folder of a fresh or continued run.

A fresh run never silently replaces an earlier run's logs and checkpoints: it is refused unless
``--overwrite`` (or ``--resume auto``, where the earlier run left nothing to continue) lets it
remove them. A run continued from an older checkpoint of its folder moves the later checkpoints
of the run it abandons into a folder of their own. Both are decided during the set-up and done
after it (``FolderChanges``). A run that only evaluates keeps an earlier evaluation's records
(``opts_eval.json``, ``val_metrics.json``) under another name (``keep_earlier``).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from resnet3d.config import Config
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.messages import say
from resnet3d.engine.model_start import Start
from resnet3d.errors import UserError, describe_os_error
from resnet3d.output_paths import same_file


@dataclass
class FolderChanges:
    """What a run will change in its result folder, decided while it is set up and done only once
    every check of the set-up passed on every process: a refused run (a bad flag found later in
    the set-up) changes nothing."""

    remove: List[Path] = field(default_factory=list)  # an earlier run's files (--overwrite)
    removed_note: str = ""
    set_aside: List[Path] = field(default_factory=list)  # an abandoned run's later checkpoints
    set_aside_note: str = ""

    def apply(self, info: DistInfo) -> None:
        """Rank 0 changes the folder; the others have nothing to do."""
        if not info.is_main:
            return
        for path in self.remove:
            path.unlink()
        if self.removed_note:
            say(info, self.removed_note)
        if self.set_aside:
            aside = _new_folder(self.set_aside[0].parent, time.strftime("abandoned_%Y%m%d-%H%M%S"))
            try:
                for path in self.set_aside:
                    os.replace(path, aside / path.name)
            except OSError as error:
                raise UserError(f"cannot move the later checkpoints of the abandoned run aside "
                                f"({describe_os_error(error)}): move {', '.join(p.name for p in self.set_aside)} "
                                f"out of {aside.parent} yourself, then continue") from None
            say(info, f"{self.set_aside_note} to {aside}")


def _new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... when a folder of that name is there (two
    runs set aside within one second)."""
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
        except OSError as error:
            raise UserError(f"cannot create {describe_os_error(error, folder)}") from None
    raise UserError(f"{parent}: too many folders named {name}-N; remove some")


def fresh_result_path(config: Config) -> FolderChanges:
    """A fresh run never silently replaces an earlier run's logs and checkpoints: refused here,
    or (``--overwrite``, or ``--resume auto`` over a run that wrote no checkpoint) removed later."""
    earlier = ckpt.previous_run_files(Path(config.run.result_path))
    if not earlier:
        return FolderChanges()
    names = ", ".join(p.name for p in earlier[:6]) + (" ..." if len(earlier) > 6 else "")
    no_checkpoint = ckpt.find_latest(Path(config.run.result_path)) is None
    # --resume auto is "continue, or start when there is nothing to continue": a run that stopped
    # before its first checkpoint (killed, preempted, a full disk) left logs of nothing that can go
    # on; preemption scripts always pass --resume auto and were refused on every retry
    restart = config.run.resume == "auto" and no_checkpoint
    if no_checkpoint and not config.run.overwrite and _logs_of_nothing(earlier):
        # a run refused at its first step (a batch of one clip, out of memory) left headers only:
        # nothing to keep, and refusing the corrected command would only be in the way
        return FolderChanges(remove=earlier, removed_note=(
            f"resnet3d: {config.run.result_path} held the empty logs of a run that stopped before its first step "
            f"({names}): replaced"))
    if not (config.run.overwrite or restart):
        # a run stopped before its first checkpoint (a bad flag, a crash) has nothing to continue
        if no_checkpoint:
            raise UserError(f"{config.run.result_path} holds files of a run ({names}) but no checkpoint to continue "
                            "from: start over with --overwrite, or choose another --result_path")
        raise UserError(f"{config.run.result_path} already holds a run ({names}): continue it with --resume auto "
                        "(or --begin_epoch N), start over with --overwrite, or choose another --result_path")
    pretrained = config.finetune.pretrained
    needed = [path for path in earlier if pretrained and os.path.exists(pretrained) and same_file(path, pretrained)]
    if needed:  # the run starts from it: removing it would lose the only copy
        raise UserError(f"--overwrite would remove {needed[0]}, the pretrained weights this run starts from: copy "
                        f"them out of {config.run.result_path} first, or choose another --result_path")
    if config.run.overwrite:
        note = f"resnet3d: --overwrite: removed the earlier run's {names}"
        kept = sorted(p.name for p in Path(config.run.result_path).glob("abandoned_*") if p.is_dir())
        if kept:  # checkpoints an earlier run set aside: not this flag's to remove
            note += f"; kept {', '.join(kept)} (checkpoints set aside earlier: remove them yourself if unneeded)"
    else:
        note = (f"resnet3d: --resume auto: {config.run.result_path} held the logs of a run that stopped before "
                f"its first checkpoint ({names}): removed, starting at epoch 1")
    return FolderChanges(remove=earlier, removed_note=note)


def _logs_of_nothing(files: List[Path]) -> bool:
    """Only our logs, and not one row in them."""
    from resnet3d.engine.logs import read_log

    if any(path.suffix != ".log" for path in files):
        return False
    try:
        return not any(read_log(path) for path in files)
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # not ours to judge: kept


def later_checkpoints(config: Config, start: Start) -> FolderChanges:
    """A run continued from an older checkpoint of its folder moves the abandoned run's later
    checkpoints into a folder of their own: kept, but no longer what ``--resume auto`` (which
    takes the most advanced checkpoint) or ``--begin_epoch`` would pick after this run."""
    result_path = Path(config.run.result_path)
    later = ckpt.checkpoints_after(result_path, (start.epoch - 1, start.step_in_epoch), start.source)
    if not later:
        return FolderChanges()
    note = (f"resnet3d: continuing from epoch {start.epoch - 1}"
            + (f", step {start.step_in_epoch}" if start.step_in_epoch else "")
            + f"; the run in {result_path} had gone further: moved its later checkpoints "
            f"({', '.join(p.name for p in later)})")
    return FolderChanges(set_aside=later, set_aside_note=note)


def keep_earlier(path: Path, overwrite: bool) -> None:
    """An earlier run's file of this name is renamed to ``<stem>.<n>.json`` (--overwrite: replaced)."""
    from resnet3d.engine.results import set_aside

    if path.is_file() and not overwrite:
        kept = set_aside(path)
        print(f"resnet3d: {path} already existed: kept it as {kept.name} (--overwrite replaces it)",
              file=sys.stderr, flush=True)
