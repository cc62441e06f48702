"""Where a run's model comes from: fresh (built from the flags), pretrained weights (their
architecture, a new head for the data set's classes), or a checkpoint that the run continues
(``--resume``, ``--begin_epoch``) or only evaluates.

A continued run carries over its checkpoint's architecture, its input normalisation and clip
size (unless flags choose others), the epoch it reached (and the step, for an epoch stopped
midway), its best metric and, from our own checkpoints, the optimiser, schedule, gradient scaler
and RNG states (``Start``); it must keep the classes it was trained on, in their order. An evaluated checkpoint names its results with its own
class names, and the annotation's targets are mapped onto its outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from resnet3d.config import Config, ModelConfig
from resnet3d.engine import checkpoint as ckpt
from resnet3d.engine.distributed import DistInfo
from resnet3d.engine.messages import say, warn
from resnet3d.errors import UserError


@dataclass
class Start:
    """Where the run starts and what it carries over from a checkpoint."""

    epoch: int = 1  # first epoch to train
    step_in_epoch: int = 0  # steps of that epoch already done (an interrupted checkpoint)
    partial_sums: Optional[Dict[str, float]] = None
    source: Optional[Path] = None
    ours: Dict[str, Any] = field(default_factory=dict)  # optimizer/scheduler/... of our checkpoints
    best_metric: float = -math.inf
    # (global batch size, processes) of the run an interrupted checkpoint stopped: the steps it
    # did are counted in its batches, and each process's share of the epoch follows the processes
    interrupted_batching: Optional[Tuple[int, int]] = None
    notes: List[str] = field(default_factory=list)
    # the checkpoint's own class names, in the order of its outputs (a run that only evaluates
    # names its results with them, whatever order the annotation lists its labels in)
    class_names: Optional[List[str]] = None


def continue_source(config: Config) -> Optional[Path]:
    """The checkpoint a run continues from: --resume PATH/auto, --resume_path, --begin_epoch N."""
    run = config.run
    result_path = Path(run.result_path)
    if run.resume == "auto":
        return ckpt.find_latest(result_path)
    if run.resume:
        return Path(run.resume)
    if run.begin_epoch > 1:
        return ckpt.continue_path(result_path, run.begin_epoch)
    return None


def open_checkpoint(config: Config, start: Start) -> Tuple[Optional[Path], Any]:
    """The checkpoint the run starts from: ``(path continued from or None, LoadedCheckpoint or
    None)``; a continued run's checkpoint wins over pretrained weights."""
    from resnet3d.checkpoints import load_checkpoint

    run, finetune = config.run, config.finetune
    source = continue_source(config)
    if run.resume == "auto" and source is None:
        start.notes.append(f"--resume auto: no checkpoint in {run.result_path} yet, starting at epoch 1")
    named = source or finetune.pretrained
    if not named:
        return None, None
    found, note = ckpt.existing_checkpoint(named)  # save_<N>.pth is found as model_<N>.pth, and the reverse
    if note:
        start.notes.append(note)
    if source is not None:
        return found, load_checkpoint(found)
    return None, load_checkpoint(found, bgr_premodel=finetune.bgr_premodel)


def evaluation_settings(config: Config, loaded: Any, start: Start, continued: bool = False) -> Config:
    """A run that only evaluates a checkpoint (no training), or continues one (``--begin_epoch``,
    ``--resume``), takes the clip size the checkpoint records (ours do) unless the flags chose one:
    the model is tested on the clips it learnt, and a continued run goes on with the clips it had
    (the seed's continuation command names no clip size)."""
    if loaded is None or (config.run.train and not continued):
        return config
    finetune, data = config.finetune, config.data
    changes: Dict[str, int] = {}
    for key, wanted in (("sample_size", finetune.sample_size_from_checkpoint),
                        ("sample_duration", finetune.sample_duration_from_checkpoint)):
        recorded = loaded.extra.get(key)
        if wanted and isinstance(recorded, int) and not isinstance(recorded, bool) and recorded != getattr(data, key):
            changes[key] = recorded
    if not changes:
        return config
    shown = ", ".join(f"{key} {value}" for key, value in changes.items())
    start.notes.append(f"{shown} from {loaded.describe_source()} (the clips it was trained on; flags override)")
    return replace(config, data=data.with_changes(**changes))


