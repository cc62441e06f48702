"""A training run from a frozen ``Config``: processes, data, model, epochs, logs, checkpoints.

``run(config)`` is what ``resnet3d main`` and ``resnet3d train`` call. It starts one process per
GPU through torch's elastic launcher when asked (``--n_gpus K``, ``--nproc-per-node K``), or
runs in this process (one device, or a worker started by torchrun). Every process then runs
``train_worker``:

1. setup: device, seeds, data sets, the model (``model_start``: fresh, pretrained, or continued
   from a checkpoint, which then supplies its own architecture and input normalisation), the
   result folder (``result_folder``), trainable parameters, optimiser and schedule. Processes
   agree that setup worked before any of them starts training, so a bad flag never leaves the
   others waiting forever.
2. epochs: train (``loop.train_one_epoch``), validate (``loop.validate``), log, checkpoint,
   curves. Only rank 0 writes files.
3. per-video recognition when asked (issue 5: ``resnet3d.engine.predict.run_recognition``).

Exit codes: 0 done, 2 bad input, 3 non-finite loss, 128+signal when pre-empted.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import math
import os
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import numpy as np
import torch
from torch import nn

from resnet3d.config import USED_KEY, Config
from resnet3d.data.loader import decode_share_of, release_workers
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.carried_settings import continued_optimisation, successor_schedule_state
from resnet3d.engine.distributed import (
    DistInfo,
    any_rank,
    barrier,
    broadcast_object,
    destroy_process_group,
    env_info,
    init_process_group,
    launch_local,
    launched_by_torchrun,
)
from resnet3d.engine.logs import (
    TRAIN_BATCH_COLUMNS,
    TRAIN_COLUMNS,
    VAL_COLUMNS,
    NullLog,
    TensorBoardLog,
    TSVLog,
    read_log,
    rows_through,
)
from resnet3d.engine.loop import PaddedShard, StepParts, train_one_epoch, validate
from resnet3d.engine.machines import machine_group
from resnet3d.engine.messages import say, warn
from resnet3d.engine.model_start import (
    Start,
    arch_name,
    build_model,
    check_continued_classes,
    checkpoint_class_order,
    clip_too_small,
    evaluation_settings,
    open_checkpoint,
    shape_only_copy,
)
from resnet3d.engine.compilation import compile_errors_explained, compile_model
from resnet3d.engine.optim import build_optimizer, freeze, load_optimizer_state, trainable_names
from resnet3d.engine.precision import NAMES, autocast_dtype
from resnet3d.engine.result_folder import FolderChanges, fresh_result_path, later_checkpoints
from resnet3d.engine.schedules import Schedule, build_schedule
from resnet3d.engine.run_lock import RunLock
from resnet3d.engine.signals import StopRequest, stop_with_the_launcher, stopped_by
from resnet3d.engine.subsets import require_recognition_videos, require_videos
from resnet3d.engine.worker_process import run_as_worker, say_once
from resnet3d.errors import UserError, missing_package, user_error_text
from resnet3d.fileio import atomic_write_json

EXIT_NONFINITE = 3
# Not validation.json: that is where `resnet3d test` puts its results for the default subset.
VAL_METRICS_NAME = "val_metrics.json"
PREDICT_MODULE = "resnet3d.engine.predict"
T = TypeVar("T")


# -- processes and devices ----------------------------------------------------------------------


def processes_per_node(config: Config) -> int:
    """How many processes ``run`` starts on this machine."""
    hardware = config.hardware
    if hardware.nproc_per_node is not None:
        if hardware.nproc_per_node < 1:
            raise UserError(f"--nproc-per-node must be >= 1 (got {hardware.nproc_per_node})")
        return hardware.nproc_per_node
    if hardware.device == "cpu" or not torch.cuda.is_available():
        return 1
    visible = torch.cuda.device_count() - hardware.gpu_id
    if visible < 1:
        raise UserError(f"--gpu_id {hardware.gpu_id + 1}: only {torch.cuda.device_count()} GPU(s) are visible")
    if hardware.n_gpus is None:
        return visible
    if hardware.n_gpus > visible:
        raise UserError(f"--n_gpus {hardware.n_gpus}: only {visible} GPU(s) are visible from "
                        f"--gpu_id {hardware.gpu_id + 1}")
    return max(hardware.n_gpus, 1)


def resolve_device(config: Config, info: DistInfo) -> torch.device:
    hardware = config.hardware
    if hardware.device == "cpu":
        if (hardware.n_gpus or 0) > 1 and hardware.nproc_per_node is None:
            warn(info, f"--n_gpus {hardware.n_gpus} on the CPU (--no_cuda / --device cpu) runs one process; "
                       f"for {hardware.n_gpus} CPU processes pass --nproc-per-node {hardware.n_gpus}")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        # "auto" picks quietly; a GPU that was asked for (--device cuda, --n_gpus, or `main`
        # without --no_cuda, as the originals trained on GPUs) falls back with one warning line.
        if hardware.device == "cuda" or hardware.n_gpus:
            asked = f" (--n_gpus {hardware.n_gpus})" if hardware.n_gpus else ""
            warn(info, f"CUDA is not available{asked}: running on the CPU (pass --no_cuda, or --device cpu to "
                       "resnet3d train, to say so)")
        return torch.device("cpu")
    index = hardware.gpu_id + info.local_rank
    if index >= torch.cuda.device_count():
        raise UserError(f"process {info.local_rank} on this machine needs GPU {index}, but only "
                        f"{torch.cuda.device_count()} are visible; lower --nproc_per_node / --n_gpus")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA some backward kernels a 3D ResNet needs (adaptive average pooling) have no
        # deterministic version: torch then warns instead of stopping the run at its first step.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# -- the run ------------------------------------------------------------------------------------


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


def require_recognition() -> None:
    if importlib.util.find_spec(PREDICT_MODULE) is None:
        raise UserError("per-video recognition (--test_video / --inference) is not available yet in this build "
                        "of resnet3d; run without it, or update resnet3d")


@dataclass
class Run:
    """What the epochs need, built once by ``_setup``."""

    config: Config
    info: DistInfo
    device: torch.device
    model: nn.Module  # the bare model (what checkpoints hold)
    parts: StepParts
    schedule: Optional[Schedule]
    start: Start
    class_names: List[str]
    train_loader: Any = None
    val_loader: Any = None
    val_targets: Optional[torch.Tensor] = None
    # annotation class index -> the model's output index (-1: a class the model does not know),
    # when an evaluated checkpoint orders its classes differently from the annotation
    val_target_map: Optional[torch.Tensor] = None
    folder_changes: FolderChanges = field(default_factory=FolderChanges)


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
            return _setup(config, info, device)

        state = _on_every_rank(set_up, info, device)
        if state is None:
            return 2

        def change_the_folder() -> bool:  # every check passed everywhere: only now the earlier run's files go
            state.folder_changes.apply(info)
            return True

        if not _on_every_rank(change_the_folder, info, device):
            return 2
        return _epochs(state, stop)
    finally:
        if state is not None:  # (a process that torch's launcher started runs no atexit handler)
            release_workers(state.train_loader, state.val_loader)
        lock.release()
        stop.restore()
        destroy_process_group()


def _on_every_rank(step: Callable[[], T], info: DistInfo, device: torch.device) -> Optional[T]:
    """``step()``'s result, or None when it raised a UserError here or on another rank: every rank
    learns of a failure (the failing rank prints it), so none waits for the others forever. One
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
        _say_failures(failure, info)
        return None
    return result


