"""``resnet3d bench train``: training clips/s, ours against the originals' scheme, in one run.

Measurements, each one JSON line (``resnet3d.bench.common.emit``):

- ``train_step``, ours: a uint8 batch already on the device -> ``DeviceTransform`` -> the
  training step of ``resnet3d.engine.loop``, set up as the trainer sets it up: bf16 autocast on
  CUDA by default, channels_last_3d on CUDA only, fused SGD on CUDA, ``--compile-mode``. What the
  GPU alone can do.
- ``train_step``, baseline: the originals' step: a float32 NCDHW batch on the device, fp32, the
  model in the default memory format, torch's default SGD.
- ``train_end_to_end``, ours: ``resnet3d.engine.loop.train_one_epoch`` over the real loader
  (``resnet3d.data``: JPEG folders, uint8 through workers and pinned memory); also the share of
  time spent waiting for data.
- ``train_end_to_end``, baseline: the successor's loader re-enacted (PIL per frame, float
  tensors, normalised per frame in the workers; ``resnet3d.bench.loader.SuccessorBaseline``)
  feeding the baseline step.

``--sweep`` replaces the two ``train_step`` lines with the step matrix (``train_step_sweep``
lines): the baseline, then ours in each of ``--precisions`` (fp32, bf16), NCDHW and
channels_last_3d, then the last precision in channels_last_3d compiled in each of
``--compile-modes``, for each of ``--batch-sizes``. Every
configuration is isolated: its failure (out of memory, a compile error) is a line with "error"
and the sweep goes on; memory and compiled graphs are released before the next one.

``--epochs N`` replaces ours end to end with N whole epochs over the loader, as the trainer runs
them (``train_epoch`` lines: clips/s, data wait, the host memory of the main process and of its
loader workers, peak GPU memory), and a final ``train_end_to_end`` line with the growth of host
memory from epoch 2 to the last: flat means no leak.

``--time-budget SECONDS`` skips what is left once that much time is spent (checked between
configurations and between epochs), with a line saying what was skipped.

Without ``--video_path`` a data set of motion clips is generated (real JPEG folders) in a
temporary folder. On a CPU, pass small sizes (see docs/benchmarks.md) so the run takes seconds.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from resnet3d.bench.common import emit
from resnet3d.bench.step_profile import profile_step
from resnet3d.bench.video_copies import with_video_copies
from resnet3d.cliargs import add_flag
from resnet3d.config import COMPILE_MODES, check_compile_mode, resolve_compile_mode
from resnet3d.data.config import DECODE_DEVICES
from resnet3d.data.loader import decode_share_of
from resnet3d.engine.compilation import compile_errors_explained, compile_model, reset_compiler
from resnet3d.engine.precision import NAMES as PRECISION_NAMES, autocast_dtype
from resnet3d.errors import UserError
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers
from resnet3d.models.stem import pad_stem_channels

COMPILE_OFF = "drop it from --compile-modes"
# Not even tried: torch 2.13's CPU kernels for a ResNet's 3-D convolutions in bf16 hang in the
# backward pass or crash the process (measured on the 2-core AMD EPYC CI machine), which no
# try/except can isolate; the sweep is for GPUs, and CPU runs of it check its logic in fp32.
CPU_HALF_PRECISION = "bf16/fp16 are not run on the CPU (3-D convolutions in bf16 hang or crash there): pass --precisions fp32"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="resnet", help="model family")
    parser.add_argument("--model_depth", type=int, default=18)
    parser.add_argument("--n_classes", type=int, default=400,
                        help="outputs of the head (at least the data set's classes)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sample_size", type=int, default=112)
    parser.add_argument("--sample_duration", type=int, default=16)
    parser.add_argument("--n_threads", type=int, default=None,
                        help=f"loader worker processes (default: {DEFAULT_WORKERS_RULE}; "
                             f"here {default_num_workers()})")
    parser.add_argument("--video_path", default=None, help="JPEG frame folders (default: generate a data set)")
    parser.add_argument("--annotation_path", default=None, help="annotation JSON of --video_path")
    parser.add_argument("--dataset", default="kinetics", help="annotation flavour of --annotation_path")
    parser.add_argument("--resnet_widen_factor", type=float, default=1.0, help="the successor's width multiplier")
    add_flag(parser, "--steps", type=int, default=20, help="timed steps of each measurement")
    add_flag(parser, "--warmup", type=int, default=5, help="untimed steps first (cuDNN autotuning, compilation)")
    add_flag(parser, "--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
             help="ours (auto: bf16 on CUDA)")
    add_flag(parser, "--compile", action="store_true", default=None, help="torch.compile ours: --compile-mode default")
    add_flag(parser, "--compile-mode", default=None, choices=COMPILE_MODES, help="torch.compile mode of ours")
    add_flag(parser, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(parser, "--frame-size", default="128x171", help="HxW of generated frames")
    add_flag(parser, "--generate-videos", type=int, default=64, help="videos to generate when no --video_path")
    add_flag(parser, "--video-copies", type=int, default=1,
             help="list each training video this many times (symlinked folders in a temporary folder; kinetics "
                  "layout): long epochs from few videos")
    add_flag(parser, "--stem-pad", type=int, default=0, metavar="N",
             help="--sweep: also measure the last precision in channels_last_3d with the stem's input channels "
                  "padded to a multiple of N (models/stem.py; 8 suits tensor cores)")
    add_flag(parser, "--decode-device", default="cpu", choices=DECODE_DEVICES,
             help="end to end, ours: where JPEG frames are decoded (cuda: nvJPEG on the GPU; mixed: the workers and "
                  "the GPU side by side; docs/data.md)")
    add_flag(parser, "--assemble-device", default=None, choices=("cpu",),
             help="with --device cpu and --decode-device cuda or mixed: run the device side's steps on the CPU "
                  "(simplejpeg standing in for nvJPEG), as bench loader and bench test do: the mode's logic and its "
                  "controller on a machine without a GPU")
    add_flag(parser, "--only", default="all", choices=("all", "step", "end-to-end"), help="which measurements")
    add_flag(parser, "--no-baseline", action="store_true", help="skip the originals' scheme")
    add_flag(parser, "--sweep", action="store_true",
             help="the step matrix (precision x memory format x compile mode x batch size) instead of one step line")
    add_flag(parser, "--batch-sizes", default=None, metavar="N,N,...", help="--sweep: batch sizes (default --batch_size)")
    add_flag(parser, "--compile-modes", default="default", metavar="MODE,...",
             help=f"--sweep: compile modes tried on bf16 channels_last_3d ({', '.join(COMPILE_MODES[1:])}; "
                  "'none' or '' for none)")
    add_flag(parser, "--precisions", default="fp32,bf16", metavar="P,...",
             help="--sweep: precisions of ours (fp32, bf16, fp16); the compiled settings take the last")
    add_flag(parser, "--epochs", type=int, default=0,
             help="end to end: N whole epochs over the loader, with host memory per epoch (0: one timed stretch)")
    add_flag(parser, "--profile", type=int, default=0, metavar="N",
             help="step (without --sweep): after timing, profile N more steps of each side and print where their "
                  "time goes, by kernel and by kind (train_step_profile lines; bench/step_profile.py)")
    add_flag(parser, "--time-budget", type=float, default=0.0, metavar="SECONDS",
             help="skip what is left once this much time is spent (0: no limit)")


# -- small helpers ------------------------------------------------------------------------------


def _device(choice: str) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    return torch.device("cuda", torch.cuda.current_device())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Deadline:
    """``--time-budget``: whether the time is spent (0: never)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.start = clock()

    def spent(self) -> bool:
        return self.seconds > 0 and self.clock() - self.start >= self.seconds

    def reason(self) -> str:
        return f"--time-budget {self.seconds:g} s spent ({self.clock() - self.start:.0f} s)"