def build_model(config: Config, n_data_classes: Optional[int],
                opened: Tuple[Optional[Path], Any] = (None, None),
                start: Optional[Start] = None) -> Tuple[nn.Module, Config, Start]:
    """The model this run trains or tests, the config updated with what the checkpoint says
    (architecture, input normalisation), and where to start. ``opened`` is
    ``open_checkpoint``'s answer."""
    from resnet3d.checkpoints import build_model_from_checkpoint
    from resnet3d.models import create_model

    run, finetune = config.run, config.finetune
    start = start or Start(epoch=1)
    source, loaded = opened
    if loaded is not None and not run.train and loaded.class_names:
        start.class_names = list(loaded.class_names)
    # Flags the weights cannot show; they apply to checkpoints that do not record a config.
    invisible = {"conv1_t_stride": config.model.conv1_t_stride, "no_max_pool": config.model.no_max_pool}
    if source is not None:
        ours = loaded.source_format == ckpt.FORMAT
        overrides = invisible if _records_no_config(loaded) else {}
        model, loaded = build_model_from_checkpoint(loaded, **overrides)
        completed = loaded.epoch
        if run.begin_epoch > 1 and not run.resume:
            completed = run.begin_epoch - 1  # the seed's rule: model_<N-1> means N-1 epochs done
        if completed is None:
            start.notes.append(f"{source} does not record its epoch: counting it as epoch 0")
            completed = 0
        start.epoch = completed + 1
        start.source = source
        if ours:
            extra = loaded.extra
            start.step_in_epoch = int(extra.get("step_in_epoch", 0) or 0)
            if start.step_in_epoch:
                start.partial_sums = {k: float(v) for k, v in (extra.get("partial_sums") or {}).items()}
                batch = ((extra.get("config") or {}).get("run") or {}).get("batch_size")
                if batch is not None:
                    start.interrupted_batching = (int(batch), int(extra.get("world_size", 1) or 1))
            best = extra.get("best_metric")
            start.best_metric = float(best) if best is not None else -math.inf
            start.ours = {"optimizer": loaded.optimizer, "scheduler": loaded.scheduler, "scaler": extra.get("scaler"),
                          "rng_state": extra.get("rng_state"), "rng_states": extra.get("rng_states")}
        else:
            start.ours = {"optimizer": loaded.optimizer, "foreign": loaded.source_format, "scheduler": loaded.scheduler}
        partly = f", step {start.step_in_epoch} of the next" if start.step_in_epoch else ""
        start.notes.append(f"{'continuing from' if run.train else 'evaluating'} {source} ({loaded.arch or loaded.model_config.get('model')}, "
                           f"{completed} epoch(s) done{partly})")
        differ = _explicit_settings_differing(config, loaded.model_config, ignored=("n_input_channels",))
        if differ:  # (the successor's resume lines repeat the first run's flags; a slip there changes nothing)
            asked = ", ".join(f"{key} {getattr(config.model, key)}" for key in differ)
            holds = ", ".join(f"{key} {loaded.model_config[key]}" for key in differ)
            start.notes.append(f"{asked} given, but {source} holds {holds}: its architecture is kept")
    elif loaded is not None:  # pretrained weights
        if loaded.path is not None and Path(finetune.pretrained or "") != loaded.path:
            # found under the other epoch name (open_checkpoint): the file really read is the one
            # the messages name and the config records, and so the one --overwrite must not remove
            config = replace(config, finetune=replace(finetune, pretrained=str(loaded.path)))
            finetune = config.finetune
        _check_explicit_architecture(config, loaded)
        overrides: Dict[str, Any] = {}
        if finetune.n_pretrain_classes:
            if loaded.n_classes is not None and loaded.n_classes != finetune.n_pretrain_classes:
                raise UserError(f"--n_pretrain_classes {finetune.n_pretrain_classes}, but {finetune.pretrained} has "
                                f"{loaded.n_classes} classes: pass --n_pretrain_classes {loaded.n_classes}, or leave "
                                "it out (the head's size is read from the weights)")
            overrides["n_classes"] = finetune.n_pretrain_classes
        if _records_no_config(loaded):
            overrides.update(invisible)
        new_classes = config.model.n_classes if run.train else None
        pretrained_classes = overrides.get("n_classes", loaded.n_classes)
        model, loaded = build_model_from_checkpoint(loaded, new_n_classes=new_classes, **overrides)
        head = ""
        if new_classes is not None and new_classes != pretrained_classes:
            head = f", head replaced: {pretrained_classes} -> {new_classes} classes"
        elif new_classes is not None:  # (as in the originals: the same count keeps the trained head)
            head = f", head kept: {new_classes} classes, as many as the run's"
        start.notes.append(f"pretrained weights from {finetune.pretrained}{head}")
    else:
        model = create_model(config.model.model, config.model.depth,
                             **config.model.create_kwargs(config.data.sample_size, config.data.sample_duration))
        if not run.train:
            start.notes.append("no weights given: validating/testing a freshly initialised model "
                               "(pass --premodel_path / --pretrain_path or --resume_path)")

    model_config = model.model_config
    n_outputs = int(model_config.get("n_classes", 0))
    if n_data_classes is not None and n_outputs < n_data_classes:
        hint = " (fine-tuning replaces the head)" if source is None else ""
        raise UserError(f"the model has {n_outputs} outputs but the data set has {n_data_classes} classes: "
                        f"pass --n_classes {n_data_classes}{hint}")
    if n_data_classes is not None and n_outputs > n_data_classes:
        start.notes.append(f"the model has {n_outputs} outputs for {n_data_classes} classes in the data set "
                           f"(--n_classes {n_data_classes} would fit them exactly)")
    data = config.data
    if loaded is not None and loaded.input_norm is not None and finetune.input_norm_from_checkpoint:
        if loaded.input_norm != data.input_norm:
            start.notes.append(f"input normalisation from the checkpoint: mean {list(loaded.input_norm.mean)}, "
                               f"std {list(loaded.input_norm.std)}, value scale {loaded.input_norm.value_scale}")
        data = data.with_changes(input_norm=loaded.input_norm)
    if data.n_channels != int(model_config.get("n_input_channels", 3)):
        raise UserError(f"the model takes {model_config.get('n_input_channels')} input channels but "
                        f"--input_type {data.input_type} gives {data.n_channels}")
    resolved = replace(config, data=data, model=ModelConfig.from_model_config(model_config))
    return model, resolved, start


