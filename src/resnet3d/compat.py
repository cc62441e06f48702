"""The original programs' command lines -> one ``resnet3d.config.Config``.

``resnet3d main`` accepts every option of the seed (``th main.lua``, opts.lua) and of the
successor (``python main.py``, opts.py, including the 2018 release's spellings) exactly as they
were spelled. This module is the only place that knows those spellings: ``add_arguments``
registers them from ``OPTIONS`` (one table), ``config_from_args`` turns the parsed flags into the
frozen config and a list of one-line notices.

Where the originals' defaults differ, the successor's win (docs/training.md lists them). Every
option is registered with ``default=None`` so that "given on the command line" is visible: the
seed's ``lr.lua`` only replaces the successor's schedule when the user did not choose one, and a
checkpoint's own normalisation is kept unless normalisation flags were given.

The seed's learning-rate file (``lr.lua``) is found here (``find_lr_file``) and read by
``resnet3d.lr_lua.parse_lr_lua``; its errors name the file and line.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from resnet3d.cliargs import add_flag, add_switch, show_value
from resnet3d.config import (
    COMPILE_MODES,
    Config,
    FinetuneConfig,
    HardwareConfig,
    InferenceConfig,
    ModelConfig,
    OptimConfig,
    Regime,
    RunConfig,
    resolve_compile_mode,
)
from resnet3d.data.config import DataConfig
from resnet3d.engine.machines import DEFAULT_DIST_URL
from resnet3d.errors import UserError
from resnet3d.frame_flags import add_decode_flags, add_mean_std_flags, decode_settings, mean_std_norm
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers
from resnet3d.lr_lua import parse_lr_lua
from resnet3d.normalization import InputNorm, successor_2018_norm, successor_norm

SEED, SUCCESSOR, SUCCESSOR_2018 = "seed", "successor", "successor-2018"


@dataclass(frozen=True)
class Option:
    """One flag of the originals: spelling(s), parsing, its default in ``main``, who had it."""

    flags: Tuple[str, ...]
    dest: str
    origin: Tuple[str, ...]
    type: Any = None  # None: a switch (store_true)
    # the value ``main`` uses when the flag is absent (the successor's); a callable is asked at
    # run time (the worker count depends on the machine)
    default: Any = None
    nargs: Optional[str] = None
    choices: Optional[Tuple[Any, ...]] = None
    help: str = ""

    @property
    def is_switch(self) -> bool:
        return self.type is None


def _o(flags, dest, origin, type=None, default=None, nargs=None, choices=None, help=""):
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    origin = (origin,) if isinstance(origin, str) else tuple(origin)
    return Option(flags, dest, origin, type, default, nargs, choices, help)


S, P, P18 = SEED, SUCCESSOR, SUCCESSOR_2018
BOTH = (S, P)
MODELS = ("resnet", "resnet2p1d", "preresnet", "wideresnet", "resnext", "densenet", "c3d")

# Every option of both originals. `default` is what `main` uses (the successor's where they differ).
OPTIONS: Tuple[Option, ...] = (
    # paths
    _o("--root_path", "root_path", BOTH, str, "", help="every relative path below is joined to it"),
    _o("--video_path", "video_path", BOTH, str, "", help="frame folders (or video files / HDF5 files)"),
    _o("--annotation_path", "annotation_path", BOTH, str, "", help="annotation JSON"),
    _o("--result_path", "result_path", BOTH, str, "results", help="logs, checkpoints, opts.json"),
    _o("--premodel_path", "premodel_path", S, str, "", help="seed: pretrained model (.t7 or any checkpoint)"),
    _o("--pretrain_path", "pretrain_path", (P, P18), str, "", help="successor: pretrained model (.pth)"),
    _o("--resume_path", "resume_path", (P, P18), str, "", help="checkpoint to continue training from"),
    _o("--lr_path", "lr_path", S, str, "", help="seed's lr.lua (default <result_path>/lr.lua when it exists)"),
    # data set
    _o("--dataset", "dataset", BOTH, str, "kinetics", help="kinetics | activitynet | ucf101 | hmdb51 | mit | folder"),
    _o("--n_classes", "n_classes", BOTH, int, 400),
    _o("--n_pretrain_classes", "n_pretrain_classes", P, int, 0),
    _o("--n_finetune_classes", "n_finetune_classes", P18, int, 0, help="2018: classes of the fine-tuned model"),
    _o("--file_type", "file_type", P, str, "jpg", help="jpg | hdf5 | video"),
    _o("--input_type", "input_type", P, str, "rgb", choices=("rgb", "flow")),
    # sampling
    _o("--sample_size", "sample_size", BOTH, int, 112),
    _o("--sample_duration", "sample_duration", BOTH, int, 16),
    _o("--sample_t_stride", "sample_t_stride", P, int, 1),
    _o("--n_val_samples", "n_val_samples", BOTH, int, 3),
    # spatial augmentation
    _o("--crop", "crop", S, str, None, choices=("r", "c"), help="seed: r = random position, c = centre or corner"),
    _o("--initial_scale", "initial_scale", (S, P18), float, 1.0),
    _o("--n_scales", "n_scales", (S, P18), int, 5),
    _o("--scale_step", "scale_step", (S, P18), float, 0.84089641525),
    _o("--train_crop", "train_crop", (P, P18), str, "random", choices=("random", "corner", "center")),
    _o("--train_crop_min_scale", "train_crop_min_scale", P, float, 0.25),
    _o("--train_crop_min_ratio", "train_crop_min_ratio", P, float, 0.75),
    _o("--no_hflip", "no_hflip", BOTH),
    _o("--colorjitter", "colorjitter", P),
    _o("--train_t_crop", "train_t_crop", P, str, "random", choices=("random", "center")),
    # normalisation
    _o("--mean_dataset", "mean_dataset", (P, P18), str, "kinetics", choices=("kinetics", "activitynet")),
    _o("--no_mean_norm", "no_mean_norm", (P, P18)),
    _o("--no_std_norm", "no_std_norm", P),
    _o("--std_norm", "std_norm", P18, help="2018: divide by the std (off by default then)"),
    _o("--value_scale", "value_scale", P, int, 1),
    _o("--norm_value", "norm_value", P18, int, None, help="2018: 1 means inputs in 0-255, 255 means 0-1"),
    # optimiser and schedule
    _o("--learning_rate", "learning_rate", BOTH, float, 0.1),
    _o("--momentum", "momentum", BOTH, float, 0.9),
    _o("--dampening", "dampening", (P, P18), float, 0.0),
    _o("--weight_decay", "weight_decay", BOTH, float, 1e-3),
    _o("--nesterov", "nesterov", (P, P18)),
    _o("--optimizer", "optimizer", (P, P18), str, "sgd"),
    _o("--lr_scheduler", "lr_scheduler", P, str, "multistep",
       choices=("multistep", "plateau", "cosine", "regimes", "constant")),
    _o("--multistep_milestones", "multistep_milestones", P, int, (50, 100, 150), nargs="+"),
    _o("--overwrite_milestones", "overwrite_milestones", P),
    _o("--plateau_patience", "plateau_patience", P, int, 10),
    _o("--lr_patience", "lr_patience", P18, int, None, help="2018: patience of ReduceLROnPlateau"),
    _o("--dropout_ratio", "dropout_ratio", S, float, 0.5, help="C3D dropout"),
    # batches, epochs, stages
    _o("--batch_size", "batch_size", BOTH, int, 128,
       help="global batch, shared among all processes (per machine with --distributed --world_size N, as in the "
            "successor)"),
    _o("--inference_batch_size", "inference_batch_size", P, int, 0),
    _o("--batchnorm_sync", "batchnorm_sync", P),
    _o("--n_epochs", "n_epochs", BOTH, int, 200),
    _o("--begin_epoch", "begin_epoch", (S, P18), int, 1,
       help="continue from <result_path>/model_<N-1>.pth (or .t7, or save_<N-1>.pth)"),
    _o("--checkpoint", "checkpoint", BOTH, int, 10, help="save every this many epochs"),
    _o("--no_train", "no_train", BOTH),
    _o("--no_val", "no_val", BOTH),
    _o("--no_test", "no_test", S, help="seed's spelling of --no_val"),
    # per-video recognition (issue 5)
    _o("--test_video", "test_video", S),
    _o("--test_subset", "test_subset", (S, P, P18), str, "val"),
    _o("--test", "test", (P, P18), help="successor 2018/2019: --inference"),
    _o("--test_stride", "test_stride", P, int, None),
    _o("--test_crop", "test_crop", P, str, None, choices=("center", "nocrop")),
    _o("--test_no_average", "test_no_average", P),
    _o("--inference", "inference", P),
    _o("--inference_subset", "inference_subset", P, str, None),
    _o("--inference_stride", "inference_stride", P, int, 16),
    _o("--inference_crop", "inference_crop", P, str, "center", choices=("center", "nocrop")),
    _o("--inference_no_average", "inference_no_average", P),
    _o("--output_topk", "output_topk", P, int, 5),
    _o("--scale_in_test", "scale_in_test", P18, float, None),
    _o("--crop_position_in_test", "crop_position_in_test", P18, str, None),
    _o("--no_softmax_in_test", "no_softmax_in_test", P18),
    # model
    _o("--model", "model", BOTH, str, "resnet", choices=MODELS),
    _o("--model_depth", "model_depth", (P, P18), int, 18),
    _o("--resnet_depth", "resnet_depth", S, int, None, help="seed's spelling of --model_depth"),
    _o("--conv1_t_size", "conv1_t_size", P, int, 7),
    _o("--conv1_t_stride", "conv1_t_stride", P, int, 1),
    _o("--no_max_pool", "no_max_pool", P),
    _o("--resnet_shortcut", "resnet_shortcut", (P, P18), str, "B", choices=("A", "B", "C")),
    _o("--shortcut_type", "shortcut_type", S, str, None, choices=("A", "B", "C"), help="seed's --resnet_shortcut"),
    _o("--resnet_widen_factor", "resnet_widen_factor", P, float, 1.0),
    _o("--wide_resnet_k", "wide_resnet_k", (P, P18), int, 2),
    _o("--resnext_cardinality", "resnext_cardinality", (P, P18), int, 32),
    _o("--batch_norm", "batch_norm", S, help="C3D with batch normalisation"),
    _o("--global_pooling", "global_pooling", S, help="C3D with global average pooling"),
    _o("--weight_init", "weight_init", S),
    _o("--bgr_premodel", "bgr_premodel", S),
    _o("--ft_begin_module", "ft_begin_module", P, str, ""),
    _o("--ft_begin_index", "ft_begin_index", P18, int, 0),
    _o("--freeze_params", "freeze_params", S, int, 0, help="train only the last N parameterised layers"),
    # hardware and logging
    _o("--no_cuda", "no_cuda", BOTH),
    _o("--gpu_id", "gpu_id", S, int, 1, help="first GPU, 1-based as in the seed"),
    _o(("--n_gpus", "--n_gpu"), "n_gpus", S, int, None, help="GPUs (processes) to use; default: all visible"),
    _o("--n_threads", "n_threads", BOTH, int, default_num_workers,
       help=f"data loader worker processes per machine (default: {DEFAULT_WORKERS_RULE}; the originals' "
            "was 4; the count never changes results)"),
    _o("--manual_seed", "manual_seed", BOTH, int, 1),
    _o("--accimage", "accimage", (P, P18)),
    _o("--tensorboard", "tensorboard", P),
    _o("--distributed", "distributed", P, help="one process per GPU (DDP; resnet3d does so without it too)"),
    _o("--dist_url", "dist_url", P, str, None,
       help=f"with --distributed --world_size N: where the machines meet, tcp://HOST:PORT of the machine of "
            f"launcher rank 0, or env:// (default: {DEFAULT_DIST_URL})"),
    _o("--world_size", "world_size", P, int, -1,
       help="with --distributed: number of machines, each started by mpirun or srun (one process per machine)"),
)

OPTION_BY_DEST = {o.dest: o for o in OPTIONS}

# Accepted, deliberately without effect: one line each saying why.
NOT_IMPLEMENTED = {
    "accimage": "--accimage is accepted and ignored: resnet3d decodes JPEGs with libjpeg-turbo "
    "(simplejpeg) straight to uint8, which is faster than accimage",
    "weight_init": "--weight_init is accepted and ignored: resnet3d always initialises weights as the "
    "originals' PyTorch models do (Kaiming normal convolutions, BN weight 1 and bias 0)",
    "scale_in_test": "--scale_in_test is accepted and ignored: recognition uses a short-side resize to "
    "--sample_size and a centre crop (the successor's later scheme)",
    "crop_position_in_test": "--crop_position_in_test is accepted and ignored: recognition crops the centre",
    "no_softmax_in_test": "--no_softmax_in_test is accepted and ignored: recognition averages softmax "
    "scores over windows",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The originals' flags, plus resnet3d's own run options (kebab-case)."""
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        title = "options of " + " and ".join(
            {"seed": "the seed (th main.lua)", "successor": "the successor (python main.py)",
             "successor-2018": "the successor's 2018 release"}[o] for o in option.origin
        )
        group = groups.setdefault(title, parser.add_argument_group(title))
        hidden = callable(option.default) or option.default in (None, "", False)  # (a callable's help says it)
        shown = "" if hidden else f" (default: {show_value(option.default)})"
        # SUPPRESS: an absent flag leaves no attribute, so "given" is visible and --help shows
        # main's real default (in the help text) instead of None.
        kwargs: Dict[str, Any] = {"dest": option.dest, "default": argparse.SUPPRESS,
                                  "help": (option.help + shown).strip() or None}
        if option.is_switch:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = option.type
            if option.nargs:
                kwargs["nargs"] = option.nargs
            if option.choices:
                kwargs["choices"] = option.choices
        group.add_argument(*option.flags, **kwargs)
    add_run_arguments(parser.add_argument_group("resnet3d run options"))


