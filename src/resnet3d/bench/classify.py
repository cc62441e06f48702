"""``resnet3d bench classify``: classifying one's own video files, ``resnet3d classify`` against the
companion tool's way (``bench/classify_baseline.py``), in the same run.

Both sides classify the same files with the same model into the same clips (every
``sample_duration`` frames from frame 1, the last one loop-padded), in score mode:

- ours: what ``resnet3d classify`` does, through the functions it calls with its defaults:
  ``classify_video`` per file (PyAV decoding straight to model-sized uint8 clips, in a thread
  one batch ahead of the model), the model as ``classify_scorer`` prepares it (BatchNorm folded,
  channels_last_3d, normalised on the device, autocast by ``--precision``) and, on a CPU, the
  model's threads split from the decoding's (``classify_thread_split``);
- baseline: the companion tool: every frame extracted to JPEG files (``--ffmpeg``: by the ffmpeg
  binary, as it ran; else the same through PyAV), a DataLoader of ``--n_threads`` workers making
  float clips frame by frame in PIL, the model in fp32 NCDHW, the folder removed.

The model is prepared once for each side before any pass (loading a model is not timed on
either side). The sides take turns, ours first: one untimed pass of each (``--no-warm-up``: none:
a first pass pays for torch's and FFmpeg's first calls and puts the files in the page cache),
then ``--repeat`` timed pairs. Each side's line gives the median pass (``seconds``,
``cpu_seconds``: this process and its ended children, the loader workers and ffmpeg) and every
pass; ours adds ``speedup`` (median seconds against median seconds), ``speedup_per_cpu``,
``speedup_by_repeat`` and ``top1_agreement``, the share of clips whose top label both sides
agree on (the resizes differ slightly, so it is high, not 1.0; it shows both classify the same
clips). Without video arguments, ``--videos`` files are generated (``resnet3d.synthetic``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from resnet3d.bench.common import add_model_flags, cpu_seconds, emit
from resnet3d.cliargs import add_flag, add_switch
from resnet3d.errors import UserError
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers

PROGRESS = "resnet3d bench classify:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="VIDEO_OR_DIR",
                        help="video files, or folders searched for them, as classify takes them "
                             "(default: generated videos)")
    add_flag(parser, "--synthetic-dir", default=None,
             help="where to generate (or reuse) the videos (default: a temporary folder)")
    add_flag(parser, "--videos", type=int, default=3, help="generated videos")
    add_flag(parser, "--frames", type=int, default=300, help="frames per generated video")
    add_flag(parser, "--height", type=int, default=360, help="generated frame height (even)")
    add_flag(parser, "--width", type=int, default=640, help="generated frame width (even)")
    add_flag(parser, "--fps", type=int, default=30, help="frame rate of the generated videos")
    add_flag(parser, "--weights", default=None, metavar="CKPT",
             help="a checkpoint, as classify's --model reads it; its architecture, clip size and normalisation "
                  "replace the model flags (default: the model of the flags below with random weights, seed 0, "
                  "fed as the companion tool fed its models: 0-255 minus the ActivityNet mean)")
    add_model_flags(parser)
    parser.add_argument("--batch_size", type=int, default=32, help="clips per model batch, both sides (classify's "
                                                                   "and the companion tool's default)")
    parser.add_argument("--n_threads", type=int, default=default_num_workers(),
                        help=f"the baseline's DataLoader workers (default: {DEFAULT_WORKERS_RULE}); ours decodes in "
                             "a thread and FFmpeg's threads, as classify does")
    add_flag(parser, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(parser, "--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
             help="ours, as classify's flag (the baseline is fp32)")
    add_switch(parser, "--fold-bn", default=True, help="ours, as classify's flag (the baseline never folds)")
    add_flag(parser, "--ffmpeg", action="store_true",
             help="the baseline extracts with the ffmpeg binary (--ffmpeg-binary), as the companion tool did; "
                  "without it, with PyAV's FFmpeg libraries at the command's defaults")
    add_flag(parser, "--ffmpeg-binary", default="ffmpeg", metavar="BINARY", help="the ffmpeg of --ffmpeg")
    add_flag(parser, "--repeat", type=int, default=1, help="timed passes of each side, taken in turn")
    add_switch(parser, "--warm-up", default=True,
               help="one untimed pass of each side first (default; --no-warm-up times the first passes too)")


def run(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UserError(f"--repeat must be 1 or more (got {args.repeat})")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be 1 or more (got {args.batch_size})")
    if args.n_threads < 0:
        raise UserError(f"--n_threads must be 0 or more (got {args.n_threads})")
    ffmpeg = _ffmpeg_binary(args.ffmpeg_binary) if args.ffmpeg else None
    # generated videos, and the baseline's frame folders, live as long as the run
    with tempfile.TemporaryDirectory(prefix="resnet3d-bench-classify-") as workdir:
        return _run(args, ffmpeg, workdir)


def _ffmpeg_binary(asked: str) -> str:
    import shutil

    found = shutil.which(asked)
    if found is None:
        raise UserError(f"--ffmpeg: no program {asked} (on PATH or as a path; --ffmpeg-binary names it); leave "
                        "--ffmpeg out to extract with PyAV at the ffmpeg command's defaults")
    return found


def _run(args: argparse.Namespace, ffmpeg: Optional[str], workdir: str) -> int:
    import copy

    from resnet3d.bench.classify_baseline import CompanionSettings, classify_like_the_companion
    from resnet3d.bench.test import read_every_file
    from resnet3d.classify.scoring import classify_scorer
    from resnet3d.commands.test import resolve_device
    from resnet3d.engine.model_start import check_clip_fits
    from resnet3d.engine.predict import prepare_model

    videos = _input_videos(args, workdir)
    for path, _ in videos:
        _check_readable(path)
    model, class_names, norm, size, duration, model_name = _model(args)
    check_clip_fits(model, 3, duration, size)
    device = resolve_device(args.device)
    ours_scorer = classify_scorer(copy.deepcopy(model), norm, device, "score", args.precision, args.fold_bn)
    baseline_model = prepare_model(model, device, channels_last=False, fold_bn=False)  # as the tool ran it
    settings = CompanionSettings(sample_size=size, sample_duration=duration, batch_size=args.batch_size,
                                 workers=args.n_threads, input_norm=norm, ffmpeg=ffmpeg)
    frames_dir = os.path.join(workdir, "frames")
    os.makedirs(frames_dir, exist_ok=True)

    def ours() -> "_Pass":
        return _ours_pass(videos, ours_scorer, class_names, size, duration, args.batch_size, device)

    def baseline() -> "_Pass":
        records, extracted = classify_like_the_companion(videos, baseline_model, class_names, device, settings,
                                                         frames_dir)
        return _Pass(records=records, extracted=extracted)

    read_every_file(path for path, _ in videos)
    if args.warm_up:
        for name, side in (("ours", ours), ("baseline", baseline)):
            print(f"{PROGRESS} warm-up, {name}", file=sys.stderr)
            side()
    passes: Dict[str, List[_Pass]] = {"ours": [], "baseline": []}
    for repeat in range(1, args.repeat + 1):
        for name, side in (("ours", ours), ("baseline", baseline)):
            done = _timed(side)
            passes[name].append(done)
            print(f"{PROGRESS} {name} pass {repeat} of {args.repeat}: {done.seconds:.2f} s, "
                  f"{done.cpu_seconds:.2f} CPU s", file=sys.stderr)
    _report(args, passes, len(videos), model_name, f"{duration}x{size}x{size}", device, ffmpeg)
    return 0


def _report(args: argparse.Namespace, passes: Dict[str, List["_Pass"]], n_videos: int, model_name: str, clip: str,
            device, ffmpeg: Optional[str]) -> None:
    """The two JSON lines: the baseline's, then ours with the comparison."""
    base = {"what": "classify", "videos": n_videos, "model": model_name, "clip": clip, "device": str(device),
            "batch_size": args.batch_size, "n_threads": args.n_threads, "repeat": args.repeat,
            "warm_up": args.warm_up, "inputs": "given" if args.inputs else "generated",
            **({"widen_factor": args.resnet_widen_factor} if args.resnet_widen_factor != 1.0 and not args.weights
               else {})}
    baseline_line = _side_line(passes["baseline"], n_videos)
    extracted = passes["baseline"][-1].extracted
    emit({**base, "baseline": True,
          "scheme": "the companion tool: every frame to JPEG files ("
          + (f"{ffmpeg} -i V tmp/image_%05d.jpg" if ffmpeg else "ffmpeg -i V tmp/image_%05d.jpg re-enacted with PyAV")
          + "), DataLoader of PIL + float clips, fp32 NCDHW",
          "extraction": "ffmpeg" if ffmpeg else "pyav", "jpeg_files": extracted.jpeg_files,
          "mean_jpeg_bytes": round(extracted.jpeg_bytes / max(1, extracted.jpeg_files)), **baseline_line})
    ours_line = _side_line(passes["ours"], n_videos)
    emit({**base, "baseline": False,
          "scheme": "resnet3d classify: PyAV decoding to uint8 clips one batch ahead of the model"
          + (", BN folded" if args.fold_bn else "") + ", channels_last_3d, normalised on the device",
          "precision": args.precision, "fold_bn": args.fold_bn, "model_threads": passes["ours"][-1].model_threads,
          **ours_line, **_comparison(passes["ours"], passes["baseline"], ours_line, baseline_line)})


