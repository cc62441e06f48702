"""A training run from a frozen ``Config``: processes, data, model, epochs, logs, checkpoints.

``run(config)`` is what ``resnet3d main`` and ``resnet3d train`` call. It starts one process per
GPU through torch's elastic launcher when asked (``--n_gpus K``, ``--nproc-per-node K``), or
runs in this process (one device, or a worker started by torchrun). Every process then runs
``train_worker``:

1. setup (``run_setup``): device, seeds, data sets, the model (``model_start``: fresh, pretrained,
   or continued from a checkpoint, which then supplies its own architecture and input
   normalisation), the result folder (``result_folder``), trainable parameters, optimiser and
   schedule. Processes agree that setup worked before any of them starts training, so a bad flag
   never leaves the others waiting forever.
2. epochs (``epochs``): train (``loop.train_one_epoch``), validate (``loop.validate``), log,
   checkpoint (``run_checkpoints``), curves. Only rank 0 writes files.
3. per-video recognition when asked (issue 5: ``resnet3d.engine.predict.run_recognition``).

Exit codes: 0 done, 1 a loader worker died, 2 bad input, 3 non-finite loss, 128+signal when pre-empted.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from resnet3d.config import Config
from resnet3d.data.loader import release_workers
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.distributed import (
    destroy_process_group,
    env_info,
    init_process_group,
    launch_local,
    launched_by_torchrun,
    on_every_rank,
)
from resnet3d.engine.epochs import run_epochs
from resnet3d.engine.machines import machine_group
from resnet3d.engine.messages import data_warnings_per_machine, say
from resnet3d.engine.process_setup import processes_per_node, resolve_device
from resnet3d.engine.run_lock import RunLock
from resnet3d.engine.run_setup import require_recognition, set_up_run
from resnet3d.engine.run_state import Run
from resnet3d.engine.signals import StopRequest, stop_with_the_launcher
from resnet3d.engine.worker_process import run_as_worker
from resnet3d.errors import UserError


def run(config: Config) -> int:
    """Train/validate/test as ``config`` says; start local worker processes when asked."""
    if config.inference is not None:
        require_recognition()
    continuing = config.run.resume or config.run.begin_epoch > 1
    if config.run.train and continuing and config.run.overwrite:
        # (--overwrite was ignored: the run continued, and nothing was started over)
        raise UserError("--overwrite starts a run over, removing the earlier one's logs and checkpoints, and "
                        "--resume (--resume_path, --begin_epoch) continues it from a checkpoint: give one of the two")
    if launched_by_torchrun():
        stop_with_the_launcher(os.getppid())  # (torchrun's agent, killed alone, forwards nothing either)
        return train_worker(config)
    nproc = processes_per_node(config)
    machines = machine_group(config.hardware.nodes, config.hardware.dist_url)
    if nproc > 1 or machines is not None:
        processes = nproc * (machines.count if machines else 1)
        if machines is not None and config.run.batch_size % processes:
            per_machine = config.run.batch_size / machines.count
            shown = f"{per_machine:g}" if per_machine == int(per_machine) else f"{per_machine:.2f}"
            raise UserError(f"a global batch of {config.run.batch_size} gives each of the {machines.count} machines "
                            f"{shown} clips, which must split evenly among its {nproc} processes: use a batch per "
                            f"machine that is a multiple of {nproc} (resnet3d main --world_size: --batch_size is "
                            f"per machine; resnet3d train --nodes: a global batch_size that is a multiple of "
                            f"{processes})")
        if config.run.batch_size % processes:
            raise UserError(f"--batch_size {config.run.batch_size} is the global batch and must split evenly "
                            f"among {processes} processes; use a multiple of {processes}")
        if machines is not None:
            print(f"resnet3d: {machines.describe()}, {nproc} process(es) here", file=sys.stderr, flush=True)
        results = launch_local(nproc, worker_entry, config.to_dict(), machines=machines)
        return max(int(status or 0) for status in results.values())
    return train_worker(config)


def worker_entry(config_dict: Dict[str, Any]) -> int:
    """The entry point of each process ``launch_local`` starts (module level: it is pickled)."""
    return run_as_worker(lambda: train_worker(Config.from_dict(config_dict, "the launcher")), STOPPED_AT_ONCE)


STOPPED_AT_ONCE = ("stopped at once (a second Ctrl-C, or a Ctrl-C while starting): nothing of the current epoch "
                   "is saved; --resume auto continues from the last checkpoint, if any")


def train_worker(config: Config) -> int:
    info = env_info()
    device = resolve_device(config, info)
    init_process_group(info, device, config.hardware.dist_backend)
    # a run that does not train has no step to finish and nothing to save: it stops at the first signal
    stop = StopRequest(at_once=not config.run.train).install()
    lock = RunLock(Path(config.run.result_path))
    state: Optional[Run] = None
    try:
        def set_up() -> Run:
            if config.run.train and info.is_main:
                lock.acquire()  # before anything in the folder is read, removed or written
                partial = ckpt.remove_partial_writes(Path(config.run.result_path))
                if partial:
                    say(info, f"resnet3d: removed what a killed run left of checkpoint writes: {', '.join(partial)}")
            # (every process of a machine reads the same annotation and files, and fits its loaders
            # to the same shared memory: the data code's warnings of the set-up, once per machine)
            with data_warnings_per_machine(info):
                return set_up_run(config, info, device)

        state = on_every_rank(set_up, info, device)
        if state is None:
            return 2

        def change_the_folder() -> bool:  # every check passed everywhere: only now the earlier run's files go
            state.folder_changes.apply(info)
            return True

        if not on_every_rank(change_the_folder, info, device):
            return 2
        return run_epochs(state, stop)
    finally:
        if state is not None:  # (a process that torch's launcher started runs no atexit handler)
            release_workers(state.train_loader, state.val_loader)
        lock.release()
        stop.restore()
        destroy_process_group()