def add_run_arguments(group: argparse._ActionsContainer) -> None:
    """Options new in resnet3d, shared by ``main`` and ``train`` (kebab-case, underscores accepted)."""
    quiet = argparse.SUPPRESS
    add_flag(group, "--resume", default=quiet, metavar="auto|PATH",
             help="continue a run: 'auto' takes the latest checkpoint in result_path")
    add_flag(group, "--precision", default=quiet, choices=("auto", "bf16", "fp16", "fp32"),
             help="autocast dtype (default auto: bf16 on Ampere or later GPUs, else fp32)")
    add_switch(group, "--compile", quiet, "torch.compile the model: --compile-mode default (default off)")
    add_flag(group, "--compile-mode", default=quiet, choices=COMPILE_MODES,
             help="torch.compile mode (reduce-overhead: CUDA graphs; default none)")
    add_switch(group, "--channels-last", quiet, "channels_last_3d memory format on CUDA (default on)")
    add_switch(group, "--deterministic", quiet, "deterministic algorithms: bit-identical reruns and continued runs on the CPU")
    add_flag(group, "--overwrite", action="store_true", default=quiet,
             help="let a fresh run replace an earlier run's logs and checkpoints in result_path")
    add_flag(group, "--nproc-per-node", type=int, default=quiet,
             help="processes to start on this machine (default: the GPU count; 1 on the CPU)")
    add_flag(group, "--freeze-bn", action="store_true", default=quiet,
             help="BatchNorm uses its running statistics and does not update them")
    add_flag(group, "--lr-warmup-epochs", type=float, default=quiet, help="warm-up epochs of --lr_scheduler cosine")
    add_flag(group, "--min-lr", type=float, default=quiet,
             help="learning rate --lr_scheduler cosine reaches at the last epoch (default 0)")
    add_flag(group, "--max-steps-per-epoch", type=int, default=quiet, help="cut each epoch short (smoke runs)")
    add_decode_flags(group)
    add_mean_std_flags(group)


