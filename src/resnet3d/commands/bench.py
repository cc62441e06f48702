"""``resnet3d bench <what>``: speed measurements printed as JSON lines.

Each measurement module lives in ``resnet3d.bench.<what>`` with ``add_arguments``/``run`` and
runs its baseline (our re-enactment of the originals' scheme) in the same process, so a ratio
always comes from one run on one machine.
"""
from __future__ import annotations

import argparse
import importlib

from resnet3d.cliargs import DefaultsHelpFormatter
from resnet3d.errors import UserError

BENCHES = {
    "loader": "training data loader clips/s (with --baseline: the originals' PIL + float scheme too)",
    "train": "end-to-end training clips/s and GPU-step-only clips/s",
    "prepare": "frame extraction frames/s per core against the seed's ffmpeg command",
    "test": "per-video recognition videos/s against one-video-per-batch",
    "classify": "classify's videos/s on one's own video files against the companion tool's extract-to-JPEG scheme",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=sorted(BENCHES), help="; ".join(f"{k}: {v}" for k, v in BENCHES.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark (see 'resnet3d bench <what> --help')")


def run(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"resnet3d.bench.{args.what}")
    except ModuleNotFoundError as error:
        if error.name == f"resnet3d.bench.{args.what}":
            raise UserError(f"the '{args.what}' benchmark is not part of this build yet") from None
        raise
    parser = argparse.ArgumentParser(
        prog=f"resnet3d bench {args.what}",
        description=BENCHES[args.what],
        allow_abbrev=False,
        formatter_class=DefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)
