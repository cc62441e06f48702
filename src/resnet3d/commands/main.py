"""``resnet3d main``: the original programs' command lines, verbatim.

``th main.lua ...`` (the seed) and ``python main.py ...`` (the successor) become
``resnet3d main ...`` with the same options. ``resnet3d.compat`` translates them into the same
frozen config that ``resnet3d train`` builds from its modern flags; the run itself is
``resnet3d.engine.trainer.run``. See docs/training.md.
"""
from __future__ import annotations

import argparse
import sys

from resnet3d import compat
from resnet3d.engine.machines import unbind_from_launcher


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Every option of the seed (th main.lua) and of the successor (python main.py) is accepted as "
                     "spelled there; where their defaults differ, the successor's apply (docs/training.md).")
    compat.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from resnet3d.engine.worker_process import another_process_of_the_machine, said_by_the_machines_first_process

    widened = unbind_from_launcher() if compat.several_machines(args) else None  # (before cores are counted)
    with said_by_the_machines_first_process():  # (under torchrun: each process reads the same flags and files)
        config, notices = compat.config_from_args(args)
    notices += [widened] if widened else []
    for notice in notices if not another_process_of_the_machine() else ():
        print(f"resnet3d main: notice: {notice}", file=sys.stderr)
    from resnet3d.engine.trainer import run as run_training

    return run_training(config)