def given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) is not None


def value(args: argparse.Namespace, dest: str) -> Any:
    """The flag's value, or ``main``'s default for it."""
    found = getattr(args, dest, None)
    if found is not None:
        return found
    option = OPTION_BY_DEST.get(dest)
    if option is None:
        return None
    if option.is_switch:
        return False
    return option.default() if callable(option.default) else option.default


def _join(root: str, path: str) -> str:
    """The originals' root joining: a relative path goes under --root_path; '' stays ''."""
    if not path:
        return ""
    path = os.path.expanduser(path)
    return os.path.join(os.path.expanduser(root), path) if root else path


def config_from_args(args: argparse.Namespace) -> Tuple[Config, List[str]]:
    """Translate parsed ``main`` flags into the frozen config, plus one-line notices to print."""
    notices: List[str] = [NOT_IMPLEMENTED[d] for d in NOT_IMPLEMENTED if given(args, d) and value(args, d)]
    v = lambda dest: value(args, dest)  # noqa: E731
    root = v("root_path")

    result_path = _join(root, v("result_path")) or "results"
    data = _data_config(args, root, notices)
    model = _model_config(args, data)
    finetune = _finetune_config(args, root, model)
    if v("n_finetune_classes") and v("pretrain_path"):
        # 2018 successor: --n_classes named the pretraining classes, --n_finetune_classes the new ones.
        model = replace(model, n_classes=v("n_finetune_classes"))
        finetune = replace(finetune, n_pretrain_classes=finetune.n_pretrain_classes or v("n_classes"))
    optim, regime_notice = _optim_config(args, root, result_path)
    run = _run_config(args, root, result_path)
    if regime_notice and run.train:  # (a run that only evaluates has no learning rate to speak of)
        notices.append(regime_notice)
    hardware = _hardware_config(args, notices)
    if hardware.nodes > 1:
        # The successor split --batch_size among one machine's GPUs, so each machine took a whole
        # --batch_size: the same command line keeps the same clips per step and per GPU.
        run = replace(run, batch_size=run.batch_size * hardware.nodes)
        notices.append(f"--batch_size {v('batch_size')} is per machine, as in the successor's --distributed runs: "
                       f"{hardware.nodes} machines {'train with' if run.train else 'share'} a global batch of "
                       f"{run.batch_size}")
    inference = _inference_config(args, data)
    return Config(data=data, model=model, finetune=finetune, optim=optim, run=run, hardware=hardware,
                  inference=inference), notices