def _check_explicit_architecture(config: Config, loaded) -> None:
    """Pretrained weights bring their own architecture. A setting given explicitly (flag or config
    file) that the weights contradict is an error naming both, not silently dropped: the user
    asked for a model the weights are not."""
    from resnet3d.checkpoints.mismatch import describe

    recorded = loaded.model_config
    differ = _explicit_settings_differing(config, recorded)
    if not differ:
        return
    asked = ", ".join(f"{key} {getattr(config.model, key)}" for key in differ)
    holds = ", ".join(f"{key} {recorded[key]}" for key in differ)
    raise UserError(f"{config.finetune.pretrained} holds {describe(recorded)}, but {asked} was asked for: "
                    f"fine-tuning keeps the weights' architecture ({holds}); leave out those settings (flags or "
                    "config file), or choose weights of the model you want")


def _explicit_settings_differing(config: Config, recorded: Dict[str, Any],
                                 ignored: Tuple[str, ...] = ("n_classes", "n_input_channels")) -> List[str]:
    """Architecture settings given explicitly (flag or config file) that ``recorded`` contradicts
    (fine-tuning replaces the head, and the channels follow --input_type: not compared there)."""
    return [key for key in config.finetune.explicit_model
            if key not in ignored and recorded.get(key) is not None
            and getattr(config.model, key, recorded[key]) != recorded[key]]


def _records_no_config(loaded) -> bool:
    """True for checkpoints (the successor's, bare state_dicts) whose weights cannot show
    conv1_t_stride and no_max_pool, so the flags decide them."""
    from resnet3d.models import model_options

    if loaded.source_format in (ckpt.FORMAT, "torch7", "torchvision"):
        return False
    return "conv1_t_stride" in model_options(loaded.model_config["model"])


def arch_name(model_config: Dict[str, Any]) -> str:
    depth = model_config.get("model_depth")
    return f"{model_config['model']}-{depth}" if depth else str(model_config["model"])


# torch's words for a clip smaller than a convolution's or pooling's window
_TOO_SMALL = ("smaller than kernel size", "Output size is too small", "Kernel size can't be greater")


def clip_too_small(error: BaseException, model_config: Dict[str, Any], duration: int, size: int) -> Optional[UserError]:
    """torch's error for a clip the model's windows outgrow, as one line with the flags that fix
    it; None for any other error."""
    if not isinstance(error, RuntimeError) or not any(words in str(error) for words in _TOO_SMALL):
        return None
    return UserError(f"clips of {duration}x{size}x{size} frames are too small for {arch_name(model_config)} "
                     f"({str(error).splitlines()[0]}): raise --sample_duration and/or --sample_size")


