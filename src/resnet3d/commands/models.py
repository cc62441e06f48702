"""``resnet3d models``: the model zoo with parameters, GMACs and GFLOPs; ``models inspect CKPT``.

    resnet3d models                          # every model at 16x112x112, 400 classes
    resnet3d models --input 8x64x64 --model resnet --set shortcut_type=A
    resnet3d models --json                   # one JSON line per model
    resnet3d models inspect save_200.pth     # what a checkpoint is, and whether it loads
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from resnet3d.cliargs import add_flag
from resnet3d.errors import UserError

INSPECT_MODULE = "resnet3d.checkpoints.inspect"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--input", default="16x112x112", metavar="TxHxW", help="clip size the MACs are counted at")
    add_flag(parser, "--n-classes", type=int, default=400, help="classifier outputs")
    add_flag(
        parser,
        "--model",
        action="append",
        default=None,
        metavar="NAME",
        help="list only this family or architecture (e.g. resnet, resnet-50); repeatable",
    )
    add_set_option(parser, "a create_model option for the families that take it (e.g. shortcut_type=A, widen_factor=2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model instead of a table")
    actions = parser.add_subparsers(dest="action", metavar="{inspect}")
    inspect = actions.add_parser(
        "inspect",
        help="say what a checkpoint is (family, depth, classes, epoch, arch, format) and whether it loads",
        add_help=False,
    )
    # The inspect options belong to the checkpoint loader's module, which is imported only when
    # the action runs (it needs torch); everything after 'inspect' is handed to its own parser.
    inspect.add_argument("-h", "--help", action="store_true", dest="inspect_help", help=argparse.SUPPRESS)
    inspect.add_argument("inspect_args", nargs=argparse.REMAINDER, help="CKPT [options]; see 'resnet3d models inspect -h'")


def run(args: argparse.Namespace) -> int:
    if args.action == "inspect":
        return _run_inspect(["-h"] * args.inspect_help + args.inspect_args)
    shape = parse_input(args.input)
    options = parse_set_options(args.set_options)
    rows = zoo_rows(shape, args.n_classes, args.model, options)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_table(rows, shape, args.n_classes))
    return 0


def _run_inspect(argv: List[str]) -> int:
    try:
        module = importlib.import_module(INSPECT_MODULE)
    except ImportError as error:
        raise UserError(
            f"'resnet3d models inspect' is unavailable in this build: {INSPECT_MODULE} cannot be imported ({error})"
        ) from None
    parser = argparse.ArgumentParser(prog="resnet3d models inspect", description="say what a checkpoint is")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    else:
        parser.add_argument("checkpoint", help="checkpoint file (.pth, .pt, .t7)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return int(module.run_inspect(parser.parse_args(argv)) or 0)


def parse_input(text: str) -> Tuple[int, int, int]:
    """``"16x112x112"`` -> ``(16, 112, 112)`` (frames, height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--input must be TxHxW with positive integers, e.g. 16x112x112; got {text!r}")
    t, h, w = (int(p) for p in parts)
    return t, h, w


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set OPTION=VALUE`` flag; ``parse_set_options`` reads what it collects."""
    add_flag(parser, "--set", action="append", default=[], metavar="OPTION=VALUE", dest="set_options",
             help=f"{help}; repeatable")


def parse_set_options(pairs: List[str]) -> Dict[str, Any]:
    """``["shortcut_type=A", "widen_factor=2"]`` -> ``{"shortcut_type": "A", "widen_factor": 2}``."""
    options: Dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--set takes OPTION=VALUE, e.g. shortcut_type=A; got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word such as A
        options[name.strip().replace("-", "_")] = value
    return options


def zoo_rows(
    shape: Tuple[int, int, int],
    n_classes: int,
    only: Optional[List[str]] = None,
    options: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """One dict per architecture: parameters, MACs and FLOPs at ``shape``, or why it cannot run."""
    import torch

    from resnet3d.models import MODELS, list_models, model_options, parse_arch
    from resnet3d.models.flops import count_macs

    options = dict(options or {})
    if options:
        unused = set(options) - {name for fam in MODELS for name in model_options(fam)}
        if unused:
            raise UserError(f"--set {', '.join(sorted(unused))}: no model takes this option")
    archs = list_models()
    if only:
        wanted = set()
        for name in only:
            if name in MODELS:
                wanted.update(list_models(name))
            else:
                family, depth = parse_arch(name)
                wanted.add(family.arch(depth))
        archs = [arch for arch in archs if arch in wanted]
    t, h, w = shape
    rows = []
    for arch in archs:
        family, depth = parse_arch(arch)
        accepted = model_options(family.name)
        kwargs = {name: value for name, value in options.items() if name in accepted}
        kwargs["n_classes"] = n_classes
        if "sample_size" in accepted:  # C3D's fc6 width follows the clip size
            kwargs.setdefault("sample_size", h)
            kwargs.setdefault("sample_duration", t)
        row: Dict[str, Any] = {"model": arch, "family": family.name, "depth": depth, "input": [t, h, w]}
        try:
            with torch.device("meta"):
                model = family_model(family.name, depth, kwargs)
            described = {
                "params": sum(p.numel() for p in model.parameters()),
                "num_features": model.num_features,
                "model_config": model.model_config,
            }
            channels = described["model_config"].get("n_input_channels", 3)
            macs = count_macs(model, (1, channels, t, h, w), inplace=True)
        except (UserError, RuntimeError) as error:
            row["error"] = str(error).splitlines()[0]
            rows.append(row)
            continue
        row.update(
            params=described["params"],
            gmacs=round(macs["total"] / 1e9, 3),
            gflops=round(2 * macs["total"] / 1e9, 3),
            bn_gmacs=round(macs["bn"] / 1e9, 3),
            num_features=described["num_features"],
            model_config=described["model_config"],
        )
        rows.append(row)
    return rows


def family_model(name: str, depth: Optional[int], kwargs: Dict[str, Any]):
    from resnet3d.models import create_model

    return create_model(name, depth, **kwargs)


def format_table(rows: List[Dict[str, Any]], shape: Tuple[int, int, int], n_classes: int) -> str:
    header = ("model", "params (M)", "GMACs", "GFLOPs", "features")
    lines = [
        f"Models at {'x'.join(map(str, shape))} (T x H x W), {n_classes} classes, batch 1. "
        "GFLOPs = 2 x GMACs (convs and linear layers).",
        "",
    ]
    table = [header]
    notes = []
    for row in rows:
        if "error" in row:
            table.append((row["model"], "-", "-", "-", "-"))
            notes.append(f"{row['model']}: {row['error']}")
        else:
            table.append(
                (row["model"], f"{row['params'] / 1e6:.1f}", f"{row['gmacs']:.2f}", f"{row['gflops']:.2f}", str(row["num_features"]))
            )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, cells in enumerate(table):
        first = cells[0].ljust(widths[0])
        rest = "  ".join(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))
        lines.append(f"{first}  {rest}")
        if index == 0:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from resnet3d.cli import main

    sys.exit(main(["models", *sys.argv[1:]]))
