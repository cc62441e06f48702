"""A model ready for recognition or classification, from any checkpoint, plus what it expects.

Our checkpoints carry everything (architecture, class names, input normalisation, clip size), so
``resnet3d test --weights model_best.pth`` and ``resnet3d classify --model model_best.pth`` need no
other flag. The successor's and the seed's files carry weights only: the loader infers the
architecture from them; flags (or a labels file) supply the rest.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from resnet3d.cliargs import add_flag
from resnet3d.errors import UserError
from resnet3d.frame_flags import add_mean_std_flags, mean_std_norm
from resnet3d.normalization import KINETICS, NAMED, InputNorm

if TYPE_CHECKING:  # torch is imported only once a model loads: --help stays light
    from torch import nn

DEFAULT_SAMPLE_SIZE = 112
DEFAULT_SAMPLE_DURATION = 16
# flags that change create_model arguments (the successor's / companion tool's spellings)
MODEL_FLAGS = {
    "model_name": "model",
    "model_depth": "model_depth",
    "n_classes": "n_classes",
    "resnet_shortcut": "shortcut_type",
    "conv1_t_size": "conv1_t_size",
    "conv1_t_stride": "conv1_t_stride",
    "no_max_pool": "no_max_pool",
    "resnet_widen_factor": "widen_factor",
    "wide_resnet_k": "k",
    "resnext_cardinality": "cardinality",
}


@dataclass
class InferenceModel:
    model: nn.Module
    class_names: Optional[List[str]]
    input_norm: InputNorm
    sample_size: int
    sample_duration: int
    source_format: str
    notes: List[str] = field(default_factory=list)
    # the data section of the training run's config (our checkpoints), else empty: dataset,
    # file_type, input_type, sample_t_stride ... for what the flags leave open
    recorded_data: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return int(self.model.model_config.get("n_classes", 0))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Architecture flags for checkpoints that do not record it (all optional)."""
    group = parser.add_argument_group("model (only for checkpoints that do not record it)")
    add_flag(group, "--model-name", default=None, help="family: resnet, preresnet, wideresnet, resnext, densenet, ...")
    add_flag(group, "--model-depth", type=int, default=None)
    add_flag(group, "--n-classes", type=int, default=None)
    add_flag(group, "--resnet-shortcut", default=None, choices=("A", "B", "C"))
    add_flag(group, "--conv1-t-size", type=int, default=None)
    add_flag(group, "--conv1-t-stride", type=int, default=None)
    add_flag(group, "--no-max-pool", action="store_true", default=None)
    add_flag(group, "--resnet-widen-factor", type=float, default=None)
    add_flag(group, "--wide-resnet-k", type=int, default=None)
    add_flag(group, "--resnext-cardinality", type=int, default=None)
    add_flag(group, "--sample-size", type=int, default=None,
             help=f"frame size the model takes (default: the checkpoint's, else {DEFAULT_SAMPLE_SIZE})")
    add_flag(group, "--sample-duration", type=int, default=None,
             help=f"frames per clip (default: the checkpoint's, else {DEFAULT_SAMPLE_DURATION})")
    add_flag(group, "--input-norm", default=None, choices=sorted(NAMED),
             help="how the model expects its input values (default: the checkpoint's; else kinetics, the "
                  "successor's mean/std on 0-1 values; seed: 0-255 minus the ActivityNet mean)")
    add_mean_std_flags(group)
    add_flag(group, "--labels", default=None, metavar="FILE",
             help="class names: a text file with one name per line (the companion tool's class_names_list), "
                  "or an annotation JSON with 'labels'")
    add_flag(group, "--bgr-premodel", action="store_true", help="the seed's flag: weights trained on BGR frames")


# How test and classify spell each architecture setting: the mismatch table's fix names these.
FLAG_SPELLING = {
    **{target: f"--{flag.replace('_', '-')} {{}}" for flag, target in MODEL_FLAGS.items() if target != "no_max_pool"},
    "sample_size": "--sample-size {}",
    "sample_duration": "--sample-duration {}",
}


def model_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    return {target: getattr(args, flag) for flag, target in MODEL_FLAGS.items() if getattr(args, flag, None) is not None}