def _data_config(args: argparse.Namespace, root: str, notices: List[str]) -> DataConfig:
    v = lambda dest: value(args, dest)  # noqa: E731
    if given(args, "crop"):
        # The seed: c = centre or a corner, r = anywhere; both multi-scale.
        train_crop = {"c": "corner", "r": "multiscale_random"}[v("crop")]
        if given(args, "train_crop") and v("train_crop") != {"c": "corner", "r": "random"}[v("crop")]:
            raise UserError(f"--crop {v('crop')} and --train_crop {v('train_crop')} disagree; give one of them")
    else:
        train_crop = v("train_crop")
    return DataConfig(
        dataset=v("dataset"),
        video_path=_join(root, v("video_path")),
        annotation_path=_join(root, v("annotation_path")),
        file_type=v("file_type"),
        input_type=v("input_type"),
        sample_size=v("sample_size"),
        sample_duration=v("sample_duration"),
        sample_t_stride=v("sample_t_stride"),
        train_t_crop=v("train_t_crop"),
        n_val_samples=v("n_val_samples"),
        train_crop=train_crop,
        train_crop_min_scale=v("train_crop_min_scale"),
        train_crop_min_ratio=v("train_crop_min_ratio"),
        initial_scale=v("initial_scale"),
        n_scales=v("n_scales"),
        scale_step=v("scale_step"),
        hflip=not v("no_hflip"),
        colorjitter=bool(v("colorjitter")),
        input_norm=_input_norm(args),
        num_workers=v("n_threads"),
        **decode_settings(args),
    )


