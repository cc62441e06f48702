"""``resnet3d test``: recognise the action of every video of a data set subset.

    resnet3d test --weights results/model_best.pth --video_path data/jpg \\
        --annotation_path data/kinetics.json --subset validation
    resnet3d test --weights r3d50_K_200ep.pth --model_depth 50 --n_classes 700 ... --clips 10 --crops 3

The modern spelling of ``resnet3d main --inference`` / ``--test_video``, over the same code
(``resnet3d.engine.predict.run_recognition``). Our checkpoints need no model flags; see
docs/recognition.md for the formats, multi-view testing and --resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Dict, Tuple

from resnet3d.cliargs import add_flag, add_switch
from resnet3d.data.config import DATASETS, FILE_TYPES, INPUT_TYPES, DataConfig
from resnet3d.frame_flags import add_decode_flags
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from resnet3d.engine.predict_model import add_model_arguments

    add_flag(parser, "--weights", required=True, metavar="CKPT",
             help="checkpoint: ours, the successor's (save_N.pth, r3d50_K_200ep.pth), the seed's .t7, ...")

    # SUPPRESS: an absent flag leaves no attribute, and the checkpoint's setting (else the default) applies
    ours = "(default: what our checkpoint records, else {})".format
    unset = argparse.SUPPRESS
    data = parser.add_argument_group(
        "data", "a setting not given here is the one our checkpoint's training run used, else the default")
    add_flag(data, "--video-path", required=True, help="frame folders, HDF5 files or video files")
    add_flag(data, "--annotation-path", required=True, help="annotation JSON")
    add_flag(data, "--dataset", default=unset, choices=DATASETS, help=ours(DEFAULTS["dataset"]))
    add_flag(data, "--folder-layout", default=unset, metavar="PATTERN",
             help="'folder' data sets: a video's path under --video-path from {label} and {key} "
                  + ours(DEFAULTS["folder_layout"]))
    add_flag(data, "--file-type", default=unset, choices=FILE_TYPES, help=ours(DEFAULTS["file_type"]))
    add_flag(data, "--input-type", default=unset, choices=INPUT_TYPES, help=ours(DEFAULTS["input_type"]))
    add_flag(data, "--sample-t-stride", type=int, default=unset,
             help="use every n-th frame " + ours(DEFAULTS["sample_t_stride"]))
    add_flag(data, "--subset", default="validation", help="training/validation/testing (train/val/test accepted)")
    add_flag(data, "--workers", "--n-threads", dest="n_threads", type=int, default=default_num_workers(),
             help=f"decoding worker processes (default: {DEFAULT_WORKERS_RULE}); --n-threads is the same flag")
    add_decode_flags(data)

    views = parser.add_argument_group("views")
    add_flag(views, "--stride", type=int, default=None,
             help="frames between window starts (default: sample_duration; the successor's --inference_stride)")
    add_flag(views, "--crop", default="center", choices=("center", "nocrop"),
             help="center: centred square; nocrop: the whole frame, short side resized (fully convolutional models)")
    add_flag(views, "--clips", type=int, default=0,
             help="N evenly spaced windows per video instead of sliding windows (multi-view testing; 0: sliding)")
    add_flag(views, "--crops", type=int, default=1, choices=(1, 3),
             help="3: left/centre/right (or top/centre/bottom) squares along the long side")

    out = parser.add_argument_group("output")
    add_flag(out, "--format", default="successor", choices=("successor", "seed"),
             help="successor: <subset>.json {'results'}; seed: <subset>_video.json with 'version' and "
                  "'external_data', videos named by youtube id")
    add_flag(out, "--top-k", type=int, default=None, help="labels per video (default 5; 10 in the seed format)")
    add_switch(out, "--average", default=True,
               help="one result per video (--no-average: one per window, the successor's --inference_no_average)")
    add_flag(out, "--result-path", default="results", help="folder of the results file")
    add_flag(out, "--output", default=None, metavar="FILE", help="results file (default: <result_path>/<subset>.json)")
    add_flag(out, "--resume", action="store_true", help="keep the results already in the output; score only the rest")
    add_flag(out, "--overwrite", action="store_true",
             help="replace an existing results file (default: it is kept as <name>.1.json)")
    add_flag(out, "--save-every", type=int, default=100, help="rewrite the results file every this many videos")

    run = parser.add_argument_group("hardware")
    add_flag(run, "--batch-size", type=int, default=32, help="views per model batch (filled across videos)")
    add_flag(run, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(run, "--no-cuda", action="store_true", help="the originals' spelling of --device cpu")
    add_flag(run, "--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
             help="autocast dtype (auto: bf16 on Ampere or later GPUs, else fp32)")
    add_switch(run, "--channels-last", default=True, help="channels_last_3d memory format on CUDA")
    add_switch(run, "--fold-bn", default=True,
               help="fold each BatchNorm into the conv before it for recognition (the same scores up to float "
                    "rounding, faster; --no-fold-bn runs the model as it is)")
    add_flag(run, "--nproc-per-node", "--n-gpus", dest="nproc_per_node", type=int, default=1, metavar="K",
             help="processes on this machine, each recognising its share of the videos: one per GPU on CUDA "
                  "(GPUs 0..K-1), gloo processes on the CPU; --workers are shared among them. Under torchrun "
                  "its processes share the videos")
    add_flag(run, "--quiet", action="store_true", help="no progress line")
    add_model_arguments(parser)


# Data settings that a flag gives, else our checkpoint's training run, else DataConfig's default.
# Not decode_device: where the training machine decoded says nothing about this machine's GPU, so
# --decode-device cuda is asked for here or not at all.
FROM_CHECKPOINT = ("dataset", "folder_layout", "file_type", "input_type", "sample_t_stride", "decoder",
                   "decode_tolerance", "fast_decode")
_FIELDS = {f.name: f for f in dataclasses.fields(DataConfig)}
DEFAULTS = {name: _FIELDS[name].default for name in FROM_CHECKPOINT}


def data_settings(args: argparse.Namespace, recorded: Dict[str, Any]) -> Dict[str, Any]:
    """The ``FROM_CHECKPOINT`` settings: the flag, else what the checkpoint's training run used
    (``recorded``: its config's data section), else the default. Recognition then reads frames
    as the model's validation read them."""
    chosen = {}
    for key, default in DEFAULTS.items():
        flag = getattr(args, key, None)
        chosen[key] = flag if flag is not None else recorded.get(key, default)
    return chosen


def _from_checkpoint(args: argparse.Namespace, recorded: Dict[str, Any]) -> str:
    """'dataset folder, file_type video, ...': the settings taken from the checkpoint (those that
    differ from the defaults)."""
    taken = [f"{key} {recorded[key]}" for key, default in DEFAULTS.items()
             if getattr(args, key, None) is None and recorded.get(key, default) != default]
    return ", ".join(taken)


def resolve_device(name: str):
    import torch

    from resnet3d.errors import UserError

    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use --device cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    """One process, or ``--nproc-per-node K`` processes started here, or this process's share
    under torchrun: the videos are split among the processes, and rank 0 writes the one results
    file (``run_recognition``)."""
    import torch

    from resnet3d.engine.distributed import launch_local, launched_by_torchrun
    from resnet3d.errors import UserError

    nproc = args.nproc_per_node
    if nproc < 1:
        raise UserError(f"--nproc-per-node must be >= 1 (got {nproc})")
    if nproc == 1 or launched_by_torchrun():
        return _recognise(args)
    device = resolve_device("cpu" if args.no_cuda else args.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise UserError(f"--nproc-per-node {nproc}: only {torch.cuda.device_count()} GPU(s) are visible")
    _check_before_launching(args)
    results = launch_local(nproc, recognition_worker, vars(args), role="recognition")
    return max(int(status or 0) for status in results.values())


def _check_before_launching(args: argparse.Namespace) -> None:
    """What every process would refuse alike, said once here: the subset's name, and weights that
    are missing or do not load (each process loads them again; this copy is let go)."""
    from resnet3d.data.config import canonical_subset
    from resnet3d.engine.predict_model import load_inference_model

    canonical_subset(args.subset)
    load_inference_model(args.weights, args)


def recognition_worker(args_dict: Dict[str, Any]) -> int:
    """The entry point of each process ``--nproc-per-node`` starts (module level: it is pickled)."""
    from resnet3d.engine.worker_process import run_as_worker

    return run_as_worker(lambda: _recognise(argparse.Namespace(**args_dict)), STOPPED_AT_ONCE)


STOPPED_AT_ONCE = "stopped at once (a second Ctrl-C); --resume keeps the videos saved so far and scores the rest"


def _recognise(args: argparse.Namespace) -> int:
    import torch

    from resnet3d.engine.checkpoint import existing_checkpoint
    from resnet3d.engine.distributed import destroy_process_group, env_info, init_process_group, on_every_rank
    from resnet3d.engine.predict import run_recognition
    from resnet3d.engine.signals import StopRequest

    info = env_info()  # this process's rank among those sharing the videos (one process: rank 0 of 1)
    device = resolve_device("cpu" if args.no_cuda else args.device)
    if info.distributed and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    init_process_group(info, device)  # (one process: none)
    try:
        # the checks and the weights after the processes met: a machine that lacks the weights (a
        # checkpoint on one machine's disk) ends every process with its line, where before the
        # others waited for it in the process group's start-up (30 minutes), and a flag's mistake
        # is said once, not by every torchrun process
        prepared = on_every_rank(lambda: _prepare(args, info, device), info, device)
        if prepared is None:
            return 2
        config, loaded = prepared
        with StopRequest(at_once=True):  # SIGTERM too saves the videos scored so far, as Ctrl-C does
            summary = run_recognition(
                config, model=loaded.model, device=device, dist=info, class_names=loaded.class_names,
                n_clips=args.clips, n_crops=args.crops, output=args.output, resume=args.resume,
                overwrite=args.overwrite, save_every=args.save_every, show_progress=not args.quiet,
                inputs=[("--weights", existing_checkpoint(args.weights)[0]),
                        ("--labels", getattr(args, "labels", None))])
    finally:
        destroy_process_group()
    return 2 if summary is None else 0  # None: a process failed as recognition started, and it was said


def _prepare(args: argparse.Namespace, info: Any, device: Any) -> Tuple[Any, Any]:
    """The flags' checks, the weights (loaded) and the run's settings: (config, loaded model)."""
    import math

    from resnet3d.config import Config, HardwareConfig, InferenceConfig, RunConfig
    from resnet3d.data.config import canonical_subset
    from resnet3d.engine.predict_model import load_inference_model
    from resnet3d.errors import UserError

    canonical_subset(args.subset)  # an unknown subset name fails before the model loads
    loaded = load_inference_model(args.weights, args)
    for note in loaded.notes if info.is_main else ():
        print(f"resnet3d test: {note}", file=sys.stderr)
    taken = _from_checkpoint(args, loaded.recorded_data)
    if taken and info.is_main:
        print(f"resnet3d test: from the checkpoint: {taken} (flags override)", file=sys.stderr)
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1 (got {args.top_k})")
    if args.batch_size < 1:  # (0 was taken as batches of one view)
        raise UserError(f"--batch-size must be >= 1 (got {args.batch_size})")
    if args.clips < 0:
        raise UserError(f"--clips must be >= 0 (got {args.clips}); 0, the default, takes sliding windows")
    top_k = args.top_k or (10 if args.format == "seed" else 5)
    if args.stride is not None and (args.clips or args.format == "seed"):
        windows = (f"--clips {args.clips} spreads its windows evenly" if args.clips
                   else "--format seed takes the seed's windows, every sample_duration frames")
        raise UserError(f"--stride {args.stride} would not be used: {windows}; drop --stride, or drop "
                        f"{'--clips' if args.clips else '--format seed'} for sliding windows every --stride frames")
    stride = args.stride if args.stride is not None else loaded.sample_duration
    data = DataConfig(video_path=args.video_path, annotation_path=args.annotation_path,
                      sample_size=loaded.sample_size, sample_duration=loaded.sample_duration,
                      input_norm=loaded.input_norm,
                      # the workers are the machine's: shared among its processes, as in training
                      num_workers=math.ceil(args.n_threads / info.local_world_size),
                      decode_device=getattr(args, "decode_device", "cpu"),
                      **data_settings(args, loaded.recorded_data))
    config = Config(
        data=data,
        run=RunConfig(result_path=args.result_path, batch_size=args.batch_size, precision=args.precision,
                      channels_last=args.channels_last, train=False, val=False),
        hardware=HardwareConfig(device=device.type),
        inference=InferenceConfig(flavour=args.format, subset=args.subset, stride=stride, crop=args.crop,
                                  average=args.average, top_k=top_k, batch_size=args.batch_size,
                                  fold_bn=args.fold_bn),
    )
    return config, loaded
