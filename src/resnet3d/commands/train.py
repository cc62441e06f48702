"""``resnet3d train``: training with clean flags and an optional config file.

    resnet3d train --config run.toml --lr 0.05 --epochs 30

The settings come from, in order: the defaults (the successor's), the config file (JSON, or TOML
on Python 3.11+, with the sections of ``resnet3d.config.Config``: [data], [model], [finetune],
[optim], [run], [hardware], [inference]), then the flags given here. The result is the same
frozen ``Config`` that ``resnet3d main`` builds from the originals' flags, run by the same
``resnet3d.engine.trainer.run``. ``--print-config`` shows it and exits.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from resnet3d.cliargs import add_flag, add_switch
from resnet3d.compat import check_regime_flags, find_lr_file
from resnet3d.config import (
    COMPILE_MODES,
    DEVICES,
    DIST_BACKENDS,
    INFERENCE_CROPS,
    INFERENCE_FLAVOURS,
    INFERENCE_N_CROPS,
    PRECISIONS,
    Config,
    InferenceConfig,
    merge,
    resolve_compile_mode,
)
from resnet3d.data.config import DATASETS, FILE_TYPES, INPUT_TYPES, TRAIN_CROPS, TRAIN_T_CROPS, DataConfig
from resnet3d.engine.machines import unbind_from_launcher
from resnet3d.engine.schedules import SCHEDULES
from resnet3d.errors import UserError
from resnet3d.frame_flags import add_decode_flags, add_mean_std_flags, decode_settings, mean_std_norm
from resnet3d.lr_lua import parse_lr_lua
from resnet3d.normalization import NAMED, successor_norm

# flag -> (section, setting, argparse keywords); a switch is given as {"switch": True}
FLAGS: Tuple[Tuple[str, str, str, Dict[str, Any]], ...] = (
    # data
    ("--dataset", "data", "dataset", {"choices": DATASETS}),
    ("--video-path", "data", "video_path", {"help": "frame folders, HDF5 files or video files"}),
    ("--annotation-path", "data", "annotation_path", {}),
    ("--folder-layout", "data", "folder_layout",
     {"metavar": "PATTERN", "help": "'folder' data sets: a video's path from {label} and {key} (default {label}/{key})"}),
    ("--file-type", "data", "file_type", {"choices": FILE_TYPES}),
    ("--input-type", "data", "input_type", {"choices": INPUT_TYPES}),
    ("--sample-size", "data", "sample_size", {"type": int}),
    ("--sample-duration", "data", "sample_duration", {"type": int}),
    ("--sample-t-stride", "data", "sample_t_stride", {"type": int}),
    ("--n-val-samples", "data", "n_val_samples", {"type": int}),
    ("--train-crop", "data", "train_crop", {"choices": TRAIN_CROPS}),
    ("--train-crop-min-scale", "data", "train_crop_min_scale", {"type": float}),
    ("--train-crop-min-ratio", "data", "train_crop_min_ratio", {"type": float}),
    ("--train-t-crop", "data", "train_t_crop", {"choices": TRAIN_T_CROPS}),
    ("--hflip", "data", "hflip", {"switch": True, "help": "random horizontal flip (default on)"}),
    ("--colorjitter", "data", "colorjitter", {"switch": True, "help": "colour jitter (default off)"}),
    ("--workers", "data", "num_workers",
     {"type": int, "help": "loader worker processes (per machine); --n-threads is the same flag", "aliases": ("--n-threads",)}),
    # model
    ("--model", "model", "model", {}),
    ("--model-depth", "model", "model_depth", {"type": int}),
    ("--n-classes", "model", "n_classes", {"type": int}),
    ("--shortcut-type", "model", "shortcut_type", {"choices": ("A", "B", "C"), "aliases": ("--resnet-shortcut",)}),
    ("--widen-factor", "model", "widen_factor", {"type": float, "aliases": ("--resnet-widen-factor",)}),
    ("--conv1-t-size", "model", "conv1_t_size", {"type": int}),
    ("--conv1-t-stride", "model", "conv1_t_stride", {"type": int}),
    ("--no-max-pool", "model", "no_max_pool", {"action": "store_true"}),
    ("--k", "model", "k", {"type": int, "help": "Wide ResNet widening", "aliases": ("--wide-resnet-k",)}),
    ("--cardinality", "model", "cardinality", {"type": int, "help": "ResNeXt groups", "aliases": ("--resnext-cardinality",)}),
    # fine-tuning
    ("--pretrained", "finetune", "pretrained", {"help": "weights to start from (any checkpoint resnet3d reads)"}),
    ("--n-pretrain-classes", "finetune", "n_pretrain_classes", {"type": int}),
    ("--ft-begin-module", "finetune", "ft_begin_module", {"help": "train this top-level module and all after it"}),
    ("--freeze-params", "finetune", "freeze_params",
     {"type": int, "help": "train only the last N layers with parameters"}),
    ("--freeze-bn", "finetune", "freeze_bn", {"action": "store_true"}),
    # optimiser
    ("--lr", "optim", "learning_rate", {"type": float}),
    ("--momentum", "optim", "momentum", {"type": float}),
    ("--dampening", "optim", "dampening", {"type": float}),
    ("--weight-decay", "optim", "weight_decay", {"type": float}),
    ("--nesterov", "optim", "nesterov", {"switch": True}),
    ("--scheduler", "optim", "lr_scheduler", {"choices": SCHEDULES}),
    ("--milestones", "optim", "multistep_milestones", {"type": int, "nargs": "+"}),
    ("--gamma", "optim", "multistep_gamma", {"type": float}),
    ("--plateau-patience", "optim", "plateau_patience", {"type": int}),
    ("--warmup-epochs", "optim", "warmup_epochs", {"type": float}),
    ("--min-lr", "optim", "min_lr", {"type": float}),
    # run
    ("--result-path", "run", "result_path", {}),
    ("--epochs", "run", "n_epochs", {"type": int}),
    ("--batch-size", "run", "batch_size", {"type": int, "help": "global batch, shared among all processes"}),
    ("--train", "run", "train", {"switch": True, "help": "train (default on)"}),
    ("--val", "run", "val", {"switch": True, "help": "validate (default on)"}),
    ("--val-every", "run", "val_every", {"type": int}),
    ("--checkpoint-every", "run", "checkpoint_every", {"type": int}),
    ("--resume", "run", "resume", {"metavar": "auto|PATH"}),
    ("--seed", "run", "manual_seed", {"type": int}),
    ("--deterministic", "run", "deterministic", {"switch": True}),
    ("--overwrite", "run", "overwrite", {"action": "store_true"}),
    ("--precision", "run", "precision", {"choices": PRECISIONS}),
    ("--channels-last", "run", "channels_last", {"switch": True}),
    ("--compile", "run", "compile", {"switch": True, "help": "torch.compile the model: --compile-mode default (default off)"}),
    ("--compile-mode", "run", "compile_mode",
     {"choices": COMPILE_MODES, "help": "torch.compile mode (reduce-overhead: CUDA graphs; default none)"}),
    ("--tensorboard", "run", "tensorboard", {"switch": True}),
    ("--curves", "run", "curves", {"switch": True, "help": "curves.png (default on)"}),
    ("--max-steps-per-epoch", "run", "max_steps_per_epoch", {"type": int}),
    # hardware
    ("--device", "hardware", "device", {"choices": DEVICES}),
    ("--n-gpus", "hardware", "n_gpus", {"type": int}),
    ("--gpu-id", "hardware", "gpu_id", {"type": int, "help": "first GPU (0-based)"}),
    ("--nproc-per-node", "hardware", "nproc_per_node", {"type": int}),
    ("--sync-bn", "hardware", "batchnorm_sync", {"switch": True}),
    ("--dist-backend", "hardware", "dist_backend", {"choices": DIST_BACKENDS}),
    ("--nodes", "hardware", "nodes",
     {"type": int, "help": "machines, each started once by mpirun or srun (torchrun needs neither flag)"}),
    ("--dist-url", "hardware", "dist_url",
     {"help": "with --nodes: where the machines meet, tcp://HOST:PORT of launcher rank 0's machine, or env://"}),
    # per-video recognition after training (needs --inference or an [inference] section)
    ("--inference-subset", "inference", "subset", {"help": "subset to recognise (train/val/test accepted)"}),
    ("--inference-format", "inference", "flavour",
     {"choices": INFERENCE_FLAVOURS, "help": "results format: successor <subset>.json, seed <subset>_video.json"}),
    ("--inference-stride", "inference", "stride", {"type": int, "help": "frames between window starts"}),
    ("--inference-crop", "inference", "crop", {"choices": INFERENCE_CROPS}),
    ("--inference-average", "inference", "average",
     {"switch": True, "help": "one result per video (--no-inference-average: one per window)"}),
    ("--inference-top-k", "inference", "top_k", {"type": int, "help": "labels per video"}),
    ("--inference-batch-size", "inference", "batch_size",
     {"type": int, "help": "views per batch per process (0: the training batch divided among the processes)"}),
    ("--clips", "inference", "n_clips",
     {"type": int, "help": "N evenly spaced windows per video instead of sliding windows (multi-view testing)"}),
    ("--crops", "inference", "n_crops",
     {"type": int, "choices": INFERENCE_N_CROPS, "help": "3: three squares along the long side (multi-view testing)"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Settings: defaults, then --config FILE, then these flags. See docs/training.md."
    add_flag(parser, "--config", default=argparse.SUPPRESS,
             help="JSON or TOML file with [data], [model], [optim], [run] ... sections")
    add_flag(parser, "--print-config", action="store_true", default=False,
             help="print the resolved config (JSON) and exit")
    add_flag(parser, "--norm", default=argparse.SUPPRESS, choices=sorted(NAMED),
             help="input normalisation: a data set's mean/std (kinetics, activitynet) or the seed's 0-255 minus mean")
    add_flag(parser, "--value-scale", type=float, default=argparse.SUPPRESS, help="the successor's --value_scale")
    add_flag(parser, "--lr-file", default=argparse.SUPPRESS,
             help="the seed's lr.lua regimes (sets --scheduler regimes)")
    add_mean_std_flags(parser)
    add_switch(parser, "--inference", argparse.SUPPRESS,
               "recognise every video of --inference-subset after training, into one results JSON (default off; on "
               "when the config file has an [inference] section)")
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for flag, section, _, options in FLAGS:
        group = groups.setdefault(section, parser.add_argument_group(f"[{section}]"))
        options = dict(options)
        dest = _dest(flag)
        aliases = options.pop("aliases", ())  # the successor's spelling, which messages name too
        if options.pop("switch", False):
            add_switch(group, flag, argparse.SUPPRESS, options.get("help", ""))
        else:
            add_flag(group, flag, *aliases, dest=dest, default=argparse.SUPPRESS, **options)
    add_decode_flags(groups["data"])


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def read_config_file(path: str) -> Dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--config {path}: no such file")
    if file.suffix.lower() not in (".toml", ".json"):
        raise UserError(f"--config {path}: config files are TOML (.toml) or JSON (.json); "
                        f"`resnet3d train --print-config` shows one to start from")
    text = file.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is skipped
    if file.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            raise UserError(f"{path}: TOML config files need Python 3.11 or newer; write it as JSON instead") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UserError(f"{path}: not valid TOML ({error})") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {error.lineno}: not valid JSON ({error.msg})") from None
        except UserError as error:
            raise UserError(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a table of sections ([data], [model], ...) at the top")
    for section, values in data.items():
        if values is not None and not isinstance(values, dict):
            raise UserError(f"{path}: '{section}' must be a section (a table of settings), found {values!r}")
    # an opts.json holds "inference": null for a run without recognition: nothing to set
    return _home_expanded({section: values for section, values in data.items() if values is not None})


# Path settings of a config file, whose "~" means the home folder as it does in a shell (a config
# file goes through no shell); "auto" for run.resume is no path and stays as it is.
HOME_PATHS = (("data", "video_path"), ("data", "annotation_path"), ("finetune", "pretrained"),
              ("run", "result_path"), ("run", "resume"))


def _home_expanded(data: Dict[str, Any]) -> Dict[str, Any]:
    for section, key in HOME_PATHS:
        value = (data.get(section) or {}).get(key)
        if isinstance(value, str) and value.startswith("~"):
            data[section] = {**data[section], key: os.path.expanduser(value)}
    return data


def _flag_names_of_keys() -> Dict[str, Dict[str, str]]:
    """``{section: {flag name: key}}`` where a flag's name is not its key's (``--lr``: ``learning_rate``):
    a config file written with the flag's name gets the key suggested."""
    names: Dict[str, Dict[str, str]] = {}
    for flag, section, key, _ in FLAGS:
        name = flag[2:].replace("-", "_")
        if name != key:
            names.setdefault(section, {})[name] = key
    return names