class _Pass:
    """One pass of one side over every video: its records and what it cost."""

    def __init__(self, records: List[Dict[str, Any]], extracted: Any = None, model_threads: Optional[int] = None):
        self.records = records
        self.extracted = extracted
        self.model_threads = model_threads
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @property
    def clips(self) -> int:
        return sum(len(record["clips"]) for record in self.records)


def _timed(side) -> _Pass:
    start, cpu_start = time.perf_counter(), cpu_seconds()
    done = side()
    done.seconds, done.cpu_seconds = time.perf_counter() - start, cpu_seconds() - cpu_start
    return done


def _ours_pass(videos: Sequence[Tuple[str, str]], scorer, class_names: Optional[Sequence[str]], size: int,
               duration: int, batch_size: int, device) -> _Pass:
    """``resnet3d classify FILES`` after its model is loaded: a fresh thread split, as each run
    of the command starts with one, and classify's options with its defaults."""
    from resnet3d.classify import ClassifyOptions, classify_video
    from resnet3d.classify.scoring import classify_thread_split

    options = ClassifyOptions(mode="score", sample_size=size, sample_duration=duration, stride=None,
                              batch_size=batch_size, sample_t_stride=1, pin_memory=device.type == "cuda")
    threads = classify_thread_split(device)
    records = []
    try:
        for path, name in videos:
            record = classify_video(path, name, scorer, class_names, options, threads)
            if "error" in record:
                raise UserError(f"ours: {record['error']}")
            records.append(record)
        model_threads = threads.threads
    finally:
        threads.restore()
    return _Pass(records=records, model_threads=model_threads)


