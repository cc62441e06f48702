"""``resnet3d models inspect CKPT``: what a checkpoint is, and whether it loads.

    resnet3d models inspect save_200.pth
    resnet3d models inspect model_100.t7 --json
    resnet3d models inspect r3d50_K_200ep.pth --model resnet --model_depth 50 --n_classes 400

It reads the file with the one loader (weights only), prints the family, depth, classes, epoch,
arch, source format, input normalisation and class names, then builds the model and loads the
weights strictly. With ``--model``/``--n_classes``/... it checks the checkpoint against the model
those flags ask for instead, and shows the mismatch table if they disagree. Exit status: 0 when
it loads, 1 when it does not (2 when the file cannot be read at all).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, Optional

from resnet3d.errors import UserError

_FORMAT_WORDS = {
    "resnet3d": "resnet3d checkpoint",
    "successor": "successor checkpoint (3D-ResNets-PyTorch: epoch, arch, state_dict, ...)",
    "state_dict": "bare state_dict",
    "torchvision": "torchvision video ResNet state_dict",
    "torch7": "Lua Torch7 model of the seed (.t7)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file (.pth, .pt, .t7)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--bgr_premodel", action="store_true", help="swap the first conv's input channels 1 and 3 (seed)")
    parser.add_argument("--model", default=None, help="check against this family instead of the checkpoint's own")
    parser.add_argument("--model_depth", type=int, default=None, help="... and this depth")
    parser.add_argument("--n_classes", type=int, default=None, help="... and this class count")
    parser.add_argument("--resnet_shortcut", default=None, help="... and this shortcut type (A, B, C)")
    from resnet3d.commands.models import add_set_option

    add_set_option(parser, "any other create_model option to check against (e.g. conv1_t_size=3)")


def _requested_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    from resnet3d.commands.models import parse_set_options

    overrides: Dict[str, Any] = parse_set_options(list(getattr(args, "set_options", []) or []))
    for key, value in (
        ("model", getattr(args, "model", None)),
        ("model_depth", getattr(args, "model_depth", None)),
        ("n_classes", getattr(args, "n_classes", None)),
        ("shortcut_type", getattr(args, "resnet_shortcut", None)),
    ):
        if value is not None:
            overrides[key] = value
    return overrides


def inspect_checkpoint(path: str, bgr_premodel: bool = False, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Everything ``inspect`` reports, as a dict (``loads`` says whether the model loaded)."""
    from resnet3d.checkpoints.load import build_model_from_checkpoint, load_checkpoint
    from resnet3d.checkpoints.mismatch import INSPECT_FLAGS

    loaded = load_checkpoint(path, bgr_premodel=bgr_premodel)
    config = loaded.model_config
    report: Dict[str, Any] = {
        "checkpoint": str(path),
        "source_format": loaded.source_format,
        "family": config.get("model"),
        "depth": config.get("model_depth"),
        "n_classes": config.get("n_classes"),
        "epoch": loaded.epoch,
        "arch": loaded.arch,
        "model_config": config,
        "input_norm": loaded.input_norm.to_dict() if loaded.input_norm is not None else None,
        "class_names": len(loaded.class_names) if loaded.class_names is not None else None,
        "n_tensors": len(loaded.state_dict),
        "n_parameters": sum(
            t.numel() for name, t in loaded.state_dict.items() if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        ),
        "optimizer": loaded.optimizer is not None,
        "scheduler": loaded.scheduler is not None,
        "notes": list(loaded.notes),
    }
    overrides = dict(overrides or {})
    asked = overrides.get("model")
    if asked and "-" not in asked and "model_depth" not in overrides and asked != config.get("model"):
        overrides["model_depth"] = config.get("model_depth")
    try:
        model, info = build_model_from_checkpoint(loaded, spelling=INSPECT_FLAGS, **overrides)
    except UserError as error:
        report.update(loads=False, error=str(error))
    else:
        report.update(loads=True, built=info.model_config, built_parameters=sum(p.numel() for p in model.parameters()))
    return report


def _norm_text(norm: Optional[Dict[str, Any]], source_format: str) -> str:
    if norm is None:
        return "not recorded (the successor's default: --mean_dataset kinetics, mean/std on 0-1 values)"
    mean = ", ".join(f"{m:g}" for m in norm["mean"])
    std = ", ".join(f"{s:g}" for s in norm["std"])
    if norm.get("value_scale") == 255.0 and norm["std"] == [1.0, 1.0, 1.0]:
        return f"the seed's: 0-255 minus mean ({mean})"
    return f"mean ({mean}), std ({std}) on values scaled to 0-{norm.get('value_scale', 1.0):g}"


def format_report(report: Dict[str, Any]) -> str:
    arch = report["family"] + (f"-{report['depth']}" if report.get("depth") else "")
    lines = [
        ("checkpoint", report["checkpoint"]),
        ("format", _FORMAT_WORDS.get(report["source_format"], report["source_format"])),
        ("model", arch),
        ("classes", str(report["n_classes"])),
        ("epoch", "-" if report["epoch"] is None else str(report["epoch"])),
        ("arch", report["arch"] or "-"),
        ("input norm", _norm_text(report["input_norm"], report["source_format"])),
        ("class names", "-" if report["class_names"] is None else f"{report['class_names']} names"),
        ("parameters", f"{report['n_parameters'] / 1e6:.2f} M in {report['n_tensors']} tensors"),
        ("optimizer", "saved" if report["optimizer"] else "-"),
        ("scheduler", "saved" if report["scheduler"] else "-"),
        ("config", ", ".join(f"{k}={v}" for k, v in report.get("built", report["model_config"]).items())),
    ]
    width = max(len(key) for key, _ in lines)
    text = [f"{key.ljust(width)}  {value}" for key, value in lines]
    for note in report["notes"]:
        text.append(f"{'note'.ljust(width)}  {note}")
    if report["loads"]:
        text.append(f"{'loads'.ljust(width)}  yes: built {arch} and loaded every tensor strictly")
    else:
        text.append(f"{'loads'.ljust(width)}  NO")
        text.append(report["error"])
    return "\n".join(text)


def run_inspect(args: argparse.Namespace) -> int:
    report = inspect_checkpoint(
        args.checkpoint, bgr_premodel=getattr(args, "bgr_premodel", False), overrides=_requested_overrides(args)
    )
    if getattr(args, "json", False):
        print(json.dumps(report, default=str))
    else:
        print(format_report(report))
    return 0 if report["loads"] else 1
