"""One training epoch and one validation pass. They return numbers; the trainer logs and saves.

The GPU does not wait on the host: the next batches are fetched and copied (or decoded) to
the device (on a side stream, ``resnet3d.engine.feed``) while the current step runs, and a step's
loss and accuracy are read one step late, from a copy that waits for that step only. That late
read is also when processes agree, through the one reduction ``all_sum``, on the global numbers,
on a non-finite loss and on a stop request (SIGTERM); under NCCL those host numbers travel over a
gloo group of their own (``engine.distributed``), so the agreement does not wait for the step
just launched.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from resnet3d.data import AUGMENT_KEYS, batch_counters
from resnet3d.data.decode_share import DecodeShare
from resnet3d.data.loader import worker_death
from resnet3d.engine.distributed import DistInfo, all_sum
from resnet3d.engine.feed import DeviceFeed, HostReadout
from resnet3d.engine.gpu_memory import ran_out, torch_summary
from resnet3d.engine.optim import set_lr, set_train_mode
from resnet3d.engine.schedules import Schedule
from resnet3d.errors import UserError, user_error_text
from resnet3d.metrics import VideoScores
from resnet3d.progress import Progress


@dataclass
class StepParts:
    """Everything a training or validation step touches."""

    model: nn.Module  # what training steps call: possibly DDP-wrapped or compiled
    eval_model: nn.Module  # the same weights without DDP (evaluation needs no gradient sync)
    optimizer: Optional[torch.optim.Optimizer]
    scaler: Optional["torch.amp.GradScaler"]
    device: torch.device
    amp_dtype: Optional[torch.dtype]  # None: full precision
    train_transform: Callable[..., torch.Tensor]
    eval_transform: Callable[..., torch.Tensor]
    dist: DistInfo = field(default_factory=DistInfo)
    freeze_bn: bool = False
    channels_last: bool = False
    criterion: nn.Module = field(default_factory=lambda: nn.CrossEntropyLoss(reduction="sum", ignore_index=-1))


@dataclass
class EpochResult:
    loss: float = math.nan
    acc: float = math.nan
    count: int = 0
    steps: int = 0  # steps done in this epoch, including those before a resume
    stopped: bool = False  # a stop was requested (signal); the epoch is incomplete
    nonfinite: Optional[str] = None  # a description of the first non-finite loss
    loader_died: Optional[str] = None  # a loader worker died (one process only): why, and the fix
    out_of_memory: Optional[str] = None  # the GPU ran out of memory (one process only): torch's summary
    data_error: Optional[str] = None  # the data gave out mid-epoch (one process only): the UserError's line
    sums: Dict[str, float] = field(default_factory=dict)  # for an interrupted epoch's checkpoint
    bad_frames: int = 0
    bad_videos: int = 0
    clips_per_s: float = 0.0
    data_wait_share: float = 0.0


@dataclass(frozen=True)
class PaddedShard:
    """Where the repeats lie in a process's share of a training epoch.

    With ``n_items`` not a multiple of the processes, the sampler repeats the epoch's first
    clips so that every process takes as many steps (DDP needs every process in each step):
    item ``i`` of rank ``r``'s share is position ``r + world_size * i`` of the padded order, and
    positions from ``n_items`` on are repeats. They go through the step with the others (the
    batch keeps its shape) but weigh nothing and are not counted, so each clip of the epoch counts
    once, as in one process: a repeat used to weigh twice in the last step's gradient and its
    loss and accuracy twice in the logs."""

    n_items: int
    world_size: int
    rank: int
    local_batch: int

    def real_clips(self, step: int, n_local: int) -> Tuple[int, int]:
        """(clips of the epoch in this process's batch ``step`` (1-based) of ``n_local`` clips,
        clips of the epoch in that step's global batch); the repeats end a batch."""
        first = (step - 1) * self.local_batch  # index in this share of the batch's first clip
        local = sum(1 for i in range(first, first + n_local) if self.rank + self.world_size * i < self.n_items)
        start = first * self.world_size  # the global batch's first position in the padded order
        return local, max(min(self.n_items, start + self.world_size * n_local) - start, 0)


def _layout(parts: StepParts, x: torch.Tensor) -> torch.Tensor:
    """DeviceTransform gives channels_last_3d; a model kept in the default layout wants that."""
    return x if parts.channels_last else x.contiguous()


def _finish(progress: Progress) -> None:
    # In a log file the last update already printed the final line; a terminal needs its newline.
    if progress.interactive:
        progress.close()


def _autocast(parts: StepParts):
    # Full precision is no autocast at all, not a disabled one: torch 2.1's autocast refuses
    # float32 on the CPU ("AutocastCPU only support Bfloat16") even with enabled=False.
    if parts.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(parts.device.type, dtype=parts.amp_dtype)


def train_step(parts: StepParts, clips: torch.Tensor, targets: torch.Tensor,
               augment: Optional[Dict[str, torch.Tensor]] = None,
               divisor: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a uint8 batch already on the device, augmented by the batch's
    own draws (``augment``: "flip", "jitter"); returns the summed loss and the number of correct
    clips as device tensors (no host sync). Targets of -1 (repeats, ``PaddedShard``) weigh nothing.
    ``divisor`` (default: the batch's clips) divides the summed loss: DDP averages the processes'
    gradients, so the step's clips over the processes gives the mean over the step's clips."""
    x = _layout(parts, parts.train_transform(clips, **(augment or {})))  # (N, C, T, H, W)
    with _autocast(parts):
        logits = parts.model(x)
    loss_sum = parts.criterion(logits.float(), targets)
    loss = loss_sum / (divisor if divisor is not None else len(targets))
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        parts.optimizer.step()
    return loss_sum.detach(), (logits.detach().argmax(dim=1) == targets).sum()


def train_one_epoch(
    parts: StepParts,
    batches: Iterable[dict],
    epoch: int,
    schedule: Schedule,
    total_steps: int,
    *,
    start_step: int = 0,
    start_sums: Optional[Dict[str, float]] = None,
    stop_requested: Callable[[], bool] = lambda: False,
    on_batch: Optional[Callable[[dict], None]] = None,
    show_progress: bool = True,
    decode_share: Optional[DecodeShare] = None,
    padded: Optional[PaddedShard] = None,
) -> EpochResult:
    """Train over ``batches`` (this process's share of the epoch, from ``start_step`` on).

    ``on_batch`` receives, per step, the global numbers for train_batch.log:
    ``{batch, loss, acc, lr}``. The epoch's loss is the mean over clips of all processes.
    ``decode_share``: the loader's, with decode_device "mixed" (``data.decode_share_of``), which
    the loop's waits adjust. ``padded``: where this share repeats clips (several processes).
    """
    set_train_mode(parts.model, True, parts.freeze_bn)
    sums = dict(start_sums or {"loss": 0.0, "correct": 0.0, "count": 0.0, "bad_frames": 0.0, "bad_videos": 0.0})
    result = EpochResult(steps=start_step)
    progress = Progress(total_steps, desc=f"epoch {epoch} train", unit="batch",
                        enabled=show_progress and parts.dist.is_main)
    progress.count = start_step
    pending: Optional[tuple] = None
    wait = 0.0
    clips_seen = 0
    started = time.perf_counter()

    def settle(entry: tuple) -> bool:
        """Reduce one finished step's numbers over processes; True when the run must stop."""
        step, lr, readout, count, counters = entry
        local_loss, correct = readout.values()  # the one host sync, a step late
        finite = math.isfinite(local_loss)
        totals = all_sum([local_loss if finite else 0.0, correct, count, counters["bad_frames"],
                          counters["bad_videos"], 0.0 if finite else 1.0, 1.0 if stop_requested() else 0.0],
                         parts.device).tolist()
        g_loss, g_correct, g_count, g_bad_frames, g_bad_videos, nonfinite, stop = totals
        if nonfinite:
            where = "not finite" if not finite else "not finite on another process"
            result.nonfinite = f"epoch {epoch}, batch {step}: the loss is {where}"
            return True
        sums["loss"] += g_loss
        sums["correct"] += g_correct
        sums["count"] += g_count
        sums["bad_frames"] += g_bad_frames
        sums["bad_videos"] += g_bad_videos
        result.steps = step
        if on_batch is not None:
            on_batch({"batch": step, "loss": g_loss / max(g_count, 1.0), "acc": g_correct / max(g_count, 1.0),
                      "lr": lr})
        elapsed = max(time.perf_counter() - started, 1e-9)
        progress.update(1, loss=f"{sums['loss'] / max(sums['count'], 1):.4f}",
                        acc=f"{sums['correct'] / max(sums['count'], 1):.3f}",
                        clips_s=f"{clips_seen * parts.dist.world_size / elapsed:.1f}",
                        data_wait=f"{100.0 * wait / elapsed:.0f}%")
        if stop:
            result.stopped = True
            return True
        return False

    feed = DeviceFeed(parts.device, ("clip", "target") + AUGMENT_KEYS)
    step = start_step
    # the next batches are copied (or decoded) on the device while each step runs (DeviceFeed.batches)
    try:
        with contextlib.closing(feed.batches(batches, share=decode_share)) as fed:
            for batch, on_device, waited in fed:
                wait += waited
                step += 1
                clips, targets = on_device.pop("clip"), on_device.pop("target")  # what remains: flip, jitter
                counters = batch_counters(batch)  # after the batch is on the device: decoding may change them
                counters = {"bad_frames": counters.get("bad_frames", 0), "bad_videos": counters.get("bad_video", 0)}
                lr, weight_decay = schedule.values(epoch, (step - 1) / max(total_steps, 1))
                set_lr(parts.optimizer, lr, weight_decay)
                count, divisor = len(targets), None
                if padded is not None:
                    count, in_step = padded.real_clips(step, len(targets))
                    if count < len(targets):
                        targets = targets.clone()
                        targets[count:] = -1  # repeats: no loss, no gradient, not correct
                    divisor = in_step / parts.dist.world_size
                loss_sum, correct = train_step(parts, clips, targets, on_device, divisor)
                clips_seen += count
                entry = (step, lr, HostReadout([loss_sum, correct]), float(count), counters)
                if pending is not None and settle(pending):
                    pending = None
                    if result.nonfinite is None:
                        settle(entry)  # a stop request: the step just taken counts, then we stop
                    break
                pending = entry
    except RuntimeError as error:
        # A worker killed (out of memory) or crashed: on one process the steps taken so far are
        # settled and the trainer saves them as an interrupted epoch; a distributed run cannot
        # stop its other processes in step from here: the error ends the process (the trainer says
        # it in one line, exit status 1 as on one process, and the launcher stops the others).
        result.loader_died = worker_death(error)
        if result.loader_died is None and ran_out(error):  # the GPU out of memory: the same, said by the trainer
            result.out_of_memory = torch_summary(error)
        if (result.loader_died is None and result.out_of_memory is None) or parts.dist.world_size > 1:
            raise
    except UserError as error:
        # The data gave out mid-epoch (videos in a row with no readable frame: a folder or drive
        # gone): as for a dead worker, one process settles the steps taken, which the trainer keeps
        # as an interrupted epoch, instead of losing them with the error.
        if parts.dist.world_size > 1:
            raise
        result.data_error = user_error_text(error)
    if pending is not None:
        settle(pending)
    _finish(progress)
    elapsed = max(time.perf_counter() - started, 1e-9)
    result.sums = sums
    result.count = int(sums["count"])
    result.loss = sums["loss"] / max(sums["count"], 1.0)
    result.acc = sums["correct"] / max(sums["count"], 1.0)
    result.bad_frames = int(sums["bad_frames"])
    result.bad_videos = int(sums["bad_videos"])
    result.clips_per_s = clips_seen * parts.dist.world_size / elapsed
    result.data_wait_share = wait / elapsed
    return result


@torch.no_grad()
def validate(parts: StepParts, batches: Iterable[dict], video_targets: torch.Tensor, n_classes: int,
             total_steps: Optional[int] = None, epoch: int = 0, show_progress: bool = True,
             decode_share: Optional[DecodeShare] = None) -> Dict[str, float]:
    """Loss and clip accuracy over the validation clips, and video accuracy from each video's
    averaged clip scores; reduced over processes (each holds a disjoint share of the clips).
    ``bad_videos`` counts videos none of whose clips could be read (each left out of the
    accuracies), ``stand_in_clips`` the clips that stood in for them.
    ``decode_share`` as in ``train_one_epoch``."""
    model = parts.eval_model
    model.eval()
    scores = VideoScores(video_targets, n_classes, parts.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=parts.device)
    correct = torch.zeros((), dtype=torch.float64, device=parts.device)
    count = torch.zeros((), dtype=torch.float64, device=parts.device)  # sums stay on the device: no sync per batch
    bad = [0.0, 0.0]
    progress = Progress(total_steps, desc=f"epoch {epoch} val", unit="batch",
                        enabled=show_progress and parts.dist.is_main)
    feed = DeviceFeed(parts.device, ("clip", "target"))
    # as in training: the next batches are copied (or decoded) while this one runs
    for batch, on_device, _ in feed.batches(batches, share=decode_share):
        clips, targets = on_device["clip"], on_device["target"]
        x = _layout(parts, parts.eval_transform(clips))
        with _autocast(parts):
            logits = model(x)
        logits = logits.float()
        videos = batch["video"]
        stand_ins = batch.get("bad_video")  # (after the batch is on the device: decoding may set it)
        if torch.is_tensor(stand_ins) and stand_ins.numel() == len(targets) and bool(stand_ins.any()):
            # a clip standing in for an unreadable video is another video's clip: scored, it would
            # count that video twice (counted below as a replaced video, not scored)
            kept = stand_ins == 0
            logits, targets = logits[kept.to(logits.device)], targets[kept.to(targets.device)]
            videos = videos[kept.to(videos.device)]
        labelled = targets >= 0
        loss_sum += parts.criterion(logits, targets).double()
        correct += ((logits.argmax(dim=1) == targets) & labelled).sum().double()
        count += labelled.sum().double()
        scores.add(videos, logits)
        counters = batch_counters(batch)  # after the batch is on the device: decoding JPEG bytes may change them
        bad[0] += counters.get("bad_frames", 0)
        bad[1] += counters.get("bad_video", 0)
        progress.update(1)
    _finish(progress)
    totals = all_sum([float(loss_sum), float(correct), float(count), bad[0], bad[1]], parts.device).tolist()
    scores.sums = all_sum(scores.sums, parts.device)
    scores.counts = all_sum(scores.counts, parts.device)
    g_loss, g_correct, g_count, bad_frames, stand_in_clips = totals
    # Each of an unreadable video's n_val_samples clips is a stand-in: counting those clips said
    # "replaced videos 6" for 2 videos. A video is replaced when none of its clips was scored.
    unscored = int((scores.counts.cpu() == 0).sum())
    return {
        "loss": g_loss / max(g_count, 1.0),
        "acc": g_correct / max(g_count, 1.0),
        "video_acc": scores.accuracy(),
        "count": g_count,
        "bad_frames": bad_frames,
        "bad_videos": float(min(unscored, int(stand_in_clips))),
        "stand_in_clips": stand_in_clips,
    }
