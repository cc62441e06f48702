"""``resnet3d prepare <action>``: raw videos and official annotation files -> training data.

Actions: frames, kinetics-json, activitynet-json, ucf101-json, hmdb51-json, mit-json,
folder-json, n-frames, fps, stats. See docs/prepare.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict

from resnet3d.cliargs import DefaultsHelpFormatter, add_flag, add_switch
from resnet3d.errors import UserError

ACTIONS: Dict[str, str] = {
    "frames": "decode videos into image_%05d.jpg folders (or HDF5 files), resumable and parallel",
    "kinetics-json": "Kinetics CSVs -> annotation JSON (seed: 3 CSVs; successor: CSV_DIR N_CLASSES FRAME_DIR jpg|hdf5)",
    "activitynet-json": "add each video's fps to the official ActivityNet v1.3 JSON (and the seed's fps files)",
    "ucf101-json": "UCF-101 classInd/trainlist/testlist -> ucf101_01..03.json",
    "hmdb51-json": "HMDB-51 <class>_test_split<N>.txt -> hmdb51_1..3.json",
    "mit-json": "Moments in Time moments_categories.txt, trainingSet.csv, validationSet.csv (testingSet.csv) -> "
                "annotation JSON (the successor's DIR_PATH JPG_DIR DST_JSON)",
    "folder-json": "your own data set, ROOT/<class>/<video or frame folder> -> annotation JSON",
    "n-frames": "write the seed's n_frames file into every frame folder (for frames made by other tools)",
    "fps": "write the seed's fps file (frames / duration) into every video's frame folder",
    "stats": "per-channel mean and std of a data set's frames, for normalising your own data",
}


# the successor's ``generate_video_jpgs.py VIDEO_DIR JPG_DIR DATASET`` -> our layout. MiT comes as
# training/<class>/ and validation/<class>/, which the successor read one split folder per run;
# "splits" reads both at once, and gives the same <class>/<video> folders for one split folder.
SUCCESSOR_DATASETS = {"kinetics": "kinetics", "mit": "splits", "ucf101": "ucf101", "hmdb51": "hmdb51",
                      "activitynet": "activitynet"}


def _sub(subparsers, name: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=ACTIONS[name].replace("%", "%%"),  # help strings are %-formatted
        description=ACTIONS[name],
        formatter_class=DefaultsHelpFormatter,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    from resnet3d.prepare.extract import DEFAULT_QUALITY
    from resnet3d.prepare.videos import LAYOUTS

    p = _sub(subparsers, "frames")
    p.add_argument("video_dir", type=Path, metavar="VIDEO_DIR")
    p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR")
    p.add_argument("dataset", nargs="?", default=None, choices=tuple(SUCCESSOR_DATASETS), metavar="DATASET",
                   help="the successor's generate_video_jpgs.py form (kinetics, mit, ucf101, hmdb51, activitynet): "
                        "the same as --layout")
    placement = p.add_mutually_exclusive_group()
    add_flag(placement, "--layout", choices=LAYOUTS, default=None,
             help="how VIDEO_DIR is organised (splits: <split>/<class>/<video>); not given: class subfolders mean "
                  "kinetics, loose files flat")
    add_flag(placement, "--annotation", type=Path, default=None,
             help="annotation JSON: find videos anywhere under VIDEO_DIR by name and write each to "
                  "<label>/<key> (test/<key> unlabelled, v_<id> ActivityNet); unlisted videos are ignored")
    size = p.add_mutually_exclusive_group()
    add_flag(size, "--short-side", "--size", type=int, default=240,
             help="resize so the short side has this length (the successor's rule); 0 keeps the size")
    add_flag(size, "--height", type=int, default=None,
             help="resize to this height instead (the seed's rule: 240 Kinetics, 360 ActivityNet)")
    add_flag(p, "--workers", "--n_jobs", type=int, default=None,
             help="videos in parallel; not given or -1: one per core (--size and --n_jobs are the successor's names)")
    add_flag(p, "--fps", type=float, default=None, help="resample to this frame rate; not given: every decoded frame is kept")
    add_flag(p, "--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality, 1-100")
    add_flag(p, "--format", choices=("jpg", "hdf5"), default="jpg",
             help="jpg: image_%%05d.jpg folders; hdf5: one <video>.hdf5 per video (the successor's --file_type hdf5)")
    add_flag(p, "--hdf5", dest="format", action="store_const", const="hdf5", help="same as --format hdf5")
    add_flag(p, "--overwrite", action="store_true",
             help="redo finished videos and replace existing folders even if they hold other files")
    add_flag(p, "--threads", type=int, default=0, help="decoder threads per video (0: cores / workers)")
    add_switch(p, "--progress", default=True, help="show a progress line (videos/s, ETA)")

    p = _sub(subparsers, "kinetics-json")
    p.add_argument("inputs", nargs="+", metavar="ARG",
                   help="seed form: TRAIN_CSV VAL_CSV TEST_CSV OUT_JSON; "
                        "successor form: CSV_DIR N_CLASSES FRAME_DIR jpg|hdf5 OUT_JSON")
    add_flag(p, "--overwrite", action="store_true", help="replace OUT_JSON if it exists")

    p = _sub(subparsers, "activitynet-json")
    p.add_argument("source_dir", type=Path, metavar="VIDEO_OR_FRAME_DIR")
    p.add_argument("json_path", type=Path, metavar="JSON", help="the official activity_net.v1-3.min.json")
    p.add_argument("out_json", type=Path, nargs="?", default=None, metavar="OUT_JSON",
                   help="where to write; not given: JSON itself, after keeping a copy as JSON.bak")
    add_flag(p, "--fps-files", action="store_true", help="also write the seed's fps file into each frame folder")
    add_flag(p, "--frame-dir", type=Path, default=None,
             help="the frame folders for --fps-files when VIDEO_OR_FRAME_DIR holds videos")
    add_flag(p, "--overwrite", action="store_true", help="replace OUT_JSON (without OUT_JSON, JSON is updated in place, the original kept as JSON.bak) if it exists")

    for name, out in (("ucf101-json", "ucf101_0N.json"), ("hmdb51-json", "hmdb51_N.json")):
        p = _sub(subparsers, name)
        p.add_argument("annotation_dir", type=Path, metavar="ANNOTATION_DIR")
        p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR", help="frame folders <label>/<video>/ (segments)")
        p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help=f"where {out} go")
        add_flag(p, "--overwrite", action="store_true", help=f"replace existing {out} files")

    p = _sub(subparsers, "mit-json")
    p.add_argument("annotation_dir", type=Path, metavar="ANNOTATION_DIR",
                   help="the folder holding moments_categories.txt and the CSVs (Moments_in_Time_Raw; the successor's DIR_PATH)")
    p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR",
                   help="frame folders <label>/<key>/ (test/<key>/ for testing) or .hdf5 files, for the segments")
    p.add_argument("out_json", type=Path, metavar="OUT_JSON")
    add_flag(p, "--file-type", choices=("auto", "jpg", "hdf5"), default="auto",
             help="where the segments come from: jpg frame folders, hdf5 files, or auto (a video's folder, else its .hdf5 file)")
    add_flag(p, "--overwrite", action="store_true", help="replace OUT_JSON if it exists")

    p = _sub(subparsers, "folder-json")
    p.add_argument("root", type=Path, metavar="ROOT", help="ROOT/<class>/<video file or frame folder>")
    p.add_argument("out_json", type=Path, metavar="OUT_JSON")
    add_flag(p, "--val-ratio", type=float, default=0.2, help="share of each class held out for validation")
    add_flag(p, "--seed", type=int, default=0, help="seed of the train/validation shuffle")
    add_flag(p, "--train-list", type=Path, default=None, help="file listing the training videos (<class>/<name>)")
    add_flag(p, "--val-list", type=Path, default=None, help="file listing the validation videos (<class>/<name>)")
    add_flag(p, "--overwrite", action="store_true", help="replace OUT_JSON if it exists")

    p = _sub(subparsers, "n-frames")
    p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR")

    p = _sub(subparsers, "fps")
    p.add_argument("video_dir", type=Path, metavar="VIDEO_DIR")
    p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR")
    add_flag(p, "--layout", choices=LAYOUTS, default=None, help="how VIDEO_DIR is organised (as for frames)")

    p = _sub(subparsers, "stats")
    p.add_argument("frame_dir", type=Path, metavar="FRAME_DIR", help="frame folders (any depth) or .hdf5 files")
    add_flag(p, "--samples", type=int, default=1000, help="frames to sample at random (a data set with no more frame-folder frames than this is read whole, each frame once)")
    add_flag(p, "--seed", type=int, default=0, help="seed of the sampling")
    add_flag(p, "--annotation", type=Path, default=None,
             help="annotation JSON: sample only the videos of --subset")
    add_flag(p, "--subset", default="training", help="subset of --annotation to sample")


def run(args: argparse.Namespace) -> int:
    handlers: Dict[str, Callable[[argparse.Namespace], int]] = {
        "frames": _frames,
        "kinetics-json": _kinetics_json,
        "activitynet-json": _activitynet_json,
        "ucf101-json": _ucf101_json,
        "hmdb51-json": _hmdb51_json,
        "mit-json": _mit_json,
        "folder-json": _folder_json,
        "n-frames": _n_frames,
        "fps": _fps,
        "stats": _stats,
    }
    return handlers[args.action](args)


def _frames(args: argparse.Namespace) -> int:
    from resnet3d.prepare.decode import ResizeRule
    from resnet3d.prepare.extract import ExtractOptions
    from resnet3d.prepare.frames import prepare_frames

    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality {args.quality}: choose a JPEG quality from 1 to 100")
    if args.height is not None and args.height <= 0:
        raise UserError(f"--height {args.height}: give a positive height")
    if args.short_side < 0:
        raise UserError(f"--short-side {args.short_side}: give a positive length, or 0 to keep the size")
    if args.fps is not None and args.fps <= 0:
        raise UserError(f"--fps {args.fps}: give a positive frame rate")
    layout = args.layout
    if args.dataset is not None:
        if args.annotation is not None or (layout is not None and layout != SUCCESSOR_DATASETS[args.dataset]):
            given = "--annotation" if args.annotation is not None else f"--layout {layout}"
            raise UserError(f"DATASET '{args.dataset}' and {given} both say how VIDEO_DIR is organised: give one of them")
        layout = SUCCESSOR_DATASETS[args.dataset]
    rule = ResizeRule(short_side=None, height=args.height) if args.height else ResizeRule(short_side=args.short_side or None)
    options = ExtractOptions(
        rule=rule, fps=args.fps, quality=args.quality, hdf5=args.format == "hdf5",
        overwrite=args.overwrite, threads=args.threads,
    )
    if options.hdf5:
        from resnet3d.prepare.hdf5 import require_h5py

        require_h5py()
    summary = prepare_frames(
        args.video_dir, args.frame_dir, options, layout=layout, workers=args.workers, progress=args.progress,
        annotation=args.annotation,
    )
    print(summary.line())
    return 1 if summary.failed else 0


def _kinetics_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import kinetics

    inputs = args.inputs
    if len(inputs) == 4:
        report = kinetics.seed_kinetics_json(*(Path(p) for p in inputs), overwrite=args.overwrite)
    elif len(inputs) == 5:
        csv_dir, n_classes, frame_dir, file_type, out_json = inputs
        if not n_classes.isdigit():
            raise UserError(f"N_CLASSES must be a number such as 400, 600 or 700, not '{n_classes}'")
        if file_type not in ("jpg", "hdf5"):
            raise UserError(f"the frame type must be 'jpg' or 'hdf5', not '{file_type}'")
        report = kinetics.successor_kinetics_json(Path(csv_dir), int(n_classes), Path(frame_dir), file_type, Path(out_json),
                                                  overwrite=args.overwrite)
    else:
        raise UserError(
            f"kinetics-json takes 4 arguments (TRAIN_CSV VAL_CSV TEST_CSV OUT_JSON) or 5 "
            f"(CSV_DIR N_CLASSES FRAME_DIR jpg|hdf5 OUT_JSON), not {len(inputs)}"
        )
    print(report)
    return 0


def _activitynet_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import activitynet

    print(activitynet.add_fps(args.source_dir, args.json_path, args.out_json, args.fps_files, args.frame_dir,
                              overwrite=args.overwrite))
    return 0


def _ucf101_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import ucf101

    print(ucf101.ucf101_json(args.annotation_dir, args.frame_dir, args.out_dir, overwrite=args.overwrite))
    return 0


def _hmdb51_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import hmdb51

    print(hmdb51.hmdb51_json(args.annotation_dir, args.frame_dir, args.out_dir, overwrite=args.overwrite))
    return 0


def _mit_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import mit

    print(mit.mit_json(args.annotation_dir, args.frame_dir, args.out_json, args.file_type, overwrite=args.overwrite))
    return 0


def _folder_json(args: argparse.Namespace) -> int:
    from resnet3d.prepare import folder_dataset

    if not 0 <= args.val_ratio < 1:
        raise UserError(f"--val-ratio {args.val_ratio}: choose a share from 0 to below 1")
    print(folder_dataset.folder_json(args.root, args.out_json, args.val_ratio, args.seed, args.train_list, args.val_list,
                                     overwrite=args.overwrite))
    return 0


def _n_frames(args: argparse.Namespace) -> int:
    from resnet3d.prepare import legacy_files

    print(legacy_files.write_n_frames_files(args.frame_dir))
    return 0


def _fps(args: argparse.Namespace) -> int:
    from resnet3d.prepare import legacy_files

    report = legacy_files.write_fps_files(args.video_dir, args.frame_dir, args.layout)
    print(report)
    return 1 if report.failed else 0


def _stats(args: argparse.Namespace) -> int:
    from resnet3d.prepare import stats

    result = stats.dataset_stats(
        args.frame_dir, samples=args.samples, seed=args.seed, annotation=args.annotation,
        subset=args.subset,
    )
    print(json.dumps(result.to_dict()))
    print(result.flags())
    return 0