def read_labels(path: str) -> List[str]:
    """Class names from a text file (one per line) or an annotation JSON (``labels`` / taxonomy)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not part of the first name
    except OSError as error:
        raise UserError(f"--labels {path}: cannot read it ({error.strerror})") from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"--labels {path}: not valid JSON ({error})") from None
        if isinstance(data, dict) and isinstance(data.get("labels"), list):
            return [str(name) for name in data["labels"]]
        if isinstance(data, dict) and isinstance(data.get("taxonomy"), list):
            from resnet3d.data.annotations import activitynet_classes

            return activitynet_classes(data["taxonomy"], path)
        if isinstance(data, list):
            return [str(name) for name in data]
        raise UserError(f"--labels {path}: expected a JSON list of names or an annotation with 'labels'")
    names = [line.strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if not names:
        raise UserError(f"--labels {path}: no class names in it (one per line)")
    return names


def load_inference_model(path: str, args: argparse.Namespace) -> InferenceModel:
    """Build the checkpoint's model, with flags filling what the file does not say."""
    from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint
    from resnet3d.engine.checkpoint import existing_checkpoint

    found, note = existing_checkpoint(path)  # the successor's save_<N>.pth found as our model_<N>.pth, or the reverse
    path = str(found)
    loaded = load_checkpoint(found, bgr_premodel=bool(getattr(args, "bgr_premodel", False)))
    model, loaded = build_model_from_checkpoint(loaded, spelling=FLAG_SPELLING, **model_overrides(args))
    notes = ([note] if note else []) + list(loaded.notes)
    extra = loaded.extra or {}
    names: Optional[List[str]] = None
    if getattr(args, "labels", None):
        names = read_labels(args.labels)
    elif loaded.class_names:
        names = list(loaded.class_names)
    n_classes = int(model.model_config.get("n_classes", 0))
    if names is not None and not getattr(args, "labels", None) and len(names) < n_classes:
        # trained with more outputs than its data set's classes (resnet3d main's default --n_classes
        # is the successor's 400): the extra outputs were never a target, so name them by index
        notes.append(f"{path} has {n_classes} outputs for its {len(names)} classes (trained with --n_classes "
                     f"{n_classes}); outputs {len(names)}-{n_classes - 1} are named by their index (a model that "
                     f"fits: train with --n_classes {len(names)})")
        names += [str(i) for i in range(len(names), n_classes)]
    if names is not None and len(names) != n_classes:
        # An error here, where recognition only warns when an annotation's labels do not fit the
        # outputs (predict._class_names): these names claim to be the model's own, one per output
        # in order, so another count means no name can be trusted to its output; nothing has run
        # yet, and the fix is one file. (An annotation's labels are only a stand-in for weights
        # that record no names, and recognition may run at the end of hours of training.)
        if getattr(args, "labels", None):
            raise UserError(f"{path}: the model has {n_classes} outputs but --labels {args.labels} names {len(names)} "
                            "classes: a labels file names the model's outputs in order, so with another count no name "
                            f"can be matched to its output; pass the file of the model's {n_classes} classes (outputs "
                            "beyond the classes it was trained on: a line each, e.g. the output's index)")
        raise UserError(f"{path}: the model has {n_classes} outputs but the checkpoint names {len(names)} classes, so "
                        f"it does not say which name is which output; pass --labels FILE with its {n_classes} class "
                        "names in output order")
    custom = mean_std_norm(args)
    if custom is not None:
        if getattr(args, "input_norm", None):
            raise UserError(f"--input-norm {args.input_norm} and --mean/--std both say how inputs are normalised; "
                            "give one")
        norm = custom
    elif getattr(args, "input_norm", None):
        norm = NAMED[args.input_norm]
    elif loaded.input_norm is not None:
        norm = loaded.input_norm
    else:
        norm = KINETICS
        notes.append(f"{path} does not say how its inputs were normalised: using the successor's default "
                     "(Kinetics mean/std on 0-1 values); pass --input-norm to change it")
    # the flag, else what the checkpoint records, else (a C3D without global pooling) the clip its
    # fc6 was trained on, else the originals' default
    c3d = loaded.model_config if loaded.model_config.get("model") == "c3d" else {}
    size = (getattr(args, "sample_size", None) or _as_int(extra.get("sample_size")) or c3d.get("sample_size")
            or DEFAULT_SAMPLE_SIZE)
    duration = (getattr(args, "sample_duration", None) or _as_int(extra.get("sample_duration"))
                or c3d.get("sample_duration") or DEFAULT_SAMPLE_DURATION)
    _check_c3d_clip(c3d, int(size), int(duration), path)
    return InferenceModel(model=model, class_names=names, input_norm=norm, sample_size=int(size),
                          sample_duration=int(duration), source_format=loaded.source_format, notes=notes,
                          recorded_data=recorded_data(extra))


def _check_c3d_clip(config: Dict[str, Any], size: int, duration: int, path: str) -> None:
    """A C3D without global pooling takes only clips whose pooled cells fill its fc6."""
    if not config.get("sample_size") or config.get("global_pooling"):
        return
    cells = (-(-config["sample_size"] // 32), -(-config["sample_duration"] // 16))
    if (-(-size // 32), -(-duration // 16)) != cells:
        raise UserError(f"{path}: this C3D's fc6 was trained on clips of {cells[1]} x {cells[0]} x {cells[0]} pooled "
                        f"cells ({16 * (cells[1] - 1) + 1}-{16 * cells[1]} frames of {32 * (cells[0] - 1) + 1}-"
                        f"{32 * cells[0]} px); --sample-duration {duration} --sample-size {size} does not give them")


def recorded_data(extra: Dict[str, Any]) -> Dict[str, Any]:
    """The data section of the run config our checkpoints store (``config.data``), else {}."""
    config = extra.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    return dict(data) if isinstance(data, dict) else {}


def _as_int(value: Any) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
