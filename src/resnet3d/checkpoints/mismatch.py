"""When a checkpoint does not fit a model: a table of what differs and the flag that fixes it.

PyTorch's own message is a wall of "size mismatch for layer3.1.bn2.running_var" lines. Here the
user gets the differing names and shapes side by side, then what the checkpoint really is
(inferred from its tensors) against what was asked for, in the flags they would type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Tuple

import torch

# model_config key -> how to say it on the command line: the successor's spelling (``resnet3d
# main``; ``resnet3d train`` takes these underscore spellings too). Commands that spell their
# flags otherwise (``resnet3d test``) pass their own table.
SUCCESSOR_FLAGS = {
    "model": "--model {}",
    "n_classes": "--n_classes {}",
    "model_depth": "--model_depth {}",
    "shortcut_type": "--resnet_shortcut {}",
    "conv1_t_size": "--conv1_t_size {}",
    "conv1_t_stride": "--conv1_t_stride {}",
    "widen_factor": "--resnet_widen_factor {}",
    "k": "--wide_resnet_k {}",
    "cardinality": "--resnext_cardinality {}",
    "stem_width": "stem_width={}",
    "sample_size": "--sample_size {}",
    "sample_duration": "--sample_duration {}",
}
# ``resnet3d models inspect``: four flags of its own; every other create_model option is checked
# with ``--set OPTION=VALUE``, so that is how its fixes are spelled.
INSPECT_FLAGS = {
    "model": "--model {}",
    "n_classes": "--n_classes {}",
    "model_depth": "--model_depth {}",
    "shortcut_type": "--resnet_shortcut {}",
    **{key: f"--set {key}={{}}" for key in (
        "n_input_channels", "conv1_t_size", "conv1_t_stride", "no_max_pool", "widen_factor", "k", "cardinality",
        "stem_width", "batch_norm", "global_pooling", "dropout_ratio", "sample_size", "sample_duration")},
}
MAX_ROWS = 12


@dataclass
class StateDictDiff:
    missing: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)  # in the model only
    unexpected: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)  # in the checkpoint only
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)  # name, ckpt, model

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)


def compare_state_dicts(checkpoint: Mapping[str, torch.Tensor], model: Mapping[str, torch.Tensor]) -> StateDictDiff:
    diff = StateDictDiff()
    for name, tensor in model.items():
        if name not in checkpoint:
            diff.missing.append((name, tuple(tensor.shape)))
        elif tuple(checkpoint[name].shape) != tuple(tensor.shape):
            diff.mismatched.append((name, tuple(checkpoint[name].shape), tuple(tensor.shape)))
    for name, tensor in checkpoint.items():
        if name not in model:
            diff.unexpected.append((name, tuple(tensor.shape)))
    return diff


def _shape_text(shape: Optional[Tuple[int, ...]]) -> str:
    return "-" if shape is None else str(list(shape))


def diff_table(diff: StateDictDiff, max_rows: int = MAX_ROWS) -> str:
    rows = [(name, _shape_text(ckpt), _shape_text(mine)) for name, ckpt, mine in diff.mismatched]
    rows += [(name, "-", _shape_text(shape)) for name, shape in diff.missing]
    rows += [(name, _shape_text(shape), "-") for name, shape in diff.unexpected]
    shown = rows[:max_rows]
    header = ("name", "checkpoint", "model")
    widths = [max(len(row[i]) for row in shown + [header]) for i in range(3)]
    lines = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header] + shown]
    if len(rows) > max_rows:
        lines.append(f"  ... and {len(rows) - max_rows} more")
    return "\n".join(lines)


def _flag(key: str, value: Any, spelling: Mapping[str, str] = SUCCESSOR_FLAGS) -> str:
    if isinstance(value, float) and value.is_integer() and key != "widen_factor":
        value = int(value)
    if key in spelling:  # the command's own spelling first (models inspect: --set batch_norm=True)
        return spelling[key].format(value)
    if key == "n_input_channels":
        return {2: "--input_type flow", 3: "--input_type rgb"}.get(value, f"n_input_channels={value}")
    if key in ("batch_norm", "global_pooling"):
        # main's switches; `resnet3d train` takes these two from its config file only
        return (f"--{key}" if value else f"no --{key}") + f" ([model] {key} = {'true' if value else 'false'} in a train config)"
    if key == "no_max_pool":
        return f"--{key}" if value else f"no --{key}"
    return f"{key}={value}"


def fixing_flags(checkpoint_config: Mapping[str, Any], model_config: Mapping[str, Any],
                 spelling: Mapping[str, str] = SUCCESSOR_FLAGS) -> List[str]:
    """The flags that turn the requested model into the checkpoint's (class count handled apart).

    Only options the tensors reveal are compared; ``stem_width`` absent means the family's usual stem.
    """
    flags = []
    for key, value in checkpoint_config.items():
        if key == "n_classes":
            continue
        # stem_width is left out of model_config when it is the family's usual one (None).
        asked = model_config.get(key) if key == "stem_width" else model_config.get(key, value)
        if asked != value:
            flags.append(_flag(key, value, spelling))
    if model_config.get("stem_width") is not None and "stem_width" not in checkpoint_config:
        flags.append("stem_width=None (the checkpoint has the family's usual stem)")
    return flags


def describe(config: Mapping[str, Any]) -> str:
    """'resnet-50 (400 classes, shortcut B)' for messages."""
    name = config.get("model", "?")
    if config.get("model_depth"):
        name += f"-{config['model_depth']}"
    details = []
    if "n_classes" in config:
        details.append(f"{config['n_classes']} classes")
    if "shortcut_type" in config:
        details.append(f"shortcut {config['shortcut_type']}")
    for key in ("k", "cardinality", "widen_factor", "stem_width", "conv1_t_size"):
        default = {"widen_factor": 1.0, "conv1_t_size": 7}.get(key)
        if key in config and config[key] != default:
            details.append(f"{key} {config[key]}")
    return f"{name} ({', '.join(details)})" if details else name


def mismatch_message(
    diff: StateDictDiff,
    source: str,
    checkpoint_config: Optional[Mapping[str, Any]],
    model_config: Optional[Mapping[str, Any]],
    spelling: Optional[Mapping[str, str]] = None,
    finetune: bool = True,
) -> str:
    """The UserError text: what differs, what the checkpoint is, and the fix, in the flags of the
    command in use (``spelling``: model_config key -> "--flag {}"; the successor's by default).
    ``finetune`` says the command can fine-tune, so a different class count may also be meant as
    ``--n_pretrain_classes`` (a command that only evaluates has no such flag)."""
    spelling = spelling or SUCCESSOR_FLAGS
    asked = describe(model_config) if model_config else "the model"
    lines = [f"{source} does not fit {asked}: {diff.count()} tensors differ", diff_table(diff)]
    if checkpoint_config is None:
        lines.append("fix: build the model the checkpoint was trained with (its layout matches no known family)")
        return "\n".join(lines)
    lines.append(f"the checkpoint holds {describe(checkpoint_config)}")
    fixes = fixing_flags(checkpoint_config, model_config or {}, spelling)
    ckpt_classes = checkpoint_config.get("n_classes")
    classes_differ = model_config is not None and ckpt_classes is not None and model_config.get("n_classes") != ckpt_classes
    if fixes:
        lines.append("fix: " + " ".join(fixes))
    if classes_differ:
        n_classes = spelling.get("n_classes", "n_classes={}")
        if finetune:
            lines.append(
                f"fix: {n_classes.format(ckpt_classes)} to use it as it is, or --n_pretrain_classes {ckpt_classes} "
                f"to fine-tune it to {n_classes.format(model_config.get('n_classes'))}"
            )
        else:
            lines.append(f"fix: {n_classes.format(ckpt_classes)}, or leave it out: the class count is read from "
                         "the weights")
    if not fixes and not classes_differ:
        lines.append("fix: the layouts agree on every option resnet3d can infer; the checkpoint may be damaged")
    return "\n".join(lines)