def _side_line(passes: List[_Pass], n_videos: int) -> Dict[str, Any]:
    seconds = statistics.median(p.seconds for p in passes)
    cpu = statistics.median(p.cpu_seconds for p in passes)
    clips = passes[-1].clips
    return {"clips": clips, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "videos_per_s": _rate(n_videos, seconds), "clips_per_s": _rate(clips, seconds),
            "videos_per_cpu_s": _rate(n_videos, cpu), "clips_per_cpu_s": _rate(clips, cpu),
            "seconds_by_repeat": [round(p.seconds, 3) for p in passes],
            "cpu_seconds_by_repeat": [round(p.cpu_seconds, 3) for p in passes]}


def _comparison(ours: List[_Pass], baseline: List[_Pass], ours_line: Dict[str, Any],
                baseline_line: Dict[str, Any]) -> Dict[str, Any]:
    """Ours against the baseline: the ratios, and whether both classified the same clips alike."""
    pairs = list(zip(ours[-1].records, baseline[-1].records))
    same_clips = len(ours[-1].records) == len(baseline[-1].records) and all(
        [c["segment"] for c in a["clips"]] == [c["segment"] for c in b["clips"]] for a, b in pairs)
    return {"speedup": _ratio(baseline_line["seconds"], ours_line["seconds"]),
            "speedup_per_cpu": _ratio(baseline_line["cpu_seconds"], ours_line["cpu_seconds"]),
            "speedup_by_repeat": [_ratio(b.seconds, o.seconds) for o, b in zip(ours, baseline)],
            "same_clips": same_clips,
            "top1_agreement": _agreement(pairs, shift=0),
            # the control: a model that gives most clips of a video one label (random weights do)
            # agrees with the neighbouring clip as well, and then the figure above proves little
            "top1_agreement_next_clip": _agreement(pairs, shift=1)}