def _int_list(text: Optional[str], flag: str) -> List[int]:
    try:
        values = [int(v) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected whole numbers separated by commas, such as 64,128") from None
    if any(v < 1 for v in values):
        raise UserError(f"{flag} {text!r}: every value must be 1 or more")
    return values


def parse_compile_modes(text: str) -> List[str]:
    """``--compile-modes`` -> the modes to compile with ('none' and empty entries dropped: the
    uncompiled configuration is in the sweep anyway)."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for mode in modes:
        check_compile_mode(mode, "--compile-modes: mode")
    return list(dict.fromkeys(m for m in modes if m != "none"))


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:600]


def _release(device: torch.device, compiled: bool) -> None:
    """Give back what one configuration held before the next starts."""
    if compiled:
        reset_compiler()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -- models, optimisers, steps -----------------------------------------------------------------


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
    """The originals' optimiser: torch's SGD as it comes."""
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3)


def _ours_parts(args, device: torch.device, *, precision: str, channels_last: bool, compile_mode: str,
                data_cfg=None, stem_pad: int = 0):
    """Our step's parts, built by the trainer's rules: autocast dtype from ``precision``, the
    optimiser of ``build_optimizer`` (fused SGD on CUDA), the model compiled by
    ``compile_model``, the device transform of the data config."""
    from resnet3d.config import OptimConfig
    from resnet3d.data import DataConfig, DeviceTransform
    from resnet3d.engine.loop import StepParts
    from resnet3d.engine.optim import build_optimizer

    dtype = autocast_dtype(precision, device)
    model = _model(args, device, channels_last=channels_last)
    pad_stem_channels(model, stem_pad)  # 0: the stem as it is
    stepped = compile_model(model, compile_mode)
    optimizer = build_optimizer(model.parameters(), OptimConfig(learning_rate=1e-3, momentum=0.9, weight_decay=1e-3))
    cfg = data_cfg if data_cfg is not None else DataConfig()
    return StepParts(model=stepped, eval_model=stepped, optimizer=optimizer,
                     scaler=torch.amp.GradScaler("cuda") if dtype == torch.float16 else None, device=device,
                     amp_dtype=dtype, train_transform=DeviceTransform.from_config(cfg, train=True),
                     eval_transform=DeviceTransform.from_config(cfg, train=False), channels_last=channels_last), dtype


def _baseline_step(model: nn.Module, optimizer, x: torch.Tensor, targets: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x), targets)  # fp32, NCDHW: the originals' step
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _timed(device: torch.device, steps: int, warmup: int, step) -> Tuple[float, float]:
    """(seconds of the warm-up steps, seconds of the timed steps)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    middle = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return middle - start, time.perf_counter() - middle


def _common(args, device: torch.device, batch_size: Optional[int] = None) -> Dict[str, Any]:
    record = {"model": f"{args.model}-{args.model_depth}" if args.model != "c3d" else "c3d",
              "batch_size": batch_size or args.batch_size, "sample_size": args.sample_size,
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


def _layout(channels_last: bool) -> str:
    return "channels_last_3d" if channels_last else "NCDHW (contiguous)"


# -- the GPU step alone --------------------------------------------------------------------------


def measure_steps(args, device: torch.device) -> None:
    from resnet3d.engine.loop import train_step
    from resnet3d.engine.optim import sgd_kernel_name

    n, t, s = args.batch_size, args.sample_duration, args.sample_size
    targets = torch.randint(0, args.n_classes, (n,), device=device)
    records = []
    if not args.no_baseline:
        model = _model(args, device, channels_last=False)
        optimizer = _sgd(model)
        x = torch.randn(n, 3, t, s, s, device=device)  # (N, C, T, H, W) float32
        _, seconds = _timed(device, args.steps, args.warmup, lambda: _baseline_step(model, optimizer, x, targets))
        records.append({"what": "train_step", "baseline": True, **_common(args, device),
                        "clips_per_s": round(n * args.steps / seconds, 2), "precision": "fp32",
                        "memory_format": _layout(False), "sgd": sgd_kernel_name(optimizer), **_peak_memory(device)})
        if args.profile:
            records.append({"what": "train_step_profile", "baseline": True, **_common(args, device),
                            "precision": "fp32", "memory_format": _layout(False),
                            **profile_step(lambda: _baseline_step(model, optimizer, x, targets), device, args.profile)})
        del model, optimizer, x
        _release(device, compiled=False)
    channels_last = device.type == "cuda"  # as the trainer: it pays on CUDA only
    parts, dtype = _ours_parts(args, device, precision=args.precision, channels_last=channels_last,
                               compile_mode=args.compile_mode)
    clips = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, device=device)  # (N, T, H, W, C)
    with compile_errors_explained(args.compile_mode):
        warmup_s, seconds = _timed(device, args.steps, args.warmup, lambda: train_step(parts, clips, targets))
    ours = {"what": "train_step", "baseline": False, **_common(args, device),
            "clips_per_s": round(n * args.steps / seconds, 2),
            "precision": PRECISION_NAMES[dtype], "memory_format": _layout(parts.channels_last),
            "compile_mode": args.compile_mode, "sgd": sgd_kernel_name(parts.optimizer),
            "warmup_s": round(warmup_s, 2), **_peak_memory(device)}
    if records:
        ours["speedup"] = round(ours["clips_per_s"] / records[0]["clips_per_s"], 2)
    profiles = []
    if args.profile:
        with compile_errors_explained(args.compile_mode):
            profiles.append({"what": "train_step_profile", "baseline": False, **_common(args, device),
                             "precision": PRECISION_NAMES[dtype], "memory_format": _layout(parts.channels_last),
                             "compile_mode": args.compile_mode,
                             **profile_step(lambda: train_step(parts, clips, targets), device, args.profile)})
    for record in records + [ours] + profiles:
        emit(record)


@dataclass(frozen=True)
class StepSetting:
    """One configuration of the sweep."""

    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    compile_mode: str = "none"
    baseline: bool = False  # the originals' step (fp32, NCDHW float input, torch's default SGD)
    stem_pad: int = 0  # the stem's input channels rounded up to this multiple (models.stem)

    @property
    def name(self) -> str:
        if self.baseline:
            return "baseline fp32 NCDHW"
        name = f"{self.precision} {'channels_last_3d' if self.channels_last else 'NCDHW'}"
        name += f" stem padded to {self.stem_pad} channels" if self.stem_pad else ""
        return name + (f" compile {self.compile_mode}" if self.compile_mode != "none" else "")


def sweep_plan(batch_sizes: Sequence[int], compile_modes: Sequence[str],
               precisions: Sequence[str] = ("fp32", "bf16"), stem_pad: int = 0) -> List[Tuple[StepSetting, int]]:
    """Every (setting, batch size): the baseline, each precision in NCDHW and channels_last_3d
    (with ``stem_pad``, also the last precision in channels_last_3d with the padded stem), then
    the last precision in channels_last_3d compiled in each mode. Eager ones come first, so
    that a time budget cuts the compiled ones (minutes each) rather than the cheap comparisons;
    each batch size's baseline comes before the settings measured against it."""
    eager = [StepSetting("fp32", False, baseline=True)]
    eager += [StepSetting(precision, layout) for precision in precisions for layout in (False, True)]
    if stem_pad:
        eager.append(StepSetting(precisions[-1], True, stem_pad=stem_pad))
    plan = [(setting, n) for n in batch_sizes for setting in eager]
    plan += [(StepSetting(precisions[-1], True, mode), n) for mode in compile_modes for n in batch_sizes]
    return plan


SWEEP_PRECISIONS = ("fp32", "bf16", "fp16")


def parse_precisions(text: str) -> List[str]:
    precisions = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in precisions if p not in SWEEP_PRECISIONS]
    if unknown or not precisions:
        raise UserError(f"--precisions {text!r}: choose among {', '.join(SWEEP_PRECISIONS)}, separated by commas")
    return precisions


