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

This module is the command: its flags and ``run``. The measurements live beside it:
``train_step`` (the step alone), ``train_step_sweep`` (``--sweep``), ``train_end_to_end`` (the
loader and the step, ``--epochs``), and ``train_parts`` (what they share: the model, the
optimisers, the steps, timing, the fields of every line, ``--time-budget``).
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from resnet3d.bench.common import emit
from resnet3d.bench.train_end_to_end import check_end_to_end_inputs, measure_end_to_end
from resnet3d.bench.train_parts import Deadline
from resnet3d.bench.train_step import measure_steps
from resnet3d.bench.train_step_sweep import run_sweep
from resnet3d.cliargs import add_flag
from resnet3d.config import COMPILE_MODES, resolve_compile_mode
from resnet3d.data.config import DECODE_DEVICES
from resnet3d.errors import UserError
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers


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


def _device(choice: str) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    return torch.device("cuda", torch.cuda.current_device())


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
        check_end_to_end_inputs(args, device)  # before the step measurements' minutes, not after
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