NORM_FLAGS = ("mean_dataset", "no_mean_norm", "no_std_norm", "std_norm", "value_scale", "norm_value", "mean", "std")


def _input_norm(args: argparse.Namespace) -> InputNorm:
    v = lambda dest: value(args, dest)  # noqa: E731
    mean_norm = not v("no_mean_norm")
    old_spelling = given(args, "norm_value") or given(args, "std_norm")
    # The 2018 successor: --norm_value 1 = inputs in 0-255, 255 = in 0-1; std only with --std_norm.
    norm_value = v("norm_value") if v("norm_value") is not None else 1  # (0 was taken for 1)
    if norm_value <= 0:
        raise UserError(f"--norm_value must be positive (got {norm_value})")
    value_scale = 255.0 / norm_value if old_spelling else float(v("value_scale"))
    if given(args, "mean") or given(args, "std"):
        clash = [f"--{d}" for d in ("mean_dataset", "no_mean_norm", "no_std_norm") if given(args, d)]
        if clash:
            raise UserError(f"--mean/--std give the statistics that {' and '.join(clash)} would choose; give one")
        return mean_std_norm(args, value_scale)  # type: ignore[return-value]
    if old_spelling:
        # its own tables, and its --mean_dataset defaulted to activitynet (2020: kinetics)
        mean_dataset = v("mean_dataset") if given(args, "mean_dataset") else "activitynet"
        return successor_2018_norm(mean_dataset, norm_value, mean_norm, bool(v("std_norm")))
    return successor_norm(v("mean_dataset"), value_scale, mean_norm, not v("no_std_norm"))


