"""``resnet3d classify``: classify your own video files, or extract their features.

    resnet3d classify clips/ holiday.mp4 --model results/model_best.pth --output labels.json
    resnet3d classify videos/ --model resnet-34-kinetics.pth --labels class_names_list \\
        --mode feature --output features.jsonl
    resnet3d classify match.mp4 --model model_best.pth --overlay annotated/

The companion tool's (video-classification-3d-cnn-pytorch) job and output, without extracting
frames to disk: see ``resnet3d.classify`` for the record of each video and docs/recognition.md.
Its command line also works: ``--input LIST --video_root DIR --model CKPT --mode score``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from resnet3d.cliargs import add_flag, add_switch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from resnet3d.engine.predict_model import add_model_arguments

    parser.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                        help="video files, or folders searched (recursively) for video files")
    parser.add_argument("--model", required=True, metavar="CKPT",
                        help="checkpoint (the companion tool's --model): ours, the successor's, the seed's .t7")
    parser.add_argument("--mode", default="score", choices=("score", "feature"),
                        help="score: a label and class probabilities per clip; feature: pooled features per clip")
    parser.add_argument("--output", default="output.json",
                        help="a JSON list of videos (.json, written at the end) or one video per line (.jsonl, "
                             "streamed)")
    add_flag(parser, "--overwrite", action="store_true",
             help="replace an existing --output file and existing --overlay videos")
    parser.add_argument("--input", default=None, metavar="LIST",
                        help="the companion tool's input: a text file naming one video per line")
    add_flag(parser, "--video-root", default="", help="folder the names in --input are relative to")
    add_flag(parser, "--stride", type=int, default=None,
             help="frames between clip starts (default: sample_duration, consecutive clips)")
    add_flag(parser, "--sample-t-stride", type=int, default=argparse.SUPPRESS,
             help="keep every n-th frame (default: what our checkpoint's training run used, else 1)")
    add_flag(parser, "--batch-size", type=int, default=32, help="clips per model batch")
    add_flag(parser, "--overlay", default=None, metavar="DIR",
             help="also write each video to DIR as MP4 with every clip's top label and score drawn on its frames")
    add_flag(parser, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(parser, "--no-cuda", action="store_true", help="the companion tool's spelling of --device cpu")
    add_flag(parser, "--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
             help="autocast dtype (auto: bf16 on Ampere or later GPUs, else fp32)")
    add_switch(parser, "--fold-bn", default=True,
               help="fold each BatchNorm into the conv before it (the same scores and features up to float "
                    "rounding, faster; --no-fold-bn runs the model as it is)")
    add_flag(parser, "--n-threads", type=int, default=None, help=argparse.SUPPRESS)  # companion flag, not needed
    parser.add_argument("--verbose", action="store_true", help="print each video as it is done")
    add_model_arguments(parser)


def find_videos(inputs: List[str], input_list: str, video_root: str) -> List[Tuple[str, str, str]]:
    """``(path, name in the output, overlay file name)`` for every video to classify, in order."""
    from resnet3d.errors import UserError
    from resnet3d.video_files import VIDEO_EXTENSIONS, video_files_below

    found: List[Tuple[str, str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = list(video_files_below(path))  # symlinked folders followed, as prepare frames does
            if not files:
                raise UserError(f"{item}: no video files in this folder (looked for {', '.join(VIDEO_EXTENSIONS)})")
            found += [(str(p), str(p), str(p.relative_to(path))) for p in files]
        else:
            found.append((str(path), item, path.name))
    if input_list:
        try:
            lines = Path(input_list).read_text(encoding="utf-8-sig").splitlines()
        except OSError as error:
            raise UserError(f"--input {input_list}: cannot read it ({error.strerror})") from None
        for line in (line.strip() for line in lines):
            if not line or line.startswith("#"):  # blank lines and comments are not videos
                continue
            path = Path(video_root) / line if video_root else Path(line)
            if path.is_dir():  # a folder listed as a video: its videos, as a folder given on the command line
                found += [(str(p), str(p), str(Path(_overlay_relative(line)) / p.relative_to(path)))
                          for p in video_files_below(path)]
            else:
                found.append((str(path), line, _overlay_relative(line)))
    if not found:
        raise UserError("no videos given: name video files or folders, or pass --input LIST")
    return found


def _overlay_relative(line: str) -> str:
    """Where a listed video's overlay goes under the overlay folder: its own relative path, or
    its file name where the path is absolute or climbs out with '..' (joined to the folder, such
    a path would leave it, up to writing over a file of the user's)."""
    path = Path(line)
    return path.name if path.is_absolute() or ".." in path.parts else line


def overlay_names(found: List[Tuple[str, str, str]]) -> List[str]:
    """Unique ``.mp4`` names under the overlay folder."""
    used: set = set()
    names = []
    for _, _, relative in found:
        stem = str(Path(relative).with_suffix(""))
        candidate, number = f"{stem}.mp4", 1
        while candidate in used:
            candidate, number = f"{stem}_{number}.mp4", number + 1
        used.add(candidate)
        names.append(candidate)
    return names


def check_overlay_destinations(found: List[Tuple[str, str, str]], overlay: str, names: List[str],
                               overwrite: bool, input_folders: Sequence[str] = ()) -> None:
    """Never write an overlay over an input video or into an input folder; over an earlier
    overlay only with --overwrite. Checked before the first video is read."""
    from resnet3d.errors import UserError

    folder = Path(overlay)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--overlay {overlay} is a file; it names the folder the overlay videos go to")
    inputs = {Path(path).resolve() for path, _, _ in found}
    for item in [Path(i) for i in input_folders if Path(i).is_dir()]:
        if folder.resolve() == item.resolve() or item.resolve() in folder.resolve().parents:
            raise UserError(f"--overlay {overlay} is inside the input folder {item}: a later run on that folder would "
                            "classify the overlays as videos of their own; choose a folder outside it")
    destinations = [folder / name for name in names]
    for destination in destinations:
        if destination.resolve() in inputs:
            raise UserError(f"--overlay {overlay} would write {destination} over the input video of that name; "
                            "choose another --overlay folder")
        for parent in destination.relative_to(folder).parents:
            blocking = folder / parent
            if parent != Path(".") and blocking.exists() and not blocking.is_dir():
                raise UserError(f"--overlay: {blocking} is a file, in the way of the folder {destination.parent}; "
                                "move it, or choose another --overlay folder")
    existing = [d for d in destinations if d.exists()]
    if existing and not overwrite:
        raise UserError(f"--overlay: {existing[0]} already exists ({len(existing)} of the {len(destinations)} "
                        "overlay videos do): pass --overwrite to replace them, or choose another --overlay folder")


def _out_of_memory(error: RuntimeError, args: argparse.Namespace, loaded: Any, path: str,
                   saved_in: Optional[Path]) -> Optional[Exception]:
    """A GPU out of memory while classifying ``path``, as the line with the batch and the fix."""
    from resnet3d.engine.gpu_memory import describe_clips, out_of_memory_error

    batch = describe_clips(args.batch_size, loaded.sample_duration, loaded.sample_size)
    kept = f"; the videos classified before it are saved in {saved_in}" if saved_in is not None else ""
    return out_of_memory_error(error, f"classifying {path} in batches of {batch}", f"lower --batch-size{kept}")


def run(args: argparse.Namespace) -> int:
    from resnet3d.classify import ClassifyOptions, classify_video
    from resnet3d.classify.overlay import captions, write_overlay
    from resnet3d.classify.scoring import classify_scorer, classify_thread_split
    from resnet3d.commands.test import resolve_device
    from resnet3d.engine.checkpoint import existing_checkpoint
    from resnet3d.engine.model_start import check_clip_fits
    from resnet3d.engine.predict_model import load_inference_model
    from resnet3d.errors import UserError
    from resnet3d.fileio import atomic_write_json
    from resnet3d.output_paths import check_writable, refuse_input_as_output

    output = Path(args.output)
    if output.exists() and not args.overwrite and not output.is_dir():
        raise UserError(f"--output {output} already exists: pass --overwrite to replace it, or choose another name")
    if args.overlay and args.mode != "score":
        raise UserError("--overlay draws each clip's label, which --mode feature does not produce; use --mode score")
    if args.stride is not None and args.stride < 1:
        raise UserError(f"--stride must be >= 1 (got {args.stride})")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1 (got {args.batch_size})")
    found = find_videos(args.inputs, args.input, args.video_root)
    # before any video is classified: the results must have somewhere to go, and never over an input
    refuse_input_as_output(output, "--output", [("--model", existing_checkpoint(args.model)[0]),
                                                ("--labels", getattr(args, "labels", None)),
                                                ("--input", args.input)] + [("an input video", f[0]) for f in found])
    check_writable(output, "--output")
    overlays = overlay_names(found) if args.overlay else []
    if args.overlay:
        check_overlay_destinations(found, args.overlay, overlays, args.overwrite, args.inputs)
    loaded = load_inference_model(args.model, args)
    for note in loaded.notes:
        print(f"resnet3d classify: {note}", file=sys.stderr)
    channels = int(loaded.model.model_config.get("n_input_channels", 3))
    if loaded.recorded_data.get("input_type", "rgb") != "rgb" or channels != 3:
        raise UserError(f"{args.model}: the model takes optical flow ({channels} input channels), but classify feeds "
                        "the RGB frames of video files; recognise flow frames with resnet3d test --input-type flow")
    t_stride = getattr(args, "sample_t_stride", None)
    if t_stride is None:
        t_stride = int(loaded.recorded_data.get("sample_t_stride", 1) or 1)
    if t_stride < 1:
        raise UserError(f"--sample-t-stride must be >= 1 (got {t_stride})")
    check_clip_fits(loaded.model, channels, loaded.sample_duration, loaded.sample_size)
    device = resolve_device("cpu" if args.no_cuda else args.device)
    scorer = classify_scorer(loaded.model, loaded.input_norm, device, args.mode, args.precision, args.fold_bn)
    options = ClassifyOptions(mode=args.mode, sample_size=loaded.sample_size, sample_duration=loaded.sample_duration,
                              stride=args.stride, batch_size=args.batch_size, sample_t_stride=t_stride,
                              pin_memory=device.type == "cuda")
    records = []
    errors = 0
    partial = 0  # videos that decoded only in part
    overlay_failures = 0
    stream = None
    if output.suffix.lower() == ".jsonl":
        output.parent.mkdir(parents=True, exist_ok=True)
        stream = open(output, "w", encoding="utf-8")
    # on the CPU, the model's threads share the cores with the decoding of the next clips (set
    # here, next to the block that gives them back on every path)
    threads = classify_thread_split(device)
    from resnet3d.engine.signals import StopRequest

    # SIGTERM (a scheduler's, a `kill`) keeps the videos done so far, as Ctrl-C does: it killed the
    # process before, and a .json output, written at the end, lost every finished video
    stop_request = StopRequest(at_once=True).install()
    try:
        for number, (path, name, _) in enumerate(found):
            try:
                record = classify_video(path, name, scorer, loaded.class_names, options, threads)
            except RuntimeError as error:  # a GPU out of memory: one line, the videos done before kept (finally)
                raise _out_of_memory(error, args, loaded, path, output if number else None) or error
            if "error" in record:
                errors += 1
                print(f"resnet3d classify: {record['error']}; listed with an error entry", file=sys.stderr)
            else:
                if "warning" in record:
                    partial += 1
                    print(f"resnet3d classify: {record['warning']} (in its record as \"warning\")", file=sys.stderr)
                if args.overlay:
                    destination = Path(args.overlay) / overlays[number]
                    try:
                        write_overlay(path, destination, captions(record["clips"]))
                        record["overlay"] = str(destination)  # which copy belongs to which input
                    except Exception as error:  # a side output: its failure must not cost the other videos
                        overlay_failures += 1
                        record["overlay_error"] = f"{destination}: {type(error).__name__}: {error}"
                        print(f"resnet3d classify: {name}: the overlay could not be written ({record['overlay_error']}); "
                              "its result is kept, with \"overlay_error\"", file=sys.stderr)
            if args.verbose:
                print(f"{name}: {len(record['clips'])} clips", file=sys.stderr)
            if stream is not None:
                stream.write(json.dumps(record) + "\n")
                stream.flush()
            else:
                records.append(record)
    finally:
        threads.restore()
        try:
            if stream is not None:
                stream.close()
            elif records:
                atomic_write_json(output, records)
        finally:
            stop_request.restore()
    done = len(found) - errors
    overlays_written = done - overlay_failures
    print(f"resnet3d classify: {done} of {len(found)} videos classified ({args.mode})"
          + (f", {partial} of them only in part (warnings above)" if partial else "")
          + f"; results in {output}"
          + (f"; overlays in {args.overlay}" if args.overlay and overlays_written else "")
          + (f"; {overlay_failures} overlay(s) could not be written (above)" if overlay_failures else ""))
    if done == 0:
        raise UserError("no video could be read; see the errors above")
    # as prepare frames: a script sees that something is missing; the results file holds the rest
    return 1 if errors or overlay_failures else 0