def _measure_setting(args, device: torch.device, setting: StepSetting, n: int) -> Dict[str, Any]:
    from resnet3d.engine.loop import train_step
    from resnet3d.engine.optim import sgd_kernel_name

    t, s = args.sample_duration, args.sample_size
    targets = torch.randint(0, args.n_classes, (n,), device=device)
    if setting.baseline:
        model = _model(args, device, channels_last=False)
        optimizer = _sgd(model)
        x = torch.randn(n, 3, t, s, s, device=device)  # (N, C, T, H, W) float32

        def step() -> None:
            _baseline_step(model, optimizer, x, targets)
    else:
        parts, _ = _ours_parts(args, device, precision=setting.precision, channels_last=setting.channels_last,
                               compile_mode=setting.compile_mode, stem_pad=setting.stem_pad)
        optimizer = parts.optimizer
        clips = torch.randint(0, 256, (n, t, s, s, 3), dtype=torch.uint8, device=device)  # (N, T, H, W, C)

        def step() -> None:
            train_step(parts, clips, targets)
    with compile_errors_explained(setting.compile_mode, COMPILE_OFF):
        warmup_s, seconds = _timed(device, args.steps, args.warmup, step)
    return {"clips_per_s": round(n * args.steps / seconds, 2), "step_ms": round(1000 * seconds / args.steps, 3),
            "warmup_s": round(warmup_s, 2), "sgd": sgd_kernel_name(optimizer), **_peak_memory(device)}