def _no_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """A JSON object whose key is given twice: JSON keeps the last one without a word (TOML refuses)."""
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise UserError(f"'{key}' is given twice in one table: remove one of them")
        seen[key] = value
    return seen


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults <- config file <- flags, as one frozen Config."""
    config = Config(data=DataConfig())
    source = getattr(args, "config", None)
    from_file: Dict[str, Any] = read_config_file(source) if source else {}
    if from_file:
        config = merge(config, from_file, source, aliases=_flag_names_of_keys())
    overrides: Dict[str, Dict[str, Any]] = {}
    for flag, section, key, _ in FLAGS:
        dest = _dest(flag)
        if hasattr(args, dest):
            overrides.setdefault(section, {})[key] = getattr(args, dest)
    if decode_settings(args):
        overrides.setdefault("data", {}).update(decode_settings(args))
    run = overrides.get("run", {})
    if "compile" in run and "compile_mode" in run:  # both flags given: one mode, or an error
        run["compile_mode"] = resolve_compile_mode(run.pop("compile"), run["compile_mode"])
    config = _recognition_step(config, args, overrides)
    _input_norm(args, overrides)
    if hasattr(args, "lr_file"):
        asked = overrides.get("optim", {}).get("lr_scheduler")
        if asked not in (None, "regimes"):  # --lr-file sets the regimes schedule: --scheduler lost silently
            raise UserError(f"--lr-file sets the regimes schedule and --scheduler {asked} another; give one of them")
        path = find_lr_file(args.lr_file, "", config.run.result_path)
        optim = overrides.setdefault("optim", {})
        optim.update(lr_scheduler="regimes", regimes=[list(vars(r).values()) for r in parse_lr_lua(path)],
                     regimes_path=str(path))
    _checkpoint_fills(from_file, overrides)
    explicit = set(from_file.get("model") or {}) | set(overrides.get("model", {}))
    if explicit:
        overrides.setdefault("finetune", {})["explicit_model"] = sorted(explicit)
    chosen_optim = (set(from_file.get("optim") or {}) | set(overrides.get("optim", {}))) - {"explicit_optim"}
    if chosen_optim:  # (an opts.json given as the config file names them all: its values win)
        overrides.setdefault("optim", {})["explicit_optim"] = sorted(chosen_optim)
    config = merge(config, overrides, "the command line")
    if config.optim.lr_scheduler == "regimes":
        check_regime_flags(config.optim.regimes, config.optim.regimes_path or f"{source} [optim] regimes",
                           [(flag, getattr(args, dest), what) for flag, dest, what in
                            (("--lr", "lr", "learning rate"), ("--weight-decay", "weight_decay", "weight decay"))
                            if hasattr(args, dest)],
                           "drop the flag, edit the regimes, or choose another schedule with --scheduler")
    if config.data.n_channels != config.model.n_input_channels:
        config = merge(config, {"model": {"n_input_channels": config.data.n_channels}}, "the command line")
    return config


def _recognition_step(config: Config, args: argparse.Namespace, overrides: Dict[str, Dict[str, Any]]) -> Config:
    """``--inference`` / ``--no-inference`` turn the recognition step on or off; its settings
    alone never turn it on (a stray ``--clips`` must not start an hour of recognition)."""
    asked = getattr(args, "inference", None)  # None: not given
    settings = sorted(overrides.get("inference", {}))
    if asked is False:
        if settings:
            raise UserError(f"--no-inference turns recognition off, yet {_flags('inference', settings)} set it up; "
                            "give one")
        return dataclasses.replace(config, inference=None)
    if config.inference is None:
        if asked:
            return dataclasses.replace(config, inference=InferenceConfig())
        if settings:
            raise UserError(f"{_flags('inference', settings)} set up per-video recognition, which is off: add "
                            "--inference (or an [inference] section to the config file)")
    return config


def _flags(section: str, keys: Any) -> str:
    names = {(s, k): flag for flag, s, k, _ in FLAGS}
    return ", ".join(names[(section, key)] for key in keys)


def _input_norm(args: argparse.Namespace, overrides: Dict[str, Dict[str, Any]]) -> None:
    """--norm, --value-scale and --mean/--std -> data.input_norm (and the checkpoint's own
    normalisation no longer applies)."""
    if not any(hasattr(args, name) for name in ("norm", "value_scale", "mean", "std")):
        return
    value_scale = float(getattr(args, "value_scale", 1.0))
    if hasattr(args, "mean") or hasattr(args, "std"):
        if hasattr(args, "norm"):
            raise UserError(f"--norm {args.norm} and --mean/--std both choose the statistics; give one")
        norm = mean_std_norm(args, value_scale)
    elif getattr(args, "norm", None) == "seed":
        if hasattr(args, "value_scale"):
            raise UserError("--norm seed fixes the value scale (0-255); drop --value-scale")
        norm = NAMED["seed"]
    else:
        norm = successor_norm(getattr(args, "norm", "kinetics"), value_scale)
    overrides.setdefault("data", {})["input_norm"] = norm.to_dict()
    overrides.setdefault("finetune", {})["input_norm_from_checkpoint"] = False


def _checkpoint_fills(from_file: Mapping[str, Any], overrides: Dict[str, Dict[str, Any]]) -> None:
    """A checkpoint only evaluated supplies the clip size and normalisation it records, unless
    the config file or a flag chose them (a config file's own [finetune] setting wins)."""
    chosen = lambda key: key in (from_file.get("data") or {}) or key in overrides.get("data", {})  # noqa: E731
    finetune_in_file = from_file.get("finetune") or {}
    for key, marker in (("sample_size", "sample_size_from_checkpoint"),
                        ("sample_duration", "sample_duration_from_checkpoint"),
                        ("input_norm", "input_norm_from_checkpoint")):
        if chosen(key) and marker not in finetune_in_file:
            overrides.setdefault("finetune", {})[marker] = False


# Paths a config file may hold that must exist before the run starts. Not run.resume: a missing
# save_<N>.pth is found as model_<N>.pth (the trainer's notice), and "auto" is no path. (Pretrained
# weights are found under the other epoch name too: see check_config_file_paths.)
INPUT_PATHS = (("data", "video_path"), ("data", "annotation_path"), ("finetune", "pretrained"))


def check_config_file_paths(config: Config, from_file: Mapping[str, Any], source: str) -> None:
    """A path that came from the config file and does not exist is one line naming the file, the
    key, the path as written and where it was looked for. Relative paths in a config file are
    relative to the working directory, as flags and the originals' opts.json are, not to the
    file's folder: the message says so, and points at the file's folder when the path is there."""
    from resnet3d.engine.checkpoint import existing_checkpoint

    for section, key in INPUT_PATHS:
        written = (from_file.get(section) or {}).get(key)
        if not written or getattr(getattr(config, section), key) != written or os.path.exists(written):
            continue  # not from the file (a flag replaced it), or there
        if key == "pretrained" and existing_checkpoint(written)[1]:
            continue  # save_<N>.pth as model_<N>.pth, or the reverse: the run says which it reads
        if os.path.isabs(written):
            raise UserError(f"{source}: [{section}] {key} {written}: no such file or folder")
        looked = os.path.abspath(written)
        beside = Path(source).resolve().parent / written
        hint = f"; there is one beside the config file: write {beside}" if beside.exists() else ""
        raise UserError(f"{source}: [{section}] {key} {written}: no such file or folder (looked for {looked}); "
                        f"relative paths in a config file are relative to the working directory ({os.getcwd()}), "
                        f"not to the file's folder{hint}")


def run(args: argparse.Namespace) -> int:
    from resnet3d.engine.worker_process import another_process_of_the_machine, said_by_the_machines_first_process

    with said_by_the_machines_first_process():  # (under torchrun: each process reads the same flags and files)
        config = config_from_args(args)
        if config.hardware.nodes > 1 and not args.print_config:
            widened = unbind_from_launcher()
            if widened:  # the default worker count again, from the cores now usable
                if not another_process_of_the_machine():
                    print(f"resnet3d train: notice: {widened}", file=sys.stderr)
                config = config_from_args(args)
        if args.print_config:
            json.dump(config.to_dict(), sys.stdout, indent=2)
            print()
            return 0
        source = getattr(args, "config", None)
        if source:  # the data code's message names a flag (--video_path); this one names the file and key
            check_config_file_paths(config, read_config_file(source), source)
    from resnet3d.engine.trainer import run as run_training

    return run_training(config)