def _model_config(args: argparse.Namespace, data: DataConfig) -> ModelConfig:
    v = lambda dest: value(args, dest)  # noqa: E731
    depth = v("model_depth")
    if given(args, "resnet_depth"):
        if given(args, "model_depth") and v("model_depth") != v("resnet_depth"):
            raise UserError(f"--resnet_depth {v('resnet_depth')} and --model_depth {v('model_depth')} disagree")
        depth = v("resnet_depth")
    shortcut = v("resnet_shortcut")
    if given(args, "shortcut_type"):
        if given(args, "resnet_shortcut") and v("resnet_shortcut") != v("shortcut_type"):
            raise UserError(f"--shortcut_type {v('shortcut_type')} and --resnet_shortcut {v('resnet_shortcut')} "
                            "disagree")
        shortcut = v("shortcut_type")
    return ModelConfig(
        model=v("model"),
        model_depth=depth,
        n_classes=v("n_classes"),
        n_input_channels=data.n_channels,
        conv1_t_size=v("conv1_t_size"),
        conv1_t_stride=v("conv1_t_stride"),
        no_max_pool=bool(v("no_max_pool")),
        shortcut_type=shortcut,
        widen_factor=v("resnet_widen_factor"),
        k=v("wide_resnet_k"),
        cardinality=v("resnext_cardinality"),
        batch_norm=bool(v("batch_norm")),
        global_pooling=bool(v("global_pooling")),
        dropout_ratio=v("dropout_ratio"),
    )


def _finetune_config(args: argparse.Namespace, root: str, model: ModelConfig) -> FinetuneConfig:
    v = lambda dest: value(args, dest)  # noqa: E731
    if v("premodel_path") and v("pretrain_path"):
        raise UserError("--premodel_path and --pretrain_path both name pretrained weights; give one")
    pretrained = _join(root, v("premodel_path") or v("pretrain_path")) or None
    ft_begin_module = v("ft_begin_module")
    if v("ft_begin_index"):
        if ft_begin_module:
            raise UserError("--ft_begin_index (2018) and --ft_begin_module say the same thing; give one")
        check_ft_begin_index(v("ft_begin_index"))
    if (ft_begin_module or v("ft_begin_index")) and v("freeze_params"):
        raise UserError("--ft_begin_module and --freeze_params both choose the trained layers; give one")
    if v("freeze_params") < 0:
        raise UserError(f"--freeze_params must be >= 0 (got {v('freeze_params')})")
    return FinetuneConfig(
        pretrained=pretrained,
        n_pretrain_classes=v("n_pretrain_classes"),
        ft_begin_module=ft_begin_module,
        ft_begin_index=v("ft_begin_index"),
        freeze_params=v("freeze_params"),
        freeze_bn=bool(getattr(args, "freeze_bn", None)),
        bgr_premodel=bool(v("bgr_premodel")),
        input_norm_from_checkpoint=not any(given(args, d) for d in NORM_FLAGS),
        sample_size_from_checkpoint=not given(args, "sample_size"),
        sample_duration_from_checkpoint=not given(args, "sample_duration"),
        explicit_model=tuple(sorted({key for dest, key in MODEL_FLAG_KEYS.items() if given(args, dest)})),
    )


# ``main``'s architecture flags (destinations) -> the ModelConfig setting each one sets
MODEL_FLAG_KEYS = {
    "model": "model", "model_depth": "model_depth", "resnet_depth": "model_depth", "conv1_t_size": "conv1_t_size",
    "conv1_t_stride": "conv1_t_stride", "no_max_pool": "no_max_pool", "resnet_shortcut": "shortcut_type",
    "shortcut_type": "shortcut_type", "resnet_widen_factor": "widen_factor", "wide_resnet_k": "k",
    "resnext_cardinality": "cardinality", "batch_norm": "batch_norm", "global_pooling": "global_pooling",
    "n_classes": "n_classes",
}


def check_ft_begin_index(index: int) -> None:
    """The 2018 successor's --ft_begin_index: block k on (layer<k>, denseblock<k>), 5 = the head
    (resolved against the built model by ``engine.optim.trainable_names``)."""
    if not 1 <= index <= 5:
        raise UserError(f"--ft_begin_index must be 0 (train all) or 1..5 (got {index})")