def shape_only_copy(model_config: Dict[str, Any]) -> nn.Module:
    """The architecture on PyTorch's meta device, in eval mode: a clip goes through it as shapes
    only (no memory, no arithmetic), so the real model's weights, statistics and device are untouched."""
    from resnet3d.models import create_model

    with torch.device("meta"):
        return create_model(**model_config).eval()


def check_clip_fits(model: nn.Module, channels: int, duration: int, size: int) -> None:
    """Before the first video: the model takes ``channels`` and clips of this size. Found at the
    first batch, a mismatch was a traceback from the middle of recognition. The clip goes through
    ``shape_only_copy``: by arithmetic (``clip_shapes.shape_forward``), and where that cannot
    tell that it fits, as a meta-device forward pass, whose error names the layer in torch's words
    (a meta forward costs every process 1.1 s of CPU: it imports torch's compiler stack)."""
    config = getattr(model, "model_config", None)
    if not config:
        return
    takes = int(config.get("n_input_channels", 3))
    if takes != channels:
        kind = {2: "optical flow (x and y)", 3: "RGB"}.get(takes, f"{takes}-channel input")
        given = {2: "flow", 3: "rgb"}.get(channels, str(channels))
        wanted = {2: "flow", 3: "rgb"}.get(takes)
        hint = f": pass --input-type {wanted} (and frames of that kind)" if wanted else ""
        raise UserError(f"the model takes {takes} input channels ({kind}), but the frames are read as {given} "
                        f"({channels} channels){hint}")
    from resnet3d.engine.clip_shapes import shape_forward

    shape_only = shape_only_copy(config)
    clip = torch.zeros(1, channels, duration, size, size, device="meta")
    if shape_forward(shape_only, clip) is not None:
        return
    try:
        shape_only(clip)
    except RuntimeError as error:
        too_small = clip_too_small(error, config, duration, size)
        if too_small is None:
            return  # (an operation without a meta kernel: the real first batch decides)
        raise too_small from None


# -- a checkpoint's classes against the annotation's -----------------------------------------------


def check_continued_classes(source: Path, loaded: Any, data_names: List[str]) -> None:
    """A continued run trains the classes it started with, in their order: its head's outputs
    mean those classes. Another annotation (a class added, or the labels in another order) would
    train the head on other targets without a word."""
    names = list(getattr(loaded, "class_names", None) or [])
    if not names or not data_names or names == data_names:
        return
    shown = lambda items: ", ".join(items[:4]) + (" ..." if len(items) > 4 else "")  # noqa: E731
    if set(names) == set(data_names):
        why = f"lists the same {len(names)} classes in another order ({shown(data_names)} against {shown(names)})"
        fix = "continue with the annotation the run started with"
    else:
        added = [n for n in data_names if n not in set(names)]
        gone = [n for n in names if n not in set(data_names)]
        why = (f"has {len(data_names)} classes against the run's {len(names)}"
               + (f"; new: {shown(added)}" if added else "") + (f"; missing: {shown(gone)}" if gone else ""))
        fix = "to train on these classes, start a new run from its weights with --pretrain_path (a new head)"
    raise UserError(f"the annotation {why}, but {source} continues a run trained on its own classes: {fix}")


def checkpoint_class_order(start: Start, data_names: List[str], n_outputs: int,
                           info: DistInfo) -> Tuple[List[str], Optional[torch.Tensor]]:
    """An evaluated checkpoint's class names, and how the annotation's class indices map onto its
    outputs when the two orders differ (None when they agree).

    Fewer names than outputs (trained with more outputs than classes: main's default --n_classes
    is the successor's 400) still name the first outputs, in order, as ``resnet3d test`` takes
    them; recognition names the others by index."""
    names = list(start.class_names or [])
    if not names or len(names) > n_outputs:
        say(info, f"resnet3d: the checkpoint names {len(names)} classes for {n_outputs} outputs: its names are not "
                  "used; results are named by the annotation's labels")
        return data_names, None
    if not data_names or data_names == names[:len(data_names)]:
        return names, None
    position = {name: i for i, name in enumerate(names)}
    unknown = [name for name in data_names if name not in position]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        warn(info, f"{len(unknown)} class(es) of the annotation are not among the checkpoint's ({shown}); "
                   "their validation videos are left out of the accuracy")
    say(info, "resnet3d: the annotation lists the classes in another order than the checkpoint: validation "
              "targets follow the checkpoint's order")
    return names, torch.tensor([position.get(name, -1) for name in data_names], dtype=torch.int64)
