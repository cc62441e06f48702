"""A training process's set-up: from the config to a ``Run`` its epochs can start on.

Seeds, the checkpoint to continue or evaluate and the settings it carries, data sets, the model
(``model_start``), the result folder's changes (``result_folder``, applied by the trainer once
every process's set-up passed), trainable parameters, DDP, compilation, optimiser, schedule, the
continued run's training state (``run_checkpoints``), loaders and the run's ``opts.json``. The
checks that can fail are made here, before the first step and before the result folder changes.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import List

import torch
from torch import nn

from resnet3d.config import USED_KEY, Config
from resnet3d.engine.carried_settings import continued_optimisation
from resnet3d.engine.compilation import compile_model
from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.loop import StepParts
from resnet3d.engine.messages import say, warn
from resnet3d.engine.model_start import (
    Start,
    build_model,
    check_continued_classes,
    checkpoint_class_order,
    evaluation_settings,
    open_checkpoint,
    shape_only_copy,
)
from resnet3d.engine.optim import build_optimizer, freeze, trainable_names
from resnet3d.engine.precision import NAMES, autocast_dtype
from resnet3d.engine.process_setup import seed_everything
from resnet3d.engine.result_folder import FolderChanges, fresh_result_path, keep_earlier, later_checkpoints
from resnet3d.engine.run_checkpoints import restore_training_state
from resnet3d.engine.run_state import Run, steps_per_epoch
from resnet3d.engine.schedules import build_schedule
from resnet3d.engine.subsets import require_recognition_videos, require_videos
from resnet3d.errors import UserError, missing_package
from resnet3d.fileio import atomic_write_json


PREDICT_MODULE = "resnet3d.engine.predict"


def require_recognition() -> None:
    if importlib.util.find_spec(PREDICT_MODULE) is None:
        raise UserError("per-video recognition (--test_video / --inference) is not available yet in this build "
                        "of resnet3d; run without it, or update resnet3d")


def set_up_run(config: Config, info: DistInfo, device: torch.device) -> Run:
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
        class_names, val_target_map = checkpoint_class_order(start, class_names, n_outputs_of(model), info)
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
        restore_training_state(start, optimizer, schedule, scaler, info)
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
            raise single_value_batch_error(state)
    if val_set is not None:
        state.val_loader = build_loader(val_set, local_batch, train=False, num_workers=workers,
                                        distributed=info.distributed, seed=run.manual_seed,
                                        pin_memory=device.type == "cuda")
        state.val_targets = torch.tensor([v.target for v in val_set.videos], dtype=torch.int64)
        if val_target_map is not None:
            state.val_targets = mapped_targets(state.val_targets, val_target_map)
    if info.is_main:
        Path(run.result_path).mkdir(parents=True, exist_ok=True)
        # A run that only validates or tests keeps the training run's opts.json beside it.
        name = "opts.json" if run.train else "opts_eval.json"
        if not run.train:  # an earlier evaluation's record is kept, as its results are
            keep_earlier(Path(run.result_path) / name, run.overwrite)
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


def _last_batch_of_one_fails(state: Run) -> bool:
    """Whether this process's epochs hold a batch of one clip that BatchNorm cannot train on (the
    last, or every batch when each process's batch is one clip): a BatchNorm layer (not frozen)
    that sees a single value per channel for one clip."""
    loader = state.train_loader
    every_batch = loader.batch_size == 1  # (a global --batch_size 2 on two processes, say)
    if not every_batch and (len(loader.sampler) % loader.batch_size != 1 or steps_per_epoch(state) < len(loader)):
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


def single_value_batch_error(state: Run) -> UserError:
    """BatchNorm cannot train on one value per channel: a batch of one clip whose last feature
    map is 1x1x1 (tiny clips, or the last, partial batch of an epoch)."""
    data, run = state.config.data, state.config.run
    n_train = len(state.train_loader.dataset)
    world = state.info.world_size
    if state.train_loader.batch_size == 1:  # every batch, not the last one alone
        fix = f"pass a --batch_size of {2 * world} or more"
        if world > 1:
            fix += (f" (--batch_size {run.batch_size} is the global batch: each of the {world} processes takes "
                    "batches of 1)")
    else:
        shares = ""
        if world > 1:  # each process batches its own share: the global numbers alone do not show the 1
            shares = (f"; each of the {world} processes takes {len(state.train_loader.sampler)} of them in "
                      f"batches of {state.train_loader.batch_size}")
        fix = (f"pass a --batch_size that does not leave a last batch of one clip ({n_train} training clips per "
               f"epoch, --batch_size {run.batch_size}{shares})")
    return UserError(
        f"a training batch of one clip leaves a BatchNorm layer a single value per channel at "
        f"--sample_size {data.sample_size} --sample_duration {data.sample_duration}: {fix}, or a larger --sample_size")


def mapped_targets(targets: torch.Tensor, target_map: torch.Tensor) -> torch.Tensor:
    """Annotation class indices -> the model's output indices; unlabelled (-1) stays -1."""
    mapped = target_map[targets.clamp(min=0)]
    return torch.where(targets >= 0, mapped, targets)


def n_outputs_of(model: nn.Module) -> int:
    """The classes a model built by ``create_model`` predicts (its classifier's outputs)."""
    return int(model.model_config["n_classes"])
