"""``resnet3d demo``: generate a small action data set and run the whole pipeline on it."""
from __future__ import annotations

import argparse
from pathlib import Path

from resnet3d.cliargs import add_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--workdir", default="resnet3d_demo", help="folder for the generated data and every output")
    add_flag(parser, "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train and test")
    add_flag(parser, "--overwrite", action="store_true", help="replace an earlier demo run in --workdir")


def run(args: argparse.Namespace) -> int:
    from resnet3d.demo import run_demo

    run_demo(Path(args.workdir), device=args.device, overwrite=args.overwrite)
    return 0
