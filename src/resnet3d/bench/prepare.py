"""``resnet3d bench prepare VIDEO_DIR``: frame extraction, frames per second per core, against the
seed's ``ffmpeg -i V -vf scale=-1:240 DIR/image_%05d.jpg`` (one ffmpeg process per video).

Both run as child processes pinned to the same single core, and the figure is frames divided by
the CPU time (user + system) the children used, so other load on the machine does not skew it;
wall-clock figures are printed too. Both produce frames 240 pixels high (ours with ``--height
240``, the seed's rule), and ours uses the JPEG quality whose files come closest in size to
ffmpeg's default output (searched on a sample of frames), so the two write comparable bytes.
Both sizes are printed.

Nothing is installed: without an ``ffmpeg`` binary on PATH the baseline line says so and why.
"""
from __future__ import annotations

import argparse
import datetime
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from resnet3d.bench.common import emit
from resnet3d.cliargs import add_flag
from resnet3d.errors import UserError

HEIGHT = 240
SEED_COMMAND = "ffmpeg -i V -vf scale=-1:240 DIR/image_%05d.jpg"
SAMPLE_FRAMES = 40  # per video, for the quality search
SAMPLE_VIDEOS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video_dir", type=Path, metavar="VIDEO_DIR", help="videos to extract (any layout)")
    add_flag(parser, "--quality", type=int, default=None,
             help="our JPEG quality; None: the one matching ffmpeg's file sizes (or 75 without ffmpeg)")
    add_flag(parser, "--limit", type=int, default=None, help="use at most this many videos (0 or none: all)")
    add_flag(parser, "--repeat", type=int, default=1, help="runs of each side; the fastest counts")
    add_flag(parser, "--cpu", type=int, default=None, help="the core to pin both to; None: the first one allowed")
    add_flag(parser, "--ffmpeg", default="ffmpeg", help="the ffmpeg binary of the baseline")


def _pinned(cpu: int):
    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_pinned(commands: List[List[str]], cpu: int) -> Tuple[float, float]:
    """Run the commands one after another on ``cpu``; (wall seconds, CPU seconds)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, preexec_fn=_pinned(cpu))
        if done.returncode != 0:
            raise UserError(f"the baseline's {' '.join(command)} failed: {_last_line(done.stderr)}; measure a folder "
                            "of videos that ffmpeg reads (move this one out of it)")
    return time.perf_counter() - start, _children_cpu() - cpu_before


def _last_line(stderr: bytes) -> str:
    """ffmpeg's reason: the last line it wrote (its banner and stream list come before)."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no message"


def _jpegs(root: Path) -> List[Path]:
    return sorted(root.rglob("image_*.jpg"))


def _output_stats(root: Path) -> Dict[str, float]:
    files = _jpegs(root)
    total = sum(p.stat().st_size for p in files)
    return {"frames": len(files), "mean_jpeg_bytes": round(total / len(files), 1) if files else 0.0}


def _first_frame_sizes(root: Path, folders: List[Path]) -> List[Tuple[int, int]]:
    import simplejpeg

    sizes = []
    for folder in folders:
        first = root / folder / "image_00001.jpg"
        if first.exists():
            height, width, _, _ = simplejpeg.decode_jpeg_header(first.read_bytes())
            sizes.append((width, height))
        else:
            sizes.append((0, 0))
    return sizes