def run_sweep(args, device: torch.device, deadline: Deadline) -> None:
    batch_sizes = _int_list(args.batch_sizes, "--batch-sizes") or [args.batch_size]
    plan = sweep_plan(batch_sizes, parse_compile_modes(args.compile_modes), parse_precisions(args.precisions),
                      args.stem_pad)
    if args.no_baseline:
        plan = [(setting, n) for setting, n in plan if not setting.baseline]
    baselines: Dict[int, float] = {}
    _release(device, compiled=False)
    for at, (setting, n) in enumerate(plan):
        if deadline.spent():
            emit({"what": "train_step_sweep", "skipped": [f"{s.name} @ batch {b}" for s, b in plan[at:]],
                  "reason": deadline.reason()})
            return
        record: Dict[str, Any] = {
            "what": "train_step_sweep", "setting": setting.name, "baseline": setting.baseline,
            **_common(args, device, n), "precision": setting.precision, "memory_format": _layout(setting.channels_last),
            "compile_mode": setting.compile_mode, **({"stem_pad": setting.stem_pad} if setting.stem_pad else {})}
        if device.type == "cpu" and setting.precision != "fp32":
            record["skipped"] = CPU_HALF_PRECISION
            emit(record)
            continue
        try:
            record.update(_measure_setting(args, device, setting, n))
        except Exception as error:  # out of memory, a compile failure: this setting's, not the sweep's
            record["error"] = _one_line(error)
        _release(device, compiled=setting.compile_mode != "none")
        if "clips_per_s" in record:
            if setting.baseline:
                baselines[n] = record["clips_per_s"]
            elif n in baselines:
                record["speedup"] = round(record["clips_per_s"] / baselines[n], 2)
        emit(record)


