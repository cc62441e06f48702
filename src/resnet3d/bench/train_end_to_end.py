"""``resnet3d bench train`` end to end: the loader and the step (``train_end_to_end`` lines),
ours over the real loader and the baseline over the successor's re-enacted one, each timed
over one stretch drawn from one pass of its loader; with ``--epochs N``, ours over whole
epochs (``train_epoch`` lines, host memory included). Also the data it runs on (given or
generated) and the checks of its inputs, made before any measurement."""
from __future__ import annotations

import itertools
import os
import statistics
import time
from typing import Any, Dict, List, Optional

import torch

from resnet3d.bench.common import emit
from resnet3d.bench.train_parts import Deadline, baseline_step, build_model, common_fields, layout, ours_parts, \
    peak_memory, release, sgd, sync
from resnet3d.bench.video_copies import with_video_copies
from resnet3d.data.loader import decode_share_of
from resnet3d.engine.compilation import compile_errors_explained
from resnet3d.engine.precision import NAMES as PRECISION_NAMES
from resnet3d.errors import UserError


def _data(args, workdir: str):
    """(video_path, annotation_path, dataset): the given data or a generated data set, with each
    training video listed ``--video-copies`` times."""
    if args.video_path:
        if not args.annotation_path:
            raise UserError("--video_path needs --annotation_path")
        video_path, annotation_path, dataset = args.video_path, args.annotation_path, args.dataset
    else:
        from resnet3d.synthetic import make_action_dataset

        try:
            height, width = (int(v) for v in args.frame_size.lower().split("x"))
        except ValueError:
            raise UserError(f"--frame-size {args.frame_size!r}: expected HxW such as 128x171") from None
        per_class = max(1, -(-args.generate_videos // 8))
        info = make_action_dataset(workdir, n_classes=8, videos_per_class=per_class,
                                   n_frames=args.sample_duration + 8, size=(height, width), val_share=0.0)
        video_path, annotation_path, dataset = info.jpg_path, info.annotation_path, info.dataset
    if args.video_copies > 1:
        video_path, annotation_path = with_video_copies(video_path, annotation_path, args.video_copies, workdir,
                                                        dataset=dataset)
    return video_path, annotation_path, dataset


def _check_decoding(args, device: torch.device) -> None:
    """``--decode-device`` where it can run (one line otherwise); ``--assemble-device cpu`` stands
    the GPU check down on the CPU, where the feed then decodes the JPEG batches."""
    from resnet3d.data import check_decode_device

    if args.assemble_device is None:
        check_decode_device(args.decode_device, device)
    elif args.decode_device == "cpu" or device.type != "cpu":
        raise UserError("--assemble-device cpu goes with --device cpu and --decode-device cuda or mixed (the batches "
                        "of JPEG bytes are decoded on the training device)")


def check_end_to_end_inputs(args, device: torch.device) -> None:
    """What the end-to-end measurement is given and cannot use stops the command at once."""
    _check_decoding(args, device)
    if not args.video_path:
        return
    if not args.annotation_path:
        raise UserError("--video_path needs --annotation_path")
    if not os.path.isdir(args.video_path):
        raise UserError(f"--video_path {args.video_path}: no such folder")
    if not os.path.isfile(args.annotation_path):
        raise UserError(f"--annotation_path {args.annotation_path}: no such file")


END_TO_END_SCHEMES = {
    "cpu": "resnet3d loader (uint8 workers, device normalisation) + our step",
    "cuda": "resnet3d loader (JPEG bytes from workers, nvJPEG decode and resize on the device) + our step",
    "mixed": "resnet3d loader (a share of the batches as JPEG bytes decoded on the device, the rest decoded by the "
             "workers; the share adjusted from the loop's waits) + our step",
}


def measure_end_to_end(args, device: torch.device, workdir: str, deadline: Deadline) -> None:
    from resnet3d.bench.loader import SuccessorBaseline
    from resnet3d.data import DataConfig, build_dataset, build_loader, set_epoch

    _check_decoding(args, device)  # before the baseline's minutes
    video_path, annotation_path, dataset_name = _data(args, workdir)
    cfg = DataConfig(dataset=dataset_name, video_path=video_path, annotation_path=annotation_path,
                     sample_size=args.sample_size, sample_duration=args.sample_duration, num_workers=args.n_threads)
    dataset = build_dataset(cfg, "training", seed=0)
    if len(dataset.class_names) > args.n_classes:
        n = len(dataset.class_names)
        raise UserError(f"the data set has {n} classes: pass --n_classes {n} or more")
    if len(dataset) < args.batch_size:
        raise UserError(f"the data set has {len(dataset)} clips, fewer than one batch of {args.batch_size}")
    def batches(loader, epoch: int):
        """Batches without end, going round the data set as often as needed: one iterator per
        side, so the queue the warm-up filled is the queue the timed steps draw from. The loader's
        sampler spans ``stretch_rounds`` epochs, so that one pass of it covers the whole stretch."""
        rounds = getattr(loader.sampler, "rounds", 1)
        for round_ in itertools.count():
            set_epoch(loader, epoch + round_ * rounds)
            yield from loader

    rounds = stretch_rounds(len(dataset), args.batch_size, args.n_threads, args.warmup, args.steps)

    baseline: Optional[Dict[str, Any]] = None
    if not args.no_baseline:
        model = build_model(args, device, channels_last=False)
        optimizer = sgd(model)
        loader = build_loader(SuccessorBaseline(dataset, args.sample_size), args.batch_size, train=True,
                              num_workers=args.n_threads, seed=0, drop_last=True, rounds=rounds)
        untimed = args.warmup + drain_steps(loader)
        wait = 0.0
        start = None
        iterator = batches(loader, 0)
        for i in range(untimed + args.steps):
            if i == untimed:
                sync(device)
                start, wait = time.perf_counter(), 0.0
            before = time.perf_counter()
            clip, target = next(iterator)
            wait += time.perf_counter() - before
            baseline_step(model, optimizer, clip.to(device, non_blocking=True),
                          target.to(device, non_blocking=True))
        sync(device)
        seconds = time.perf_counter() - start
        baseline = {"what": "train_end_to_end", "baseline": True, **common_fields(args, device),
                    "clips_per_s": round(args.batch_size * args.steps / seconds, 2),
                    "data_wait_share": round(wait / seconds, 3), "n_threads": args.n_threads,
                    "untimed_steps": untimed, "epochs_per_pass": rounds,
                    "scheme": "PIL per frame, float tensors in workers, fp32 NCDHW step", **peak_memory(device)}
        emit(baseline)
        del model, optimizer, loader, iterator
        release(device, compiled=False)

    # ours, as the trainer sets it up: channels_last on CUDA only, precision, compile mode, fused
    # SGD (build_optimizer), pinned memory on CUDA and the loader settings of build_loader
    channels_last = device.type == "cuda"
    if args.decode_device != "cpu":
        cfg = cfg.with_changes(decode_device=args.decode_device)
        dataset = build_dataset(cfg, "training", seed=0)
    parts, dtype = ours_parts(args, device, precision=args.precision, channels_last=channels_last,
                              compile_mode=args.compile_mode, data_cfg=cfg)
    ours: Dict[str, Any] = {
        "what": "train_end_to_end", "baseline": False, **common_fields(args, device), "n_threads": args.n_threads,
        "precision": PRECISION_NAMES[dtype], "memory_format": layout(channels_last),
        "compile_mode": args.compile_mode, "sgd": _sgd_name(parts), "decode_device": args.decode_device,
        "scheme": END_TO_END_SCHEMES[args.decode_device],
        **({"assemble_device": args.assemble_device} if args.assemble_device else {})}
    with compile_errors_explained(args.compile_mode):
        if args.epochs:
            loader = build_loader(dataset, args.batch_size, train=True, num_workers=args.n_threads, seed=0)
            ours.update(run_epochs(parts, loader, args.epochs, device, deadline))
        else:
            loader = build_loader(dataset, args.batch_size, train=True, num_workers=args.n_threads, seed=0,
                                  drop_last=True, rounds=rounds)
            ours.update(_one_stretch(args, parts, loader, batches), epochs_per_pass=rounds)
    ours["pin_memory"] = bool(loader.pin_memory)
    share = decode_share_of(loader)
    if share is not None:  # --decode-device mixed: where the GPU's share of the batches went
        ours.update(gpu_decode_share=round(share.share, 3), gpu_decode_share_history=share.history)
    if baseline is not None and ours.get("clips_per_s") and not args.epochs:
        ours["speedup"] = round(ours["clips_per_s"] / baseline["clips_per_s"], 2)
    elif baseline is not None and args.epochs:
        # ours over whole epochs (a median, every epoch's start and its last batch included), the
        # baseline over one timed stretch: two measurements whose ratio would say nothing
        ours["speedup"] = None
        ours["speedup_note"] = "not computed with --epochs: the baseline is timed over one stretch; run without --epochs"
    emit(ours)


def _sgd_name(parts) -> str:
    from resnet3d.engine.optim import sgd_kernel_name

    return sgd_kernel_name(parts.optimizer)


def drain_steps(loader) -> int:
    """Untimed steps after the warm-up, so that the clock starts on the loader's steady state.

    While cuDNN autotunes the first steps (seconds on a GPU), the workers fill the whole
    prefetch queue (workers x prefetch_factor batches). Timed from there, a short run draws
    mostly on that queue and measures the GPU step, not the loader: the first GPU session's
    baseline read 1,306 clips/s "end to end" with 0.2% data wait from a 60-batch queue, about
    twice what its workers can decode. Twice the queue's depth lets a loader slower than the
    step empty it (and one faster keep it full) before timing begins."""
    return queue_drain_steps(getattr(loader, "num_workers", 0) or 0, getattr(loader, "prefetch_factor", None) or 0)


def queue_drain_steps(workers: int, prefetch_factor: int) -> int:
    """``drain_steps`` of a loader with these workers and prefetch factor: twice its queue."""
    return 2 * max(0, workers) * prefetch_factor


def stretch_rounds(n_items: int, batch_size: int, workers: int, warmup: int, steps: int) -> int:
    """Epochs one pass of the end-to-end loader must span to serve the whole stretch (the
    warm-up, ``drain_steps`` at build_loader's prefetch factor, the timed steps) from one
    iterator. A data set of a few thousand clips is a few dozen batches: going round it, each new
    epoch's iterator restarts the workers' pipeline, and until every worker has built its first
    batch the step waits (a CPU re-enactment with a loader 25% faster than its step read 19%
    data wait with a restart every 10 batches, 3% without). A real epoch is thousands of
    batches, so those restarts are not the steady state the stretch measures."""
    from resnet3d.data.loader import PREFETCH_FACTOR

    batches = warmup + queue_drain_steps(workers, PREFETCH_FACTOR) + steps + 1
    return max(1, -(-batches * batch_size // max(1, n_items)))


def _one_stretch(args, parts, loader, batches) -> Dict[str, Any]:
    """Untimed steps (workers start, cuDNN autotunes, compilation, the prefetch queue drains:
    ``drain_steps``), then ``--steps`` timed, all from one iterator of the loader."""
    from resnet3d.engine.loop import train_one_epoch
    from resnet3d.engine.schedules import Schedule

    schedule = Schedule(1e-3, 1e-3)
    iterator = batches(loader, 0)
    untimed = args.warmup + drain_steps(loader)
    share = decode_share_of(loader)  # --decode-device mixed: adjusted by the untimed steps too
    if untimed:
        train_one_epoch(parts, itertools.islice(iterator, untimed), 1, schedule, untimed, show_progress=False,
                        decode_share=share)
    timed = train_one_epoch(parts, itertools.islice(iterator, args.steps), 2, schedule, args.steps,
                            show_progress=False, decode_share=share)
    return {"clips_per_s": round(timed.clips_per_s, 2), "data_wait_share": round(timed.data_wait_share, 3),
            "untimed_steps": untimed, **peak_memory(parts.device)}


def run_epochs(parts, loader, epochs: int, device: torch.device, deadline: Deadline) -> Dict[str, Any]:
    """``epochs`` whole epochs over ``loader`` as the trainer runs them; one ``train_epoch`` line
    each (speed, data wait, host memory, peak GPU memory). Returns the summary: median speed and
    data wait of epochs 2 on (the first starts workers and compiles), and how host memory grew
    from epoch 2 to the last."""
    from resnet3d.bench.host_memory import host_memory
    from resnet3d.data import set_epoch
    from resnet3d.engine.loop import train_one_epoch
    from resnet3d.engine.schedules import Schedule

    schedule = Schedule(1e-3, 1e-3)
    rows: List[Dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        if rows and deadline.spent():
            emit({"what": "train_epoch", "skipped": list(range(epoch, epochs + 1)), "reason": deadline.reason()})
            break
        set_epoch(loader, epoch)
        result = train_one_epoch(parts, loader, epoch, schedule, len(loader), show_progress=False,
                                 decode_share=decode_share_of(loader))
        memory = host_memory()
        row = {"what": "train_epoch", "baseline": False, "epoch": epoch, "steps": result.steps, "clips": result.count,
               "clips_per_s": round(result.clips_per_s, 2), "data_wait_share": round(result.data_wait_share, 3),
               **(memory.as_record() if memory is not None else {}), **peak_memory(device)}
        emit(row)
        rows.append(row)
    steady = rows[1:] or rows
    summary: Dict[str, Any] = {"epochs": len(rows),
                               "clips_per_s": round(statistics.median(r["clips_per_s"] for r in steady), 2),
                               "data_wait_share": round(statistics.median(r["data_wait_share"] for r in steady), 3)}
    first = steady[0]
    summary["memory_growth_from_epoch"] = first["epoch"]
    for key in ("rss_main_mib", "rss_workers_mib", "pss_total_mib"):
        if key in first and key in rows[-1]:
            summary[key.replace("_mib", "_growth_mib")] = round(rows[-1][key] - first[key], 1)
    peaks = [r["peak_memory_gib"] for r in rows if "peak_memory_gib" in r]
    if peaks:
        summary["peak_memory_gib"] = max(peaks)
    return summary