def _optim_config(args: argparse.Namespace, root: str, result_path: str) -> Tuple[OptimConfig, Optional[str]]:
    v = lambda dest: value(args, dest)  # noqa: E731
    if v("optimizer").lower() != "sgd":
        raise UserError(f"--optimizer {v('optimizer')}: only sgd is supported (as in both originals)")
    patience = v("lr_patience") if given(args, "lr_patience") else v("plateau_patience")
    scheduler = v("lr_scheduler")
    regimes: Tuple[Regime, ...] = ()
    regimes_path = find_lr_file(v("lr_path"), root, result_path)
    notice = None
    if regimes_path is not None:
        if given(args, "lr_scheduler") and scheduler != "regimes":
            raise UserError(f"--lr_scheduler {scheduler} and the seed's regimes file {regimes_path} disagree; "
                            "give one of them (or move the lr.lua away)")
        regimes = tuple(parse_lr_lua(regimes_path))
        scheduler = "regimes"
        check_regime_flags(regimes, str(regimes_path),
                           [(f"--{dest}", v(dest), dest.replace("_", " ")) for dest in ("learning_rate", "weight_decay")
                            if given(args, dest)],
                           "drop the flag, or edit (or move away) the lr.lua")
        notice = f"learning rate and weight decay follow the regimes in {regimes_path} ({len(regimes)} rows)"
    elif scheduler == "regimes":
        raise UserError(f"--lr_scheduler regimes needs an lr.lua: pass --lr_path or put one at {result_path}/lr.lua")
    dampening = 0.0 if v("nesterov") else v("dampening")  # torch refuses nesterov with dampening
    explicit = {key for dest, key in OPTIM_FLAG_KEYS.items() if given(args, dest)}
    if regimes_path is not None:  # the lr.lua sets the rate and weight decay of its epochs
        explicit |= {"lr_scheduler", "regimes", "learning_rate", "weight_decay"}
    optim = OptimConfig(
        optimizer="sgd",
        learning_rate=v("learning_rate"),
        momentum=v("momentum"),
        dampening=dampening,
        weight_decay=v("weight_decay"),
        nesterov=bool(v("nesterov")),
        lr_scheduler=scheduler,
        multistep_milestones=tuple(v("multistep_milestones")),
        overwrite_milestones=bool(v("overwrite_milestones")),
        plateau_patience=patience,
        warmup_epochs=getattr(args, "lr_warmup_epochs", None) or 0.0,
        min_lr=getattr(args, "min_lr", None) or 0.0,
        regimes=regimes,
        regimes_path=str(regimes_path) if regimes_path else None,
        explicit_optim=tuple(sorted(explicit)),
    )
    return optim, notice


# ``main``'s optimisation flags (destinations) -> the OptimConfig setting each one sets
OPTIM_FLAG_KEYS = {
    "learning_rate": "learning_rate", "momentum": "momentum", "dampening": "dampening",
    "weight_decay": "weight_decay", "nesterov": "nesterov", "lr_scheduler": "lr_scheduler",
    "multistep_milestones": "multistep_milestones", "plateau_patience": "plateau_patience",
    "lr_patience": "plateau_patience", "lr_warmup_epochs": "warmup_epochs", "min_lr": "min_lr",
}


def check_regime_flags(regimes: Sequence[Regime], where: str, given_flags: Sequence[Tuple[str, float, str]],
                       fix: str) -> None:
    """An explicit learning-rate or weight-decay flag beside regimes that start at epoch 1 is an
    error: the regimes set both at every epoch, so the flag would never be used (the seed ignored
    it without a word). Regimes that start later leave the flag the epochs before their first row.
    ``given_flags``: (flag as typed, its value, "learning rate" or "weight decay").
    """
    if not given_flags or not regimes or min(row.first_epoch for row in regimes) > 1:
        return
    flag, number, what = given_flags[0]
    raise UserError(f"{flag} {number:g} would never be used: the regimes in {where} set the {what} of every "
                    f"epoch from epoch 1 on; {fix}")


def find_lr_file(lr_path: str, root: str, result_path: str) -> Optional[Path]:
    """The seed's rule: --lr_path, or <result_path>/lr.lua when that file exists.

    The seed did not join --lr_path to --root_path, yet its README passes ``LR/Kinetics/lr.lua``
    beside ``--root_path ~/data`` where the data layout keeps it under ~/data: we try the joined
    path first, then the path as given. A named file that exists nowhere is an error (the seed
    silently trained without it).
    """
    if not lr_path:
        default = Path(result_path) / "lr.lua"
        return default if default.is_file() else None
    expanded = os.path.expanduser(lr_path)
    tried = []
    if root and not os.path.isabs(expanded):
        tried.append(Path(_join(root, expanded)))
    tried.append(Path(expanded))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise UserError(f"--lr_path {lr_path}: no such file (tried {', '.join(str(t) for t in tried)})")