def _match_quality(videos: List[Path], ffmpeg_root: Path, folders: List[Path]) -> Tuple[int, float]:
    """The quality whose JPEGs come closest in mean size to ffmpeg's, on frames spread evenly
    over the first videos (key frames and the others compress differently)."""
    from resnet3d.prepare.decode import PlaneConverter, ResizeRule, VideoReader
    from resnet3d.prepare.extract import encode_jpeg

    planes = []
    reference = []
    for video, folder in list(zip(videos, folders))[:SAMPLE_VIDEOS]:
        n_written = len(_jpegs(ffmpeg_root / folder))
        stride = max(1, n_written // SAMPLE_FRAMES)
        with VideoReader(video) as reader:
            converter = PlaneConverter(ResizeRule(short_side=None, height=HEIGHT), reader.sample_aspect_ratio())
            for index, (frame, _, _) in enumerate(reader.frames(), start=1):
                target = ffmpeg_root / folder / f"image_{index:05d}.jpg"
                if index % stride == 0 and target.exists():
                    planes.append(converter.planes(frame))
                    reference.append(target.stat().st_size)
    if not planes:
        return 75, 0.0
    goal = sum(reference) / len(reference)

    def mean_size(quality: int) -> float:
        return sum(len(encode_jpeg(p, quality)) for p in planes) / len(planes)

    low, high = 1, 100  # JPEG size grows with quality: bisect, then take the closer neighbour
    while low < high:
        middle = (low + high) // 2
        if mean_size(middle) < goal:
            low = middle + 1
        else:
            high = middle
    candidates = [q for q in (low - 1, low) if 1 <= q <= 100]
    best = min(candidates, key=lambda q: abs(mean_size(q) - goal))
    return best, goal


def _ffmpeg_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def run(args: argparse.Namespace) -> int:
    from resnet3d.prepare.videos import find_videos

    if args.repeat < 1:
        raise UserError(f"--repeat must be 1 or more (got {args.repeat})")
    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit must be 0 (every video) or more (got {args.limit})")
    listing = find_videos(args.video_dir)
    jobs = listing.jobs[: args.limit] if args.limit else listing.jobs
    if not jobs:
        raise UserError(f"no videos in {args.video_dir}")
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if args.cpu is None else args.cpu
    if cpu not in allowed:
        raise UserError(f"--cpu {cpu}: this process may only use cores {allowed}")
    videos = [job.video for job in jobs]
    folders = [job.output for job in jobs]
    common = {"what": "prepare", "videos": len(jobs), "pinned_cpu": cpu, "frame_height": HEIGHT,
              "date": datetime.date.today().isoformat()}
    ffmpeg = shutil.which(args.ffmpeg)
    with tempfile.TemporaryDirectory(prefix="resnet3d-bench-prepare-") as scratch:
        scratch_dir = Path(scratch)
        baseline: Optional[Dict[str, float]] = None
        quality = args.quality
        if ffmpeg is None:
            emit({**common, "baseline": True, "available": False, "scheme": SEED_COMMAND,
                  "reason": f"no '{args.ffmpeg}' binary on PATH; install one (Debian: apt-get install ffmpeg) "
                            "to measure the seed's extraction"})
        else:
            best = None
            for attempt in range(max(1, args.repeat)):
                root = scratch_dir / f"ffmpeg{attempt}"
                commands = []
                for video, folder in zip(videos, folders):
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    commands.append([ffmpeg, "-nostdin", "-v", "error", "-i", str(video), "-vf", f"scale=-1:{HEIGHT}",
                                     str(root / folder / "image_%05d.jpg")])
                wall, cpu_s = _run_pinned(commands, cpu)
                if best is None or cpu_s < best[1]:
                    best = (wall, cpu_s, root)
            wall, cpu_s, ffmpeg_root = best  # type: ignore[misc]
            stats = _output_stats(ffmpeg_root)
            baseline = {**stats, "wall_s": wall, "cpu_s": cpu_s,
                        "frames_per_s_per_core": stats["frames"] / cpu_s if cpu_s else 0.0}
            if quality is None:
                quality, _ = _match_quality(videos, ffmpeg_root, folders)
            emit({**common, "baseline": True, "available": True, "scheme": SEED_COMMAND,
                  "ffmpeg": _ffmpeg_version(ffmpeg), **_rounded(baseline)})
        quality = quality or 75
        source_dir = args.video_dir
        if args.limit:  # only the chosen videos: link them into a folder of their own
            source_dir = scratch_dir / "videos"
            for job in jobs:
                link = source_dir / job.video.relative_to(args.video_dir)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(job.video.resolve(), link)
        best = None
        for attempt in range(max(1, args.repeat)):
            root = scratch_dir / f"ours{attempt}"
            command = [sys.executable, "-m", "resnet3d", "prepare", "frames", str(source_dir), str(root),
                       "--layout", listing.layout, "--height", str(HEIGHT), "--quality", str(quality),
                       "--workers", "1", "--threads", "1", "--no-progress"]
            wall, cpu_s = _run_pinned([command], cpu)
            if best is None or cpu_s < best[1]:
                best = (wall, cpu_s, root)
        wall, cpu_s, ours_root = best  # type: ignore[misc]
        stats = _output_stats(ours_root)
        ours = {**stats, "wall_s": wall, "cpu_s": cpu_s,
                "frames_per_s_per_core": stats["frames"] / cpu_s if cpu_s else 0.0}
        record = {**common, "baseline": False, "scheme": "resnet3d prepare frames --height 240 --workers 1",
                  "quality": quality, **_rounded(ours)}
        if baseline is not None:
            record["speedup_per_core"] = round(ours["frames_per_s_per_core"] / baseline["frames_per_s_per_core"], 3)
            record["speedup_wall"] = round(
                (ours["frames"] / ours["wall_s"]) / (baseline["frames"] / baseline["wall_s"]), 3)
            record["same_frame_size"] = _first_frame_sizes(ours_root, folders) == _first_frame_sizes(ffmpeg_root, folders)
            # the same frames written (a variable-frame-rate video is where they differ: docs/prepare.md)
            record["same_frame_count"] = ours["frames"] == baseline["frames"]
            record["baseline_mean_jpeg_bytes"] = baseline["mean_jpeg_bytes"]
        emit(record)
    return 0


def _rounded(figures: Dict[str, float]) -> Dict[str, float]:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}
