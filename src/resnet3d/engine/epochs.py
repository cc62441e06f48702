"""What a set-up run does: its epochs (train, validate, log, checkpoint, curves; only rank 0
writes files), or one validation pass when it does not train, then recognition when asked.

``run_epochs`` returns the exit status: 0 done, 1 a loader worker died, 3 non-finite loss,
128+signal when pre-empted; bad data or settings raise ``UserError`` (status 2).
"""
from __future__ import annotations

import contextlib
import importlib
import itertools
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

from resnet3d.data.loader import decode_share_of
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.compilation import compile_errors_explained
from resnet3d.engine.distributed import any_rank, barrier
from resnet3d.engine.gpu_memory import describe_clips, line_from_summary, out_of_memory_error
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
from resnet3d.engine.loop import PaddedShard, train_one_epoch, validate
from resnet3d.engine.messages import say, warn
from resnet3d.engine.model_start import arch_name, clip_too_small
from resnet3d.engine.result_folder import keep_earlier
from resnet3d.engine.run_checkpoints import checkpoint_payload, restore_rng, save_from_rank0
from resnet3d.engine.run_setup import PREDICT_MODULE, mapped_targets, n_outputs_of, single_value_batch_error
from resnet3d.engine.run_state import Run, steps_per_epoch
from resnet3d.engine.signals import StopRequest, stopped_by
from resnet3d.errors import UserError, user_error_text
from resnet3d.fileio import atomic_write_json


EXIT_NONFINITE = 3
# Not validation.json: that is where `resnet3d test` puts its results for the default subset.
VAL_METRICS_NAME = "val_metrics.json"


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
        restore_rng(state.start, state.info)
    return itertools.islice(iterator, max(total - skip, 0))


def _padded_shard(state: Run) -> Optional[PaddedShard]:
    """Where this process's training share repeats clips (None: it repeats none)."""
    sampler, info = state.train_loader.sampler, state.info
    n_items = getattr(sampler, "n_items", 0)
    if not info.distributed or not getattr(sampler, "pad", False) or n_items % info.world_size == 0:
        return None
    return PaddedShard(n_items=n_items, world_size=info.world_size, rank=info.rank,
                       local_batch=state.train_loader.batch_size)


def run_epochs(state: Run, stop: StopRequest) -> int:
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
        restore_rng(start, info)  # (a continued epoch restores them once its loader started)
    best = start.best_metric
    total = steps_per_epoch(state)
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
            broke = result.loader_died
            if result.out_of_memory is not None:
                broke = line_from_summary(result.out_of_memory, *_training_memory(state))
            if broke:
                kept = f"the last checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                if result.steps > skip:  # steps of this epoch were taken: kept as an interrupted epoch
                    kept = f"saved {result_path / ckpt.INTERRUPTED_NAME}"
                    save_from_rank0(state, result_path / ckpt.INTERRUPTED_NAME,
                                    checkpoint_payload(state, epoch - 1, best, result.steps, result.sums))
                say(info, f"resnet3d: error: at epoch {epoch}, step {result.steps} of {total}: {broke}; "
                          f"{kept}. Continue with --resume auto.", sys.stderr)
                return 1
            if result.data_error:
                kept = f"the last checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                if result.steps > skip:  # the steps taken are kept as an interrupted epoch
                    kept = f"saved {result_path / ckpt.INTERRUPTED_NAME}"
                    save_from_rank0(state, result_path / ckpt.INTERRUPTED_NAME,
                                    checkpoint_payload(state, epoch - 1, best, result.steps, result.sums))
                raise UserError(f"{result.data_error}; stopped at epoch {epoch}, step {result.steps} of {total}: "
                                f"{kept}. Once that is fixed, continue with --resume auto")
            if result.stopped and result.steps < total:
                path = result_path / ckpt.INTERRUPTED_NAME
                save_from_rank0(state, path, checkpoint_payload(state, epoch - 1, best, result.steps, result.sums))
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
                                       n_outputs_of(state.model), total_steps=len(state.val_loader), epoch=epoch,
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
                    save_from_rank0(state, result_path / ckpt.BEST_NAME, checkpoint_payload(state, epoch, best))
            say(info, line + _bad_data_note(*bad))
            stopping = any_rank(stop.requested, state.device)
            if epoch % run.checkpoint_every == 0 or epoch == run.n_epochs or stopping:
                last_saved = ckpt.epoch_path(result_path, epoch)
                save_from_rank0(state, last_saved, checkpoint_payload(state, epoch, best))
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
    """A validation set that gives out (every video unreadable, its folder gone), or a GPU that
    runs out of memory in validation, ended the run after the epoch's training and before its
    checkpoint: the epoch was lost with the error. On one process the epoch is saved first; the
    error then says where."""
    try:
        yield
    except (UserError, RuntimeError) as error:
        out_of_memory = None if isinstance(error, UserError) else out_of_memory_error(error, *_training_memory(state))
        if state.info.distributed or (out_of_memory is None and not isinstance(error, UserError)):
            raise
        path = ckpt.epoch_path(Path(state.config.run.result_path), epoch)
        save_from_rank0(state, path, checkpoint_payload(state, epoch, best))
        fix = ("Fix the validation data (or leave validation out with --no_val)" if out_of_memory is None
               else "Make the batch fit (above)")
        raise UserError(f"{user_error_text(out_of_memory or error)}; in the validation after epoch {epoch}: its "
                        f"training is saved in {path}. {fix}, then continue with --resume auto") from None