def _run_config(args: argparse.Namespace, root: str, result_path: str) -> RunConfig:
    v = lambda dest: value(args, dest)  # noqa: E731
    resume = getattr(args, "resume", None)
    if v("resume_path"):
        if resume:
            raise UserError("--resume and --resume_path both name the run to continue; give one")
        resume = _join(root, v("resume_path"))
    begin_epoch = v("begin_epoch")
    if begin_epoch < 1:
        raise UserError(f"--begin_epoch must be >= 1 (got {begin_epoch})")
    if begin_epoch > 1 and resume:
        raise UserError("--begin_epoch continues from result_path; --resume/--resume_path name a checkpoint. Give one")
    if v("checkpoint") < 1:
        raise UserError(f"--checkpoint must be >= 1 (got {v('checkpoint')})")
    extra = {name: getattr(args, name) for name in
             ("precision", "channels_last", "deterministic", "overwrite", "max_steps_per_epoch")
             if getattr(args, name, None) is not None}
    compile_mode = resolve_compile_mode(getattr(args, "compile", None), getattr(args, "compile_mode", None))
    if compile_mode is not None:
        extra["compile_mode"] = compile_mode
    return RunConfig(
        result_path=result_path,
        n_epochs=v("n_epochs"),
        begin_epoch=begin_epoch,
        batch_size=v("batch_size"),
        train=not v("no_train"),
        val=not (v("no_val") or v("no_test")),
        checkpoint_every=v("checkpoint"),
        resume=resume or None,
        manual_seed=v("manual_seed"),
        tensorboard=bool(v("tensorboard")),
        **extra,
    )


def _hardware_config(args: argparse.Namespace, notices: List[str]) -> HardwareConfig:
    v = lambda dest: value(args, dest)  # noqa: E731
    nproc = getattr(args, "nproc_per_node", None)
    nodes, dist_url = 1, ""
    if several_machines(args):
        # the successor's several machines: one process per machine started by mpirun (or srun)
        nodes, dist_url = v("world_size"), v("dist_url") or DEFAULT_DIST_URL
        if urlsplit(dist_url).hostname in ("127.0.0.1", "localhost", "::1"):
            notices.append(f"--dist_url {dist_url} is this machine: the {nodes} processes meet only if they all run "
                           "here; on several machines pass the address of the machine of rank 0 "
                           "(--dist_url tcp://node0:23456)")
    elif v("world_size") > 1:
        flags = ("--distributed " if v("distributed") else "") + f"--world_size {v('world_size')}"
        why = ("torchrun started this process and sets the machines itself" if v("distributed") else
               "without --distributed (as in the successor)")
        notices.append(f"{flags} is accepted and ignored: {why}; this process trains on this machine's GPUs only "
                       "unless started by torchrun (docs/training.md, 'Several GPUs and several machines')")
    if v("dist_url") and nodes == 1:
        notices.append("--dist_url is accepted and ignored: resnet3d starts and connects one machine's processes "
                       "itself (several machines: --distributed --world_size N under mpirun or srun, or torchrun; "
                       "docs/training.md)")
    if v("gpu_id") < 1:
        raise UserError(f"--gpu_id is 1-based as in the seed (got {v('gpu_id')})")
    return HardwareConfig(
        device="cpu" if v("no_cuda") else "cuda",  # the originals train on GPUs unless --no_cuda
        n_gpus=v("n_gpus"),
        gpu_id=v("gpu_id") - 1,
        nproc_per_node=nproc,
        batchnorm_sync=bool(v("batchnorm_sync")),
        nodes=nodes,
        dist_url=dist_url,
    )


def several_machines(args: argparse.Namespace) -> bool:
    """The successor's machines: ``--distributed --world_size N`` (N > 1), started by mpirun or
    srun; under torchrun the machines are torchrun's, and the flags are ignored."""
    from resnet3d.engine.distributed import launched_by_torchrun

    return value(args, "world_size") > 1 and bool(value(args, "distributed")) and not launched_by_torchrun()


def _inference_config(args: argparse.Namespace, data: DataConfig) -> Optional[InferenceConfig]:
    v = lambda dest: value(args, dest)  # noqa: E731
    if v("test_video"):
        if v("inference") or v("test"):
            raise UserError("--test_video (seed) and --inference/--test (successor) both ask for recognition; give one")
        return InferenceConfig(flavour="seed", subset=v("test_subset"), stride=data.sample_duration,
                               crop="center", average=True, top_k=10, batch_size=v("inference_batch_size"))
    if v("inference") or v("test"):
        subset = v("inference_subset") or v("test_subset")
        stride = v("test_stride") if given(args, "test_stride") else v("inference_stride")
        crop = v("test_crop") if given(args, "test_crop") else v("inference_crop")
        return InferenceConfig(flavour="successor", subset=subset, stride=stride, crop=crop,
                               average=not (v("inference_no_average") or v("test_no_average")),
                               top_k=v("output_topk"), batch_size=v("inference_batch_size"))
    return None