def _agreement(pairs: List[Tuple[Dict[str, Any], Dict[str, Any]]], shift: int) -> Optional[float]:
    """The share of ours' clips whose label the baseline gives the clip ``shift`` later in the
    same video (0: the same clip)."""
    agree = compared = 0
    for ours_record, baseline_record in pairs:
        later = baseline_record["clips"][shift:]
        for a, b in zip(ours_record["clips"], later):
            agree, compared = agree + (a["label"] == b["label"]), compared + 1
    return round(agree / compared, 3) if compared else None


def _rate(count: int, seconds: float) -> Optional[float]:
    return round(count / seconds, 3) if seconds > 0 else None


def _ratio(slower: float, faster: float) -> Optional[float]:
    return round(slower / faster, 2) if faster > 0 else None


def _model(args: argparse.Namespace):
    """(model, class names or None, input norm, sample size, sample duration, name) of the run."""
    if args.weights:
        from resnet3d.engine.predict_model import load_inference_model

        loaded = load_inference_model(args.weights, argparse.Namespace())
        for note in loaded.notes:
            print(f"{PROGRESS} {note}", file=sys.stderr)
        config = loaded.model.model_config
        return (loaded.model, loaded.class_names, loaded.input_norm, loaded.sample_size, loaded.sample_duration,
                f"{config.get('model', 'model')}-{config.get('model_depth', '')}".rstrip("-"))
    from resnet3d.bench.test import random_model
    from resnet3d.normalization import SEED

    return random_model(args), None, SEED, args.sample_size, args.sample_duration, f"{args.model}-{args.model_depth}"


def _input_videos(args: argparse.Namespace, workdir: str) -> List[Tuple[str, str]]:
    """``(path, name)`` of every video to classify: classify's own search of the arguments, or
    generated files."""
    if args.inputs:
        from resnet3d.commands.classify import find_videos

        return [(path, name) for path, name, _ in find_videos(args.inputs, "", "")]
    return [(path, path) for path in _generated(args, Path(args.synthetic_dir or os.path.join(workdir, "videos")))]


def _generated(args: argparse.Namespace, root: Path) -> List[str]:
    """``--videos`` MP4s of ``--frames`` frames at ``--height`` x ``--width`` in ``root``, each a
    moving disc of another motion class (``resnet3d.synthetic``); files already there are kept."""
    import numpy as np

    from resnet3d.synthetic import MOTIONS, render_video, write_mp4

    if args.videos < 1 or args.frames < 1 or args.fps < 1:
        raise UserError("--videos, --frames and --fps must be 1 or more")
    if args.height % 2 or args.width % 2 or min(args.height, args.width) < 2:
        raise UserError(f"--height and --width must be even (H.264 frames): got {args.height}x{args.width}")
    paths = [root / f"video_{number:02d}_{args.frames}f_{args.width}x{args.height}_{args.fps}fps.mp4"
             for number in range(1, args.videos + 1)]
    missing = [path for path in paths if not path.exists()]
    if len(missing) < len(paths):
        print(f"{PROGRESS} reusing {len(paths) - len(missing)} generated video(s) in {root}", file=sys.stderr)
    rng = np.random.default_rng(0)
    for path in missing:
        print(f"{PROGRESS} generating {path}", file=sys.stderr)
        number = paths.index(path)
        frames = render_video(number % len(MOTIONS), args.frames, (args.height, args.width), rng)
        write_mp4(path, frames, fps=args.fps)
    return [str(path) for path in paths]


def _check_readable(path: str) -> None:
    """One line before any pass for a file classify cannot read (its reader, its first frame)."""
    from resnet3d.classify.clips import VideoReadError, timed_frames

    frames = timed_frames(path)
    try:
        next(frames)
    except VideoReadError as error:
        raise UserError(f"{path}: {error} (bench classify measures videos that classify can read)") from None
    except StopIteration:
        raise UserError(f"{path}: no video frame in it (bench classify measures videos that classify can read)") \
            from None
    finally:
        frames.close()