# -- end to end: the loader and the step ------------------------------------------------------


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


def _check_end_to_end_inputs(args, device: torch.device) -> None:
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
        model = _model(args, device, channels_last=False)
        optimizer = _sgd(model)
        loader = build_loader(SuccessorBaseline(dataset, args.sample_size), args.batch_size, train=True,
                              num_workers=args.n_threads, seed=0, drop_last=True, rounds=rounds)
        untimed = args.warmup + drain_steps(loader)
        wait = 0.0
        start = None
        iterator = batches(loader, 0)
        for i in range(untimed + args.steps):
            if i == untimed:
                _sync(device)
                start, wait = time.perf_counter(), 0.0
            before = time.perf_counter()
            clip, target = next(iterator)
            wait += time.perf_counter() - before
            _baseline_step(model, optimizer, clip.to(device, non_blocking=True),
                           target.to(device, non_blocking=True))
        _sync(device)
        seconds = time.perf_counter() - start
        baseline = {"what": "train_end_to_end", "baseline": True, **_common(args, device),
                    "clips_per_s": round(args.batch_size * args.steps / seconds, 2),
                    "data_wait_share": round(wait / seconds, 3), "n_threads": args.n_threads,
                    "untimed_steps": untimed, "epochs_per_pass": rounds,
                    "scheme": "PIL per frame, float tensors in workers, fp32 NCDHW step", **_peak_memory(device)}
        emit(baseline)
        del model, optimizer, loader, iterator
        _release(device, compiled=False)

    # ours, as the trainer sets it up: channels_last on CUDA only, precision, compile mode, fused
    # SGD (build_optimizer), pinned memory on CUDA and the loader settings of build_loader
    channels_last = device.type == "cuda"
    if args.decode_device != "cpu":
        cfg = cfg.with_changes(decode_device=args.decode_device)
        dataset = build_dataset(cfg, "training", seed=0)
    parts, dtype = _ours_parts(args, device, precision=args.precision, channels_last=channels_last,
                               compile_mode=args.compile_mode, data_cfg=cfg)
    ours: Dict[str, Any] = {
        "what": "train_end_to_end", "baseline": False, **_common(args, device), "n_threads": args.n_threads,
        "precision": PRECISION_NAMES[dtype], "memory_format": _layout(channels_last),
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
            "untimed_steps": untimed, **_peak_memory(parts.device)}


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
               **(memory.as_record() if memory is not None else {}), **_peak_memory(device)}
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


def run(args: argparse.Namespace) -> int:
    deadline = Deadline(args.time_budget)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise UserError("--steps and --batch_size must be >= 1 and --warmup >= 0")
    if args.profile < 0:
        raise UserError("--profile must be 0 (off) or a number of steps")
    if args.profile and args.only == "end-to-end":
        raise UserError("--profile profiles the step measurement: use it with --only step (or all)")
    if args.profile and args.sweep:
        raise UserError("--profile profiles the one-step measurement: drop --sweep (or --profile)")
    if args.epochs < 0 or args.time_budget < 0 or args.video_copies < 1:
        raise UserError("--epochs and --time-budget must be 0 or more, --video-copies 1 or more")
    if args.n_threads is None:
        args.n_threads = default_num_workers()
    args.compile_mode = resolve_compile_mode(args.compile, args.compile_mode) or "none"
    device = _device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.only in ("all", "end-to-end"):
        _check_end_to_end_inputs(args, device)  # before the step measurements' minutes, not after
    if args.only in ("all", "step"):
        if args.sweep:
            run_sweep(args, device, deadline)
        else:
            measure_steps(args, device)
    if args.only in ("all", "end-to-end"):
        if deadline.spent():
            emit({"what": "train_end_to_end", "skipped": True, "reason": deadline.reason()})
            return 0
        with tempfile.TemporaryDirectory(prefix="resnet3d-bench-") as workdir:
            measure_end_to_end(args, device, workdir, deadline)
    return 0