def _training_memory(state: Run) -> Tuple[str, str]:
    """(what ran, what to change) for a GPU that ran out of memory while this run trained or
    validated (``gpu_memory``)."""
    data, run = state.config.data, state.config.run
    world = state.info.world_size
    per_process = f" per process (--batch_size {run.batch_size} is the global batch)" if world > 1 else ""
    batch = describe_clips(run.batch_size // world, data.sample_duration, data.sample_size)
    doing = f"at batches of {batch}{per_process}"
    fix = "lower --batch_size"
    if state.parts.amp_dtype is None:  # (fp32: half the activations' memory is there to take)
        fix += ", or train in bf16 (--precision bf16, on GPUs that take it)"
    return doing, fix + ", or lower --sample_size / --sample_duration"


@contextlib.contextmanager
def _clip_errors_explained(state: Run) -> Iterator[None]:
    """torch's errors for clips the model cannot take, a GPU out of memory, and torch.compile's
    failures (at the first step, or at a new batch shape), as one line with the flags that fix them."""
    with compile_errors_explained(state.config.run.compile_mode, "leave out --compile, or --compile-mode none"):
        try:
            yield
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
            raise single_value_batch_error(state) from None
        except RuntimeError as error:  # (a clip too small for the model fails compiled models' tracing too)
            out_of_memory = out_of_memory_error(error, *_training_memory(state))
            if out_of_memory is not None:  # (several processes, and validation: the loop keeps one process's steps)
                raise out_of_memory from None
            data = state.config.data
            too_small = clip_too_small(error, state.model.model_config, data.sample_duration, data.sample_size)
            if too_small is None:
                raise
            raise too_small from None


def _val_batches(state: Run, epoch: int):
    from resnet3d.data import set_epoch

    set_epoch(state.val_loader, epoch)
    if state.val_target_map is None:
        return state.val_loader
    target_map = state.val_target_map
    return ({**batch, "target": mapped_targets(torch.as_tensor(batch["target"]), target_map)}
            for batch in state.val_loader)


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
        metrics = validate(state.parts, _val_batches(state, max(epoch, 0)), state.val_targets, n_outputs_of(state.model),
                           total_steps=len(state.val_loader), epoch=epoch,
                           decode_share=decode_share_of(state.val_loader))
    say(state.info, f"validation  loss {metrics['loss']:.4f}  acc {metrics['acc']:.4f}"
                    f"  video acc {metrics['video_acc']:.4f}"
                    f"  ({int(metrics['count'])} clips)"
                    + _bad_data_note(int(metrics["bad_frames"]), int(metrics["bad_videos"])))
    if state.info.is_main:
        path = Path(state.config.run.result_path) / VAL_METRICS_NAME
        keep_earlier(path, state.config.run.overwrite)
        atomic_write_json(path, {"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}, indent=2)


def _recognition(state: Run, stop: StopRequest) -> int:
    if state.config.inference is None:
        return 0
    if stop.requested:  # a signal after the last epoch's check: recognition has not begun
        raise stopped_by(stop.signal, f"stopped by {stop.name} before recognition began; the run's checkpoints "
                                      "are saved: recognise with resnet3d test, or --no_train --resume_path")
    stop.at_once = True  # recognition keeps what it scored whenever it stops: no step to finish first
    predict = importlib.import_module(PREDICT_MODULE)
    summary = predict.run_recognition(state.config, model=state.model, device=state.device, dist=state.info,
                                      class_names=state.class_names or None)
    return 2 if summary is None else 0  # None: a process failed as recognition started, and it was said