def _say_failures(failure: Optional[UserError], info: DistInfo) -> None:
    """Rank 0 says each rank's error once: the same error on every rank (a bad flag) was one line
    per process, and two processes' lines ran together."""
    import torch.distributed as dist

    texts: List[Optional[str]] = [None] * info.world_size
    dist.all_gather_object(texts, None if failure is None else user_error_text(failure))
    if not info.is_main:
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


def _setup(config: Config, info: DistInfo, device: torch.device) -> Run:
    from resnet3d.data import DeviceTransform, build_dataset, build_loader, check_decode_device

    run = config.run
    seed_everything(run.manual_seed, run.deterministic, device)
    if run.batch_size < 1:
        raise UserError(f"--batch_size {run.batch_size}: must be 1 or more (it is the global batch)")
    for value, names, least in ((run.checkpoint_every, "--checkpoint / --checkpoint-every / [run] checkpoint_every", 1),
                                (run.val_every, "--val-every / [run] val_every", 1),
                                (run.max_steps_per_epoch, "--max-steps-per-epoch / [run] max_steps_per_epoch (0: all)", 0),
                                (run.n_epochs, "--n_epochs / --epochs / [run] n_epochs", 0)):
        if value < least:  # each ended in a ZeroDivisionError after an epoch, or trained nothing silently
            raise UserError(f"{names}: must be {least} or more (got {value})")
    if run.batch_size % info.world_size:
        raise UserError(f"--batch_size {run.batch_size} is the global batch and must split evenly among "
                        f"{info.world_size} processes; use a multiple of {info.world_size}")
    local_batch = run.batch_size // info.world_size
    workers = -(-config.data.num_workers // max(info.local_world_size, 1))
    start = Start(epoch=1)
    opened = open_checkpoint(config, start)
    config = evaluation_settings(config, opened[1], start, continued=opened[0] is not None)  # before the data sets
    if opened[0] is not None and config.run.train:
        config = continued_optimisation(config, opened[1], start)
    run = config.run
    train_set = build_dataset(config.data, "training", seed=run.manual_seed) if run.train else None
    val_set = build_dataset(config.data, "validation", seed=run.manual_seed) if run.val else None
    if train_set is not None:
        require_videos(len(train_set.videos), config.data.annotation_path, "training",
                       "fix the annotation's subset names")
    if val_set is not None:
        require_videos(len(val_set.videos), config.data.annotation_path, "validation",
                       "fix the annotation's subset names, or pass --no_val to train without validation")
    if config.inference is not None and (run.train or run.val):  # recognition follows them, maybe hours later
        done = (("training", train_set), ("validation", val_set))
        read = {name: len(s.videos) for name, s in done if s is not None}
        require_recognition_videos(config.data, config.inference.subset, read)
        importlib.import_module(PREDICT_MODULE).options_from_config(config)  # its settings, checked now too
    some_set = train_set or val_set
    class_names = list(some_set.class_names) if some_set is not None else []

    if run.train and opened[0] is not None:
        check_continued_classes(opened[0], opened[1], class_names)
    model, config, start = build_model(config, len(class_names) or None, opened, start)
    if run.train:
        _refuse_other_batching_mid_epoch(start, run.batch_size, info.world_size)
    val_target_map = None
    if start.class_names is not None:
        class_names, val_target_map = checkpoint_class_order(start, class_names, _n_outputs_of(model), info)
    for note in start.notes:
        say(info, f"resnet3d: {note}")
    folder_changes = FolderChanges()  # (made once the whole set-up passed: train_worker)
    if start.source is None and run.train:
        folder_changes = fresh_result_path(config)
    elif run.train and info.is_main:
        folder_changes = later_checkpoints(config, start)
    if config.inference is not None:
        require_recognition()
    if run.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise missing_package("--tensorboard", "tensorboard", "tensorboard")
    data = config.data  # possibly with the checkpoint's normalisation
    model.to(device)
    trainable = None
    if run.train:
        finetune = config.finetune
        trainable = freeze(model, trainable_names(model, finetune.ft_begin_module, finetune.freeze_params,
                                                  finetune.ft_begin_index))
        n_train = sum(p.numel() for p in trainable)
        n_all = sum(p.numel() for p in model.parameters())
        if n_train < n_all:
            say(info, f"resnet3d: training {n_train:,} of {n_all:,} parameters")
        if config.optim.lr_scheduler == "plateau" and not run.val:
            say(info, "resnet3d: note: --lr_scheduler plateau lowers the learning rate on the validation loss, and "
                      "--no_val gives none: it stays where it starts (as in the successor)")
    stepped: nn.Module = model
    if config.hardware.batchnorm_sync and info.distributed:
        if device.type == "cuda":
            stepped = nn.SyncBatchNorm.convert_sync_batchnorm(stepped)
        else:
            warn(info, "--batchnorm_sync needs CUDA (SyncBatchNorm); each CPU process keeps its own statistics")
    # channels_last_3d pays on CUDA (cuDNN, bf16); on the CPU it measured 2x slower (oneDNN,
    # one thread, ResNet-10), so there the input is made contiguous instead.
    channels_last = config.run.channels_last and device.type == "cuda"
    if channels_last:
        stepped = stepped.to(memory_format=torch.channels_last_3d)
    eval_model = stepped  # evaluation needs no DDP: each process scores its own clips
    if info.distributed and run.train:
        stepped = nn.parallel.DistributedDataParallel(stepped, device_ids=[device] if device.type == "cuda" else None)
    if config.run.compile_mode != "none":
        stepped = compile_model(stepped, config.run.compile_mode)
        eval_model = stepped if not info.distributed else eval_model

    dtype = autocast_dtype(config.run.precision, device)
    if run.train and dtype is not None and device.type == "cpu":
        # measured with torch 2.13 on an AVX-512-bf16 CPU: the backward of a 3D ResNet in bf16
        # did not finish in minutes, and a lone stem convolution crashed the process
        raise UserError(f"--precision {config.run.precision} on the CPU: torch's bf16 3D convolutions hang or crash "
                        "in training there; use --precision fp32 (the default on the CPU), or train on a GPU")
    check_decode_device(data.decode_device, device)
    optimizer = build_optimizer(trainable, config.optim) if run.train else None
    schedule = build_schedule(config.optim, run.n_epochs) if run.train else None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    if run.train and start.ours:
        _restore_training_state(start, optimizer, schedule, scaler, info)
    out_dtype = torch.float32
    parts = StepParts(
        model=stepped, eval_model=eval_model, optimizer=optimizer, scaler=scaler, device=device, amp_dtype=dtype,
        train_transform=DeviceTransform.from_config(data, train=True, out_dtype=out_dtype),
        eval_transform=DeviceTransform.from_config(data, train=False, out_dtype=out_dtype),
        dist=info, freeze_bn=config.finetune.freeze_bn, channels_last=channels_last,
    )
    state = Run(config=config, info=info, device=device, model=model, parts=parts, schedule=schedule, start=start,
                class_names=class_names, val_target_map=val_target_map, folder_changes=folder_changes)
    if train_set is not None:
        state.train_loader = build_loader(train_set, local_batch, train=True, num_workers=workers,
                                          distributed=info.distributed, seed=run.manual_seed,
                                          pin_memory=device.type == "cuda")
        if run.train and _last_batch_of_one_fails(state):
            # found at the first such batch, the error would come after steps that wrote log rows,
            # and those rows (a run with no checkpoint) would then stand in the corrected command's way
            raise _single_value_batch_error(state)
    if val_set is not None:
        state.val_loader = build_loader(val_set, local_batch, train=False, num_workers=workers,
                                        distributed=info.distributed, seed=run.manual_seed,
                                        pin_memory=device.type == "cuda")
        state.val_targets = torch.tensor([v.target for v in val_set.videos], dtype=torch.int64)
        if val_target_map is not None:
            state.val_targets = _mapped_targets(state.val_targets, val_target_map)
    if info.is_main:
        Path(run.result_path).mkdir(parents=True, exist_ok=True)
        # A run that only validates or tests keeps the training run's opts.json beside it.
        name = "opts.json" if run.train else "opts_eval.json"
        if not run.train:  # an earlier evaluation's record is kept, as its results are
            _keep_earlier(Path(run.result_path) / name, run.overwrite)
        record = {**config.to_dict(), USED_KEY: {"device": str(device), "processes": info.world_size,
                                                 "precision": NAMES[dtype], "channels_last": channels_last}}
        atomic_write_json(Path(run.result_path) / name, record, indent=2)
    return state


def _refuse_other_batching_mid_epoch(start: Start, batch_size: int, world_size: int) -> None:
    """An interrupted epoch goes on after the batches it did, counted in its own batch size and
    split among its own processes: with others, clips would be skipped or seen twice in it."""
    if not start.step_in_epoch or start.interrupted_batching is None:
        return
    saved_batch, saved_world = start.interrupted_batching
    if (saved_batch, saved_world) == (batch_size, world_size):
        return
    raise UserError(
        f"{start.source} stopped in the middle of epoch {start.epoch} (step {start.step_in_epoch}) with --batch_size "
        f"{saved_batch} on {saved_world} process(es); this run has --batch_size {batch_size} on {world_size}: the "
        f"rest of that epoch needs the same, to see each clip once. Finish the epoch with --batch_size {saved_batch}"
        + (f" on {saved_world} process(es)" if saved_world != world_size else "")
        + ", then stop the run at an epoch's end (Ctrl-C during validation) to change it")


def _restore_training_state(start: Start, optimizer, schedule: Schedule, scaler, info: DistInfo) -> None:
    carried = start.ours
    if carried.get("optimizer"):
        try:
            load_optimizer_state(optimizer, _one_group(carried["optimizer"], optimizer))
        except (ValueError, KeyError) as error:
            start.notes.append(f"the optimizer state of {start.source} does not fit ({error}); momentum restarts")
            warn(info, start.notes[-1])
    if carried.get("foreign"):
        theirs = successor_schedule_state(carried.get("scheduler"), schedule.name, schedule.values(start.epoch)[0])
        if theirs is not None:
            schedule.load_state_dict(theirs)
        else:
            warn(info, f"{start.source} is a {carried['foreign']} checkpoint: its learning-rate schedule state is not "
                       "carried over; the schedule follows the flags from the continued epoch on")
        return
    if carried.get("scheduler"):
        schedule.load_state_dict(carried["scheduler"])
    if scaler is not None and carried.get("scaler"):
        scaler.load_state_dict(carried["scaler"])


def _one_group(saved: Dict[str, Any], optimizer) -> Dict[str, Any]:
    """The successor's fine-tuning optimiser holds one group per parameter; ours holds one group.
    Same parameters in the same order: merge its groups so momentum carries over."""
    groups = saved.get("param_groups", [])
    if len(groups) <= 1 or len(optimizer.param_groups) != 1:
        return saved
    params = [index for group in groups for index in group["params"]]
    merged = {key: value for key, value in groups[0].items() if key != "params"}
    merged["params"] = params
    return {"state": saved.get("state", {}), "param_groups": [merged]}


def _restore_rng(start: Start, info: DistInfo) -> None:
    states = start.ours.get("rng_states")
    state = states[info.rank] if states and len(states) == info.world_size else start.ours.get("rng_state")
    if state:
        ckpt.set_rng_state(state)


# -- epochs -------------------------------------------------------------------------------------


def _open_logs(state: Run) -> Dict[str, Any]:
    config, info = state.config, state.info
    result_path = Path(config.run.result_path)
    done = state.start.epoch - 1
    continuing = state.start.source is not None
    epochs_done = rows_through(done) if continuing else None
    steps_done = rows_through(done, state.start.step_in_epoch) if continuing else None
    logs: Dict[str, Any] = {"train": NullLog(), "batch": NullLog(), "val": NullLog(), "tb": NullLog()}
    if not info.is_main:
        return logs
    if config.run.train:
        logs["train"] = TSVLog(result_path / "train.log", TRAIN_COLUMNS, epochs_done)
        if config.run.batch_log:
            logs["batch"] = TSVLog(result_path / "train_batch.log", TRAIN_BATCH_COLUMNS, steps_done)
        if config.run.val:
            logs["val"] = TSVLog(result_path / "val.log", VAL_COLUMNS, epochs_done)
    if config.run.tensorboard:
        logs["tb"] = TensorBoardLog(result_path / "tensorboard", purge_step=state.start.epoch)
    return logs


def _payload(state: Run, epoch: int, best: float, step_in_epoch: int = 0,
             partial: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    """Everything a continued run needs; every rank calls this (RNG states are gathered)."""
    rng = ckpt.rng_state()
    rng_states = [rng]
    if state.info.distributed:
        import torch.distributed as dist

        rng_states = [None] * state.info.world_size
        dist.all_gather_object(rng_states, rng)
    model_config = state.model.model_config
    payload = {
        "epoch": epoch,
        "arch": arch_name(model_config),
        "model_config": model_config,
        "state_dict": state.model.state_dict(),
        "optimizer": state.parts.optimizer.state_dict() if state.parts.optimizer is not None else None,
        "scheduler": state.schedule.state_dict() if state.schedule is not None else None,
        "scaler": state.parts.scaler.state_dict() if state.parts.scaler is not None else None,
        "config": state.config.to_dict(),
        "class_names": list(state.class_names),
        "input_norm": state.config.data.input_norm.to_dict(),
        "sample_size": state.config.data.sample_size,
        "sample_duration": state.config.data.sample_duration,
        "rng_state": rng,
        "rng_states": rng_states,
        "best_metric": None if best == -math.inf else best,
        "world_size": state.info.world_size,
    }
    if step_in_epoch:
        payload["step_in_epoch"] = step_in_epoch
        payload["partial_sums"] = dict(partial or {})
    return payload


def _save(state: Run, path: Path, payload: Dict[str, Any]) -> None:
    """Rank 0 writes; every rank learns whether it could (a full disk stops them all at once,
    instead of leaving the others waiting in their next collective)."""
    failure: Optional[str] = None
    if state.info.is_main:
        try:
            ckpt.save_checkpoint(path, payload)
        except UserError as error:
            failure = f"{error}; then --resume auto continues from the last checkpoint this run wrote, if any"
    if state.info.distributed:
        failure = broadcast_object(failure)
        if failure and not state.info.is_main:
            failure = "stopped: rank 0 could not write its checkpoint (its error says why)"
    if failure:
        raise UserError(failure)


def _train_batches(state: Run, epoch: int, skip: int, total: int):
    """This process's batches of ``epoch``, from batch ``skip`` on, at most ``total`` in all.

    A continued epoch restores the RNG states after its loader has started (which draws from
    the global generator), so the steps that follow draw exactly what the unbroken run drew.
    """
    from resnet3d.data import set_epoch
    from resnet3d.data.loader import WorkerLoader

    loader = state.train_loader
    set_epoch(loader, epoch)
    if skip:
        # A continued epoch: the same order and the same clips, minus the batches already done.
        indices = list(iter(loader.sampler))[skip * loader.batch_size:]
        loader = WorkerLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=indices, num_workers=loader.num_workers,
            pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn, collate_fn=loader.collate_fn,
            **({"prefetch_factor": loader.prefetch_factor} if loader.num_workers else {}))
    iterator = iter(loader)
    if skip:
        _restore_rng(state.start, state.info)
    return itertools.islice(iterator, max(total - skip, 0))


def _padded_shard(state: Run) -> Optional[PaddedShard]:
    """Where this process's training share repeats clips (None: it repeats none)."""
    sampler, info = state.train_loader.sampler, state.info
    n_items = getattr(sampler, "n_items", 0)
    if not info.distributed or not getattr(sampler, "pad", False) or n_items % info.world_size == 0:
        return None
    return PaddedShard(n_items=n_items, world_size=info.world_size, rank=info.rank,
                       local_batch=state.train_loader.batch_size)


def _steps_per_epoch(state: Run) -> int:
    steps = len(state.train_loader)
    cap = state.config.run.max_steps_per_epoch
    return min(steps, cap) if cap else steps


def _epochs(state: Run, stop: StopRequest) -> int:
    config, info, start = state.config, state.info, state.start
    run = config.run
    result_path = Path(run.result_path)
    if not run.train and not run.val and config.inference is None:
        say(info, "resnet3d: nothing to do: --no_train and --no_val without --test_video or --inference")
        return 0
    if not run.train:
        if run.val:
            _validate_only(state)
        return _recognition(state, stop)
    logs = _open_logs(state)
    if not start.step_in_epoch:
        _restore_rng(start, info)  # (a continued epoch restores them once its loader started)
    best = start.best_metric
    total = _steps_per_epoch(state)
    last_saved: Optional[Path] = start.source
    if start.epoch > run.n_epochs:
        say(info, f"resnet3d: {start.epoch - 1} epoch(s) already done of --n_epochs {run.n_epochs}: no training left")
    try:
        for epoch in range(start.epoch, run.n_epochs + 1):
            skip = start.step_in_epoch if epoch == start.epoch else 0
            sums = start.partial_sums if skip else None
            lr_at_start = state.schedule.values(epoch, 0.0)[0]

            def on_batch(row: Dict[str, float], epoch: int = epoch) -> None:
                logs["batch"].log(epoch=epoch, batch=row["batch"], iter=(epoch - 1) * total + row["batch"],
                                  loss=row["loss"], acc=row["acc"], lr=row["lr"])

            with _clip_errors_explained(state):
                result = train_one_epoch(state.parts, _train_batches(state, epoch, skip, total), epoch,
                                         state.schedule, total, start_step=skip, start_sums=sums,
                                         stop_requested=lambda: stop.requested, on_batch=on_batch,
                                         decode_share=decode_share_of(state.train_loader),
                                         padded=_padded_shard(state))
            if result.nonfinite:
                kept = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                say(info, f"resnet3d: error: non-finite loss at {result.nonfinite}; stopped without saving: {kept}. "
                          "Lower --learning_rate (or check the data) and continue with --resume auto.", sys.stderr)
                return EXIT_NONFINITE
            if result.loader_died:
                kept = f"the last checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                if result.steps > skip:  # steps of this epoch were taken: kept as an interrupted epoch
                    kept = f"saved {result_path / ckpt.INTERRUPTED_NAME}"
                    _save(state, result_path / ckpt.INTERRUPTED_NAME,
                          _payload(state, epoch - 1, best, result.steps, result.sums))
                say(info, f"resnet3d: error: at epoch {epoch}, step {result.steps} of {total}: {result.loader_died}; "
                          f"{kept}. Continue with --resume auto.", sys.stderr)
                return 1
            if result.data_error:
                kept = f"the last checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                if result.steps > skip:  # the steps taken are kept as an interrupted epoch
                    kept = f"saved {result_path / ckpt.INTERRUPTED_NAME}"
                    _save(state, result_path / ckpt.INTERRUPTED_NAME,
                          _payload(state, epoch - 1, best, result.steps, result.sums))
                raise UserError(f"{result.data_error}; stopped at epoch {epoch}, step {result.steps} of {total}: "
                                f"{kept}. Once that is fixed, continue with --resume auto")
            if result.stopped and result.steps < total:
                path = result_path / ckpt.INTERRUPTED_NAME
                _save(state, path, _payload(state, epoch - 1, best, result.steps, result.sums))
                say(info, f"resnet3d: stopped by {stop.name or 'a signal on another process'} at epoch {epoch}, "
                          f"step {result.steps} of {total}; saved {path}. Continue with --resume auto.", sys.stderr)
                return stop.exit_code if stop.requested else 128 + 15
            logs["train"].log(epoch=epoch, loss=result.loss, acc=result.acc, lr=lr_at_start)
            logs["tb"].scalars(epoch, **{"train/loss": result.loss, "train/acc": result.acc, "train/lr": lr_at_start})
            line = (f"epoch {epoch}/{run.n_epochs}  train loss {result.loss:.4f}  acc {result.acc:.4f}"
                    f"  lr {lr_at_start:.3g}"
                    f"  {result.clips_per_s:.1f} clips/s  data wait {100 * result.data_wait_share:.0f}%")
            bad = [result.bad_frames, result.bad_videos]  # training's, then validation's added
            if run.val and (epoch % run.val_every == 0 or epoch == run.n_epochs):
                with _clip_errors_explained(state), _epoch_kept_if_validation_fails(state, epoch, best):
                    metrics = validate(state.parts, _val_batches(state, epoch), state.val_targets,
                                       _n_outputs(state), total_steps=len(state.val_loader), epoch=epoch,
                                       decode_share=decode_share_of(state.val_loader))
                logs["val"].log(epoch=epoch, loss=metrics["loss"], acc=metrics["acc"], video_acc=metrics["video_acc"])
                logs["tb"].scalars(epoch, **{"val/loss": metrics["loss"], "val/acc": metrics["acc"],
                                             "val/video_acc": metrics["video_acc"]})
                line += (f"  |  val loss {metrics['loss']:.4f}  acc {metrics['acc']:.4f}"
                         f"  video acc {metrics['video_acc']:.4f}")
                bad = [bad[0] + int(metrics["bad_frames"]), bad[1] + int(metrics["bad_videos"])]
                state.schedule.observe(metrics["loss"])
                if metrics["acc"] > best:
                    best = metrics["acc"]
                    _save(state, result_path / ckpt.BEST_NAME, _payload(state, epoch, best))
            say(info, line + _bad_data_note(*bad))
            stopping = any_rank(stop.requested, state.device)
            if epoch % run.checkpoint_every == 0 or epoch == run.n_epochs or stopping:
                last_saved = ckpt.epoch_path(result_path, epoch)
                _save(state, last_saved, _payload(state, epoch, best))
            if info.is_main and run.curves:
                _plot(state)
            if stopping:
                say(info, f"resnet3d: stopped by {stop.name or 'a signal on another process'} after epoch {epoch}; "
                          f"saved {last_saved}. Continue with --resume auto.", sys.stderr)
                return stop.exit_code if stop.requested else 128 + 15
        barrier()
    finally:
        for log in logs.values():
            log.close()
    return _recognition(state, stop)


@contextlib.contextmanager
def _epoch_kept_if_validation_fails(state: Run, epoch: int, best: float) -> Iterator[None]:
    """A validation set that gives out (every video unreadable, its folder gone) ended the run
    after the epoch's training and before its checkpoint: the epoch was lost with the error. On
    one process the epoch is saved first; the error then says where."""
    try:
        yield
    except UserError as error:
        if state.info.distributed:
            raise
        path = ckpt.epoch_path(Path(state.config.run.result_path), epoch)
        _save(state, path, _payload(state, epoch, best))
        raise UserError(f"{user_error_text(error)}; in the validation after epoch {epoch}: its training is saved in "
                        f"{path}. Fix the validation data (or leave validation out with --no_val), then continue "
                        "with --resume auto") from None


@contextlib.contextmanager
def _clip_errors_explained(state: Run) -> Iterator[None]:
    """torch's errors for clips the model cannot take, and torch.compile's failures (at the first
    step, or at a new batch shape), as one line with the flags that fix them."""
    with compile_errors_explained(state.config.run.compile_mode, "leave out --compile, or --compile-mode none"):
        try:
            yield
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
            raise _single_value_batch_error(state) from None
        except RuntimeError as error:  # (a clip too small for the model fails compiled models' tracing too)
            data = state.config.data
            too_small = clip_too_small(error, state.model.model_config, data.sample_duration, data.sample_size)
            if too_small is None:
                raise
            raise too_small from None


def _last_batch_of_one_fails(state: Run) -> bool:
    """Whether this process's epochs end in a batch of one clip that BatchNorm cannot train on:
    a BatchNorm layer (not frozen) that sees a single value per channel for one clip."""
    loader = state.train_loader
    if len(loader.sampler) % loader.batch_size != 1 or _steps_per_epoch(state) < len(loader):
        return False
    if state.config.finetune.freeze_bn:
        return False
    config = state.model.model_config
    shape_only = shape_only_copy(config)
    values_per_channel: List[int] = []
    for module in shape_only.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(lambda _, args: values_per_channel.append(args[0][0, 0].numel()))
    data = state.config.data
    channels = int(config.get("n_input_channels", 3))
    try:
        shape_only(torch.zeros(1, channels, data.sample_duration, data.sample_size, data.sample_size, device="meta"))
    except RuntimeError:  # a clip too small for the model: the first step says so
        return False
    return min(values_per_channel, default=2) == 1


def _single_value_batch_error(state: Run) -> UserError:
    """BatchNorm cannot train on one value per channel: a batch of one clip whose last feature
    map is 1x1x1 (tiny clips, or the last, partial batch of an epoch)."""
    data, run = state.config.data, state.config.run
    n_train = len(state.train_loader.dataset)
    world = state.info.world_size
    shares = ""
    if world > 1:  # each process batches its own share: the global numbers alone do not show the 1
        shares = (f"; each of the {world} processes takes {len(state.train_loader.sampler)} of them in batches "
                  f"of {state.train_loader.batch_size}")
    return UserError(
        f"a training batch of one clip leaves a BatchNorm layer a single value per channel at "
        f"--sample_size {data.sample_size} --sample_duration {data.sample_duration}: pass a --batch_size "
        f"that does not leave a last batch of one clip ({n_train} training clips per epoch, --batch_size "
        f"{run.batch_size}{shares}), or a larger --sample_size")


def _n_outputs(state: Run) -> int:
    return int(state.model.model_config["n_classes"])


def _val_batches(state: Run, epoch: int):
    from resnet3d.data import set_epoch

    set_epoch(state.val_loader, epoch)
    if state.val_target_map is None:
        return state.val_loader
    target_map = state.val_target_map
    return ({**batch, "target": _mapped_targets(torch.as_tensor(batch["target"]), target_map)}
            for batch in state.val_loader)


def _mapped_targets(targets: torch.Tensor, target_map: torch.Tensor) -> torch.Tensor:
    """Annotation class indices -> the model's output indices; unlabelled (-1) stays -1."""
    mapped = target_map[targets.clamp(min=0)]
    return torch.where(targets >= 0, mapped, targets)


def _n_outputs_of(model: nn.Module) -> int:
    return int(model.model_config.get("n_classes", 0))


def _plot(state: Run) -> None:
    from resnet3d.report import plot_curves

    result_path = Path(state.config.run.result_path)
    try:
        plot_curves(read_log(result_path / "train.log"), read_log(result_path / "val.log"), result_path / "curves.png",
                    title=f"{arch_name(state.model.model_config)} on {state.config.data.dataset}")
    except Exception as error:  # a plotting problem must never stop training
        warn(state.info, f"could not draw curves.png ({type(error).__name__}: {error}); training goes on without it")
        state.config = replace(state.config, run=replace(state.config.run, curves=False))


def _bad_data_note(bad_frames: int, bad_videos: int) -> str:
    """The end of an epoch line: stand-in frames and replaced videos (training and validation)."""
    if not bad_frames and not bad_videos:
        return ""
    return f"  bad frames {bad_frames}, replaced videos {bad_videos} (see the log above)"


def _validate_only(state: Run) -> None:
    """--no_train with validation: one pass, printed and kept in val_metrics.json (the training
    run's val.log is left alone)."""
    epoch = state.start.epoch - 1
    with _clip_errors_explained(state):
        metrics = validate(state.parts, _val_batches(state, max(epoch, 0)), state.val_targets, _n_outputs(state),
                           total_steps=len(state.val_loader), epoch=epoch,
                           decode_share=decode_share_of(state.val_loader))
    say(state.info, f"validation  loss {metrics['loss']:.4f}  acc {metrics['acc']:.4f}"
                    f"  video acc {metrics['video_acc']:.4f}"
                    f"  ({int(metrics['count'])} clips)"
                    + _bad_data_note(int(metrics["bad_frames"]), int(metrics["bad_videos"])))
    if state.info.is_main:
        path = Path(state.config.run.result_path) / VAL_METRICS_NAME
        _keep_earlier(path, state.config.run.overwrite)
        atomic_write_json(path, {"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}, indent=2)


def _keep_earlier(path: Path, overwrite: bool) -> None:
    """An earlier run's file of this name is renamed to ``<stem>.<n>.json`` (--overwrite: replaced)."""
    from resnet3d.engine.results import set_aside

    if path.is_file() and not overwrite:
        kept = set_aside(path)
        print(f"resnet3d: {path} already existed: kept it as {kept.name} (--overwrite replaces it)",
              file=sys.stderr, flush=True)


def _recognition(state: Run, stop: StopRequest) -> int:
    if state.config.inference is None:
        return 0
    if stop.requested:  # a signal after the last epoch's check: recognition has not begun
        raise stopped_by(stop.signal, f"stopped by {stop.name} before recognition began; the run's checkpoints "
                                      "are saved: recognise with resnet3d test, or --no_train --resume_path")
    stop.at_once = True  # recognition keeps what it scored whenever it stops: no step to finish first
    predict = importlib.import_module(PREDICT_MODULE)
    predict.run_recognition(state.config, model=state.model, device=state.device, dist=state.info,
                            class_names=state.class_names or None)
    return 0
