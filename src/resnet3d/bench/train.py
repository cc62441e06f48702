"""``resnet3d bench train``: training clips/s, ours against the originals' scheme, in one run.

Four measurements, each one JSON line (``resnet3d.bench.common.emit``):

- ``train_step``, ours: a uint8 batch already on the device -> ``DeviceTransform`` -> the
  training step of ``resnet3d.engine.loop`` (bf16 autocast on CUDA by default, channels_last_3d,
  optionally ``--compile``). What the GPU alone can do.
- ``train_step``, baseline: the originals' step: a float32 NCDHW batch on the device, fp32, the
  model in the default memory format.
- ``train_end_to_end``, ours: ``resnet3d.engine.loop.train_one_epoch`` over the real loader
  (``resnet3d.data``: JPEG folders, uint8 through workers and pinned memory); also the share of
  time spent waiting for data.
- ``train_end_to_end``, baseline: the successor's loader re-enacted (PIL per frame, float
  tensors, normalised per frame in the workers; ``resnet3d.bench.loader.SuccessorBaseline``)
  feeding the baseline step.

Without ``--video_path`` a data set of motion clips is generated (real JPEG folders) in a
temporary folder. On a CPU, pass small sizes (see docs/training.md) so the run takes seconds.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from typing import Any, Dict, Optional

import torch
from torch import nn

from resnet3d.bench.common import emit
from resnet3d.cliargs import add_flag
from resnet3d.engine.precision import NAMES as PRECISION_NAMES, autocast_dtype
from resnet3d.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet", help="model family")
    parser.add_argument("--model_depth", type=int, default=18)
    parser.add_argument("--n_classes", type=int, default=400,
                        help="outputs of the head (at least the data set's classes)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sample_size", type=int, default=112)
    parser.add_argument("--sample_duration", type=int, default=16)
    parser.add_argument("--n_threads", type=int, default=8, help="loader worker processes")
    parser.add_argument("--video_path", default=None, help="JPEG frame folders (default: generate a data set)")
    parser.add_argument("--annotation_path", default=None, help="annotation JSON of --video_path")
    parser.add_argument("--dataset", default="kinetics", help="annotation flavour of --annotation_path")
    parser.add_argument("--resnet_widen_factor", type=float, default=1.0, help="the successor's width multiplier")
    add_flag(parser, "--steps", type=int, default=20, help="timed steps of each measurement")
    add_flag(parser, "--warmup", type=int, default=5, help="untimed steps first (cuDNN autotuning, compilation)")
    add_flag(parser, "--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
             help="ours (auto: bf16 on CUDA)")
    add_flag(parser, "--compile", action="store_true", help="torch.compile our model")
    add_flag(parser, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(parser, "--frame-size", default="128x171", help="HxW of generated frames")
    add_flag(parser, "--generate-videos", type=int, default=64, help="videos to generate when no --video_path")
    add_flag(parser, "--only", default="all", choices=("all", "step", "end-to-end"), help="which measurements")
    add_flag(parser, "--no-baseline", action="store_true", help="skip the originals' scheme")


def _device(choice: str) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    return torch.device("cuda", torch.cuda.current_device())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(args, device: torch.device, channels_last: bool) -> nn.Module:
    from resnet3d.models import create_model, model_options

    kwargs: Dict[str, Any] = {"n_classes": args.n_classes}
    if "widen_factor" in model_options(args.model):
        kwargs["widen_factor"] = args.resnet_widen_factor
    if "sample_size" in model_options(args.model):
        kwargs.update(sample_size=args.sample_size, sample_duration=args.sample_duration)
    torch.manual_seed(0)
    model = create_model(args.model, args.model_depth if args.model != "c3d" else None, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last_3d) if channels_last else model


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3)


def _ours_parts(args, device: torch.device):
    from resnet3d.data import DeviceTransform
    from resnet3d.engine.loop import StepParts
    from resnet3d.normalization import KINETICS

    dtype = autocast_dtype(args.precision, device)
    channels_last = device.type == "cuda"  # as the trainer: it pays on CUDA only
    model = _model(args, device, channels_last=channels_last)
    stepped = torch.compile(model) if args.compile else model
    return StepParts(model=stepped, eval_model=model, optimizer=_sgd(model),
                     scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None, device=device,
                     amp_dtype=dtype, train_transform=DeviceTransform(KINETICS, train=True, hflip=True),
                     eval_transform=DeviceTransform(KINETICS, train=False), channels_last=channels_last), dtype


def _baseline_step(model: nn.Module, optimizer, x: torch.Tensor, targets: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x), targets)  # fp32, NCDHW: the originals' step
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timed(device: torch.device, steps: int, warmup: int, step) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def _common(args, device: torch.device) -> Dict[str, Any]:
    record = {"model": f"{args.model}-{args.model_depth}" if args.model != "c3d" else "c3d",
              "batch_size": args.batch_size, "sample_size": args.sample_size,
              "sample_duration": args.sample_duration, "device": str(device)}
    if args.resnet_widen_factor != 1.0:
        record["widen_factor"] = args.resnet_widen_factor
    return record


def _peak_memory(device: torch.device) -> Dict[str, float]:
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"peak_memory_gib": round(peak, 2)}


def measure_steps(args, device: torch.device) -> None:
    from resnet3d.engine.loop import train_step

    n, t, s = args.batch_size, args.sample_duration, args.sample_size
    targets = torch.randint(0, args.n_classes, (n,), device=device)
    records = []
    if not args.no_baseline:
        model = _model(args, device, channels_last=False)
        optimizer = _sgd(model)
        x = torch.randn(n, 3, t, s, s, device=device)  # (N, C, T, H, W) float32
        seconds = _timed(device, args.steps, args.warmup, lambda: _baseline_step(model, optimizer, x, targets))
        records.append({"what": "train_step", "baseline": True, **_common(args, device),
                        "clips_per_s": round(n * args.steps / seconds, 2), "precision": "fp32",
                        "memory_format": "NCDHW (contiguous)", **_peak_memory(device)})
        del model, optimizer, x
    parts, dtype = _ours_parts(args, device)
    clips = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, device=device)  # (N, T, H, W, C)
    seconds = _timed(device, args.steps, args.warmup, lambda: train_step(parts, clips, targets))
    ours = {"what": "train_step", "baseline": False, **_common(args, device),
            "clips_per_s": round(n * args.steps / seconds, 2),
            "precision": PRECISION_NAMES[dtype],
            "memory_format": "channels_last_3d" if parts.channels_last else "NCDHW (contiguous)",
            "compile": args.compile, **_peak_memory(device)}
    if records:
        ours["speedup"] = round(ours["clips_per_s"] / records[0]["clips_per_s"], 2)
    for record in records + [ours]:
        emit(record)


def _data(args, workdir: Optional[str]):
    """(video_path, annotation_path, dataset): the given data, or a generated data set."""
    if args.video_path:
        if not args.annotation_path:
            raise UserError("--video_path needs --annotation_path")
        return args.video_path, args.annotation_path, args.dataset
    from resnet3d.synthetic import make_action_dataset

    try:
        height, width = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        raise UserError(f"--frame-size {args.frame_size!r}: expected HxW such as 128x171") from None
    per_class = max(1, -(-args.generate_videos // 8))
    info = make_action_dataset(workdir, n_classes=8, videos_per_class=per_class, n_frames=args.sample_duration + 8,
                               size=(height, width), val_share=0.0)
    return info.jpg_path, info.annotation_path, info.dataset


def measure_end_to_end(args, device: torch.device, workdir: Optional[str]) -> None:
    from resnet3d.bench.loader import SuccessorBaseline
    from resnet3d.data import DataConfig, build_dataset, build_loader, set_epoch
    from resnet3d.engine.loop import train_one_epoch
    from resnet3d.engine.schedules import Schedule

    video_path, annotation_path, dataset_name = _data(args, workdir)
    cfg = DataConfig(dataset=dataset_name, video_path=video_path, annotation_path=annotation_path,
                     sample_size=args.sample_size, sample_duration=args.sample_duration, num_workers=args.n_threads)
    dataset = build_dataset(cfg, "training", seed=0)
    if len(dataset.class_names) > args.n_classes:
        n = len(dataset.class_names)
        raise UserError(f"the data set has {n} classes: pass --n_classes {n} or more")
    if len(dataset) < args.batch_size:
        raise UserError(f"the data set has {len(dataset)} clips, fewer than one batch of {args.batch_size}")
    total = args.warmup + args.steps

    def batches(loader, epoch: int):
        """``total`` batches, going round the data set as often as needed."""
        def endless():
            for round_ in itertools.count():
                set_epoch(loader, epoch + round_)
                yield from loader
        return itertools.islice(endless(), total)

    records = []
    if not args.no_baseline:
        model = _model(args, device, channels_last=False)
        optimizer = _sgd(model)
        loader = build_loader(SuccessorBaseline(dataset, args.sample_size), args.batch_size, train=True,
                              num_workers=args.n_threads, seed=0, drop_last=True)
        wait = 0.0
        start = None
        iterator = batches(loader, 0)
        for i in range(total):
            if i == args.warmup:
                _sync(device)
                start, wait = time.perf_counter(), 0.0
            before = time.perf_counter()
            clip, target = next(iterator)
            wait += time.perf_counter() - before
            _baseline_step(model, optimizer, clip.to(device, non_blocking=True),
                           target.to(device, non_blocking=True))
        _sync(device)
        seconds = time.perf_counter() - start
        records.append({"what": "train_end_to_end", "baseline": True, **_common(args, device),
                        "clips_per_s": round(args.batch_size * args.steps / seconds, 2),
                        "data_wait_share": round(wait / seconds, 3), "n_threads": args.n_threads,
                        "scheme": "PIL per frame, float tensors in workers, fp32 NCDHW step", **_peak_memory(device)})
        del model, optimizer, loader
    parts, dtype = _ours_parts(args, device)
    loader = build_loader(dataset, args.batch_size, train=True, num_workers=args.n_threads, seed=0, drop_last=True)
    schedule = Schedule(1e-3, 1e-3)
    # warm-up "epoch" first (workers start, cuDNN autotunes), then the timed one
    if args.warmup:
        train_one_epoch(parts, itertools.islice(batches(loader, 0), args.warmup), 1, schedule, args.warmup,
                        show_progress=False)
    timed = train_one_epoch(parts, itertools.islice(batches(loader, 100), args.steps), 2, schedule, args.steps,
                            show_progress=False)
    ours = {"what": "train_end_to_end", "baseline": False, **_common(args, device),
            "clips_per_s": round(timed.clips_per_s, 2), "data_wait_share": round(timed.data_wait_share, 3),
            "n_threads": args.n_threads,
            "precision": PRECISION_NAMES[dtype],
            "compile": args.compile, "scheme": "resnet3d loader (uint8 workers, device normalisation) + our step",
            **_peak_memory(device)}
    if records:
        ours["speedup"] = round(ours["clips_per_s"] / records[0]["clips_per_s"], 2)
    for record in records + [ours]:
        emit(record)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise UserError("--steps and --batch_size must be >= 1 and --warmup >= 0")
    device = _device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.only in ("all", "step"):
        measure_steps(args, device)
    if args.only in ("all", "end-to-end"):
        with tempfile.TemporaryDirectory(prefix="resnet3d-bench-") as workdir:
            measure_end_to_end(args, device, workdir)
    return 0
