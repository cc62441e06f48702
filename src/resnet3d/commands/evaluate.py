"""``resnet3d evaluate GT_JSON RESULT_JSON``: video-level accuracy of a recognition results file.

    resnet3d evaluate kinetics.json results/val.json                 # top-1 on validation
    resnet3d evaluate kinetics.json results/val_video.json -k 5 --subset val
    resnet3d evaluate ucf101_01.json results/val.json --output summary.json --confusion cm.png

The successor's ``util_scripts/eval_accuracy.py`` arguments (``ground_truth_path result_path -k
--subset --ignore --save``) mean the same here; see ``resnet3d.evaluation`` for what is matched
and counted, and docs/recognition.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from resnet3d.cliargs import add_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ground_truth_path", metavar="GT_JSON", help="annotation JSON (ours, the originals', ActivityNet v1.3)")
    parser.add_argument("result_path", metavar="RESULT_JSON",
                        help="results of recognition (<subset>.json, <subset>_video.json)")
    parser.add_argument("--subset", default="validation",
                        help="subset of the ground truth to score (training/validation/testing; train/val/test accepted)")
    parser.add_argument("-k", type=int, default=1, help="also report top-k accuracy")
    parser.add_argument("--ignore", action="store_true",
                        help="count only the videos that have a result (default: a missing result is a miss)")
    parser.add_argument("--save", action="store_true",
                        help="the successor's flag: write the top-k accuracy to top<k>.txt beside RESULT_JSON")
    add_flag(parser, "--output", default=None, metavar="SUMMARY_JSON",
             help="write the figures, the per-class table and the counts as JSON")
    add_flag(parser, "--confusion", default=None, metavar="PNG", help="draw the confusion matrix (top-1) as a PNG")
    add_flag(parser, "--overwrite", action="store_true", help="replace an existing --output or --confusion file")
    add_flag(parser, "--max-classes", type=int, default=50,
             help="print at most this many rows of the per-class table, weakest first (0: none)")


def run(args: argparse.Namespace) -> int:
    from resnet3d import evaluation
    from resnet3d.errors import UserError
    from resnet3d.fileio import atomic_write_text, refuse_existing
    from resnet3d.output_paths import same_file

    for flag, path in (("--output", args.output), ("--confusion", args.confusion)):
        if path is None:
            continue
        if any(same_file(path, given) for given in (args.ground_truth_path, args.result_path)):
            raise UserError(f"{flag} {path} is one of the input files; choose another name")
        refuse_existing(path, flag, args.overwrite)
    if args.output and args.confusion and same_file(args.output, args.confusion):
        raise UserError(f"--output and --confusion both name {args.output}; choose two files")
    gt = evaluation.load_ground_truth(args.ground_truth_path, args.subset)
    predictions = evaluation.load_predictions(args.result_path)
    result = evaluation.evaluate(gt, predictions, k=args.k, ignore=args.ignore)
    if args.max_classes < 0:
        raise UserError(f"--max-classes must be >= 0 (got {args.max_classes})")
    print(evaluation.format_report(result, per_class=args.max_classes > 0, max_rows=args.max_classes or None))
    if result.unknown_labels:
        shown = ", ".join(result.unknown_labels[:5]) + (" ..." if len(result.unknown_labels) > 5 else "")
        print(f"note: {len(result.unknown_labels)} predicted labels are not classes of the ground truth ({shown}); "
              "they count as wrong")
    if args.save:
        path = Path(args.result_path).parent / f"top{args.k}.txt"
        atomic_write_text(path, str(result.accuracy(args.k)))
        print(f"wrote {path}")
    if args.output:
        evaluation.write_summary(result, Path(args.output))
        print(f"wrote {args.output}")
    if args.confusion:
        evaluation.write_confusion(result, Path(args.confusion))
        print(f"wrote {args.confusion}")
    return 0
