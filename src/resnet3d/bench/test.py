"""``resnet3d bench test``: per-video recognition videos/s, ours against the originals' scheme.

Both sides recognise the same videos with the same model and the same windows (the seed's:
every ``sample_duration`` frames, centre crop) and the same number of decoding workers:

- baseline: the originals' scheme, one video per batch. A worker returns all windows of one
  video as float tensors made frame by frame (PIL open + convert, resize of the short side,
  centre crop, ToTensor, Normalize), and the model runs in fp32 on that video's windows alone;
- ours: ``resnet3d.engine.predict.run_recognition``: uint8 views decoded once at the smallest
  DCT scale, batches filled across videos, normalisation on the device, bf16 autocast and
  channels_last_3d on CUDA, one batch in flight. With ``--decode-device cuda`` our workers read
  only JPEG bytes and the GPU decodes (nvJPEG), crops and resizes each chunk of views; the
  baseline is unchanged. ``--assemble-device cpu`` runs those steps on the CPU instead (the
  mode's logic on a machine without a GPU; simplejpeg stands in for nvJPEG). Recognition runs
  a copy of the model with each BatchNorm folded into its conv (``--no-fold-bn``: as it is);
  ``--compare-fold`` measures ours a second time without folding, in the same run.

Each side runs once untimed before it is timed (``--no-warm-up``: not), so that neither figure
holds one-time costs (on a GPU mostly cuDNN's autotuning of each batch shape).

Without ``--video_path`` a synthetic Kinetics-like data set is generated (240x320 JPEG frames by
default). Prints one JSON line per side; ours carries ``speedup`` and ``top1_agreement`` (the
share of videos whose top-1 label both sides agree on).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from resnet3d.bench.common import add_model_flags, cpu_seconds, emit
from resnet3d.bench.pil_frames import PilFrameTransform
from resnet3d.cliargs import add_flag, add_switch
from resnet3d.data.config import DECODE_DEVICES
from resnet3d.hardware import DEFAULT_WORKERS_RULE, default_num_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video_path", default=None, help="frame folders (default: a generated synthetic set)")
    parser.add_argument("--annotation_path", default=None, help="annotation JSON (with --video_path)")
    parser.add_argument("--dataset", default="kinetics")
    add_flag(parser, "--subset", default="validation")
    add_flag(parser, "--synthetic-dir", default=None,
             help="where to generate (or reuse) the synthetic data set (default: a temporary folder)")
    add_flag(parser, "--videos", type=int, default=24,
             help="synthetic videos to recognise (rounded up to a multiple of 8: as many of each class)")
    add_flag(parser, "--frames", type=int, default=64, help="frames per synthetic video")
    add_flag(parser, "--video-copies", type=int, default=1,
             help="list each video of --subset this many times (symlinks; kinetics layout): enough videos to keep "
                  "many workers busy from a few generated ones")
    add_flag(parser, "--height", type=int, default=240, help="synthetic frame height")
    add_flag(parser, "--width", type=int, default=320, help="synthetic frame width")
    add_model_flags(parser)
    parser.add_argument("--batch_size", type=int, default=32, help="views per batch (ours)")
    parser.add_argument("--n_threads", type=int, default=default_num_workers(),
                        help=f"decoding workers, both sides (default: {DEFAULT_WORKERS_RULE})")
    add_flag(parser, "--device", default="auto", choices=("auto", "cuda", "cpu"))
    add_flag(parser, "--precision", default="auto", choices=("auto", "bf16", "fp32"), help="ours (the baseline is fp32)")
    add_flag(parser, "--no-baseline", action="store_true", help="measure ours only")
    add_flag(parser, "--decode-device", default="cpu", choices=DECODE_DEVICES,
             help="ours: cpu (the workers decode), cuda (the workers read JPEG bytes; the GPU decodes, crops "
                  "and resizes) or mixed (both side by side, the GPU's share of the chunks found as it runs)")
    add_switch(parser, "--fold-bn", default=True,
               help="ours: fold each BatchNorm into the conv before it (default; the baseline never folds)")
    add_flag(parser, "--compare-fold", action="store_true",
             help="also measure ours with the other --fold-bn setting, on the same videos in the same run")
    add_switch(parser, "--warm-up", default=True,
               help="run each side once, untimed, before timing it (default; --no-warm-up times the first pass, "
                    "with its one-time costs)")
    add_flag(parser, "--decode-only", action="store_true",
             help="no model: each side's frames per CPU second, reading every window of the videos in this process "
                  "(bench/test_decode.py): the most recognition can gain at equal workers where decoding bounds it")
    add_flag(parser, "--assemble-device", default=None, choices=("cpu", "cuda"),
             help="with --decode-device cuda: where the JPEG chunks are decoded (default: the model's device; "
                  "cpu: the same steps on the CPU, for a machine without a GPU)")


class OneVideoBaseline(torch.utils.data.Dataset):
    """All windows of one video as float (W, C, T, H, W), built frame by frame in PIL and float.
    ``ranges``: each video's frames [begin, end), as our side reads them (an annotation's segment
    may start after frame 1)."""

    def __init__(self, folders: List[str], ranges: List[Tuple[int, int]], size: int, duration: int, norm) -> None:
        self.folders = folders
        self.ranges = ranges
        self.duration = duration
        self.transform = PilFrameTransform(size, norm)

    def __len__(self) -> int:
        return len(self.folders)

    def _frame(self, folder: str, index: int) -> torch.Tensor:
        return self.transform(os.path.join(folder, f"image_{index:05d}.jpg"))

    def windows(self, index: int) -> int:
        """How many windows (the batch's size) the video gives."""
        return len(self._starts(index))

    def _starts(self, index: int) -> List[int]:
        from resnet3d.data import temporal

        begin, end = self.ranges[index]
        return temporal.sliding_starts(end - begin, self.duration, self.duration, full_only=True)

    def __getitem__(self, index: int) -> torch.Tensor:
        from resnet3d.data import temporal

        frames = list(range(*self.ranges[index]))
        clips = []
        for start in self._starts(index):
            window = temporal.window(frames, start, self.duration)
            clips.append(torch.stack([self._frame(self.folders[index], i) for i in window], dim=1))  # (C, T, H, W)
        return torch.stack(clips)


def _dataset(args: argparse.Namespace, workdir: str) -> Tuple[str, str, str]:
    """(video_path, annotation_path, dataset) of the data set to recognise. A generated one goes
    to ``--synthetic-dir`` (kept, and reused by later runs) or into ``workdir`` (removed after the
    run: each run left about 100 MB in /tmp)."""
    from resnet3d.errors import UserError

    if args.video_path:
        if not args.annotation_path:
            raise UserError("--video_path needs --annotation_path")
        return args.video_path, args.annotation_path, args.dataset
    from resnet3d.synthetic import make_action_dataset

    root = Path(args.synthetic_dir or os.path.join(workdir, "generated"))
    annotation = root / "annotation.json"
    if annotation.exists():
        print(f"resnet3d bench test: reusing the data set in {root} (--videos, --frames, --height and --width "
              "apply when it is made; remove the folder to make it again)", file=sys.stderr)
    else:
        make_action_dataset(str(root), n_classes=8, videos_per_class=max(2, -(-args.videos // 8) * 2),
                            n_frames=args.frames, size=(args.height, args.width), fmt="jpg", val_share=0.5)
    return str(root / "jpg"), str(annotation), "kinetics"


def _copies(args: argparse.Namespace, video_path: str, annotation_path: str, dataset: str,
            workdir: str) -> Tuple[str, str]:
    """The data set with each video of ``--subset`` listed ``--video-copies`` times, in
    ``workdir`` (symlinks: the user's folders are only read)."""
    from resnet3d.bench.video_copies import with_video_copies
    from resnet3d.errors import UserError

    if args.video_copies < 1:
        raise UserError("--video-copies must be 1 or more")
    return with_video_copies(video_path, annotation_path, args.video_copies, workdir, subset=args.subset,
                             dataset=dataset)


def baseline_dataset(videos, data) -> OneVideoBaseline:
    """The originals' scheme over ``videos``, on the frames our side reads."""
    from resnet3d.data.dataset import VideoDataset

    ranges = VideoDataset(videos, [], data, train=False, sampling="center")
    return OneVideoBaseline([v.path for v in videos], [ranges.frame_range(i) for i in range(len(videos))],
                            data.sample_size, data.sample_duration, data.input_norm)


def _one_per_batch_shape(videos, data) -> list:
    """One video per number of windows: the baseline's batch is one video's windows, so each
    distinct count is a batch shape that cuDNN's autotuning meets once, in the warm-up."""
    dataset = baseline_dataset(videos, data)
    first: Dict[int, object] = {}
    for index, video in enumerate(videos):
        first.setdefault(dataset.windows(index), video)
    return list(first.values())


def read_every_file(video_paths: Iterable[str]) -> None:
    """Read each video's files once (frame folders, HDF5 or video files), so that both sides'
    timed passes find them in the page cache: ours warms up on a whole pass, the baseline on a
    few videos, and the first read from disk would otherwise fall on the baseline alone."""
    for video_path in video_paths:
        paths = [entry.path for entry in os.scandir(video_path)] if os.path.isdir(video_path) else [video_path]
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    while handle.read(1 << 20):
                        pass
            except OSError:  # a missing or unreadable file: the passes report it
                continue


def _baseline(model, videos, data, device: torch.device,
              workers: int) -> Tuple[float, Dict[str, int], float, float]:
    """Seconds, top-1 class per video, CPU seconds (``cpu_seconds``) of the one-video-per-batch
    scheme, and the seconds from its first video's arrival on (after the workers' start-up)."""
    from resnet3d.data.loader import WorkerLoader

    dataset = baseline_dataset(videos, data)
    loader = WorkerLoader(dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda")
    top1: Dict[str, int] = {}
    start, cpu_start = time.perf_counter(), cpu_seconds()
    first: Optional[float] = None
    batches = iter(loader)
    with torch.inference_mode():
        for video, clips in zip(videos, batches):
            first = time.perf_counter() if first is None else first
            scores = torch.softmax(model(clips.to(device)), dim=1).mean(dim=0)
            top1[video.key] = int(scores.argmax())
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    del batches  # its workers end and are joined here, so that their CPU time is counted
    return end - start, top1, cpu_seconds() - cpu_start, end - (first if first is not None else start)


def _steady_rate(videos: int, seconds: float) -> Optional[float]:
    """Videos per second after the workers' start-up (``steady_videos_per_s``)."""
    return round(videos / seconds, 3) if seconds > 0 else None


def random_model(args: argparse.Namespace) -> torch.nn.Module:
    """The model of ``--model``, ``--model_depth``, ``--n_classes``, ``--resnet_widen_factor`` and
    the clip flags, with random weights drawn from seed 0: only the speed is measured, and every
    side of a run uses this one model."""
    from resnet3d.models import create_model, model_options

    torch.manual_seed(0)
    options = model_options(args.model)
    extra = {"sample_size": args.sample_size, "sample_duration": args.sample_duration} if "sample_size" in options else {}
    if "widen_factor" in options:
        extra["widen_factor"] = args.resnet_widen_factor
    return create_model(args.model, args.model_depth if args.model != "c3d" else None, n_classes=args.n_classes,
                        **extra)


def _assemble_device(args: argparse.Namespace, device: torch.device) -> Optional[torch.device]:
    """Where our side decodes its JPEG chunks (None: in the workers). ``--decode-device cuda``
    decodes on the model's GPU (refused in one line where there is none) unless
    ``--assemble-device`` says where."""
    from resnet3d.data.gpu_decode import check_decode_device
    from resnet3d.errors import UserError

    if args.decode_device == "cpu":
        if args.assemble_device is not None:
            raise UserError("--assemble-device goes with --decode-device cuda (our side decoding on a device)")
        return None
    if args.assemble_device is None:
        check_decode_device("cuda", device)  # on the model's device, which must be a GPU
        return device
    target = torch.device(args.assemble_device)
    if target.type == "cuda":
        check_decode_device("cuda", target)
    return target


def run(args: argparse.Namespace) -> int:
    # the --video-copies links live as long as the run, Ctrl-C or an error included
    with tempfile.TemporaryDirectory(prefix="resnet3d-bench-copies-") as workdir:
        return _run(args, workdir)


def _run(args: argparse.Namespace, workdir: str) -> int:
    from resnet3d.commands.test import resolve_device
    from resnet3d.data import DataConfig
    from resnet3d.data.config import canonical_subset
    from resnet3d.data.dataset import resolve_videos
    from resnet3d.engine.predict import prepare_model
    from resnet3d.engine.subsets import require_videos
    from resnet3d.errors import UserError

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    assemble_on = _assemble_device(args, device)  # refused before the baseline's minutes, not after
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be 1 or more (got {args.batch_size})")
    video_path, annotation_path, dataset = _dataset(args, workdir)
    if args.video_copies != 1:
        video_path, annotation_path = _copies(args, video_path, annotation_path, dataset, workdir)
    data = DataConfig(dataset=dataset, video_path=video_path, annotation_path=annotation_path,
                      sample_size=args.sample_size, sample_duration=args.sample_duration, num_workers=args.n_threads)
    ours_data = data.with_changes(decode_device=args.decode_device)
    videos, _, annotation = resolve_videos(data, args.subset)
    require_videos(len(videos), annotation_path, canonical_subset(args.subset), "choose one with --subset")
    if args.decode_only:
        from resnet3d.bench.test_decode import measure_decoding

        common = {"videos": len(videos), "clip": f"{args.sample_duration}x{args.sample_size}x{args.sample_size}"}
        for record in measure_decoding(videos, data):
            emit({**record, **common})
        return 0
    model = random_model(args)
    prepare_model(model, device, channels_last=False, fold_bn=False)  # the baseline runs it as the originals did
    # the data set's labels first (the model's weights are random: only the speed is measured)
    names = list(annotation.class_names)[: args.n_classes]
    names += [f"class {i}" for i in range(len(names), args.n_classes)]
    base = {"what": "test", "videos": len(videos), "model": f"{args.model}-{args.model_depth}",
            "clip": f"{args.sample_duration}x{args.sample_size}x{args.sample_size}", "device": str(device),
            "n_threads": args.n_threads, "warm_up": args.warm_up,
            **({"widen_factor": args.resnet_widen_factor} if args.resnet_widen_factor != 1.0 else {})}
    # Each side first runs once untimed: a first pass pays what later ones do not. On a GPU that
    # is mostly cuDNN's autotuning (cudnn.benchmark) of every new batch shape, seconds for a 3D
    # ResNet and more than our whole timed pass; then CUDA's, nvJPEG's and cuBLAS's start-up and
    # the first pinned buffers; on any device, importing and first use of torch.fx for folding.
    # The two --compare-fold passes share their convolution shapes: unwarmed, all of it fell on
    # the first of them (on the CPU that alone made folded/unfolded read 0.29 instead of ~1).
    folds = [args.fold_bn, not args.fold_bn] if args.compare_fold else [args.fold_bn]
    baseline_top1: Optional[Dict[str, int]] = None
    baseline_rate = None
    baseline_per_cpu: Optional[float] = None
    baseline_steady: Optional[float] = None
    if args.warm_up:
        read_every_file(video.path for video in videos)
    if not args.no_baseline:
        if args.warm_up:  # one video per batch shape (number of windows) it meets
            _baseline(model, _one_per_batch_shape(videos, data), data, device, min(1, args.n_threads))
        seconds, baseline_top1, baseline_cpu, steady_s = _baseline(model, videos, data, device, args.n_threads)
        baseline_rate = len(videos) / seconds
        baseline_per_cpu = len(videos) / baseline_cpu if baseline_cpu > 0 else None
        baseline_steady = _steady_rate(len(videos), steady_s)
        emit({**base, "baseline": True, "scheme": "one video per batch, PIL + float per frame, fp32",
              "seconds": round(seconds, 3), "videos_per_s": round(baseline_rate, 3),
              "steady_videos_per_s": baseline_steady,
              "cpu_seconds": round(baseline_cpu, 3), "videos_per_cpu_s": _rounded(baseline_per_cpu),
              "torch_threads": torch.get_num_threads()})
    if args.warm_up:  # every batch shape ours meets, the last partial batch's too
        _ours(args, model, videos, ours_data, device, names, assemble_on, folds[0], None, None)
    rates: Dict[bool, float] = {}
    for fold_bn in folds:
        record, rates[fold_bn] = _ours(args, model, videos, ours_data, device, names, assemble_on, fold_bn,
                                       baseline_top1, baseline_rate, baseline_per_cpu, baseline_steady)
        if len(rates) == 2:  # the second of --compare-fold's lines: folded against unfolded
            record["folded_vs_unfolded"] = round(rates[True] / rates[False], 3)
        emit({**base, **record})
    return 0


def _ours(args: argparse.Namespace, model, videos, data, device: torch.device, names: List[str],
          assemble_on: Optional[torch.device], fold_bn: bool, baseline_top1: Optional[Dict[str, int]],
          baseline_rate: Optional[float], baseline_per_cpu: Optional[float] = None,
          baseline_steady: Optional[float] = None) -> Tuple[Dict[str, object], float]:
    """Our side's JSON record (without the common keys) and its videos/s. ``steady_videos_per_s``
    leaves out the pass's set-up and the workers' start-up (``setup_s``, ``first_chunk_s``), as the
    baseline's leaves out its workers' start-up: a pass of a few hundred videos lasts a few
    seconds for ours, of which those fixed costs were half on the H200, where a data set of
    thousands of videos pays them once (``steady_speedup``: ours against the baseline so)."""
    from resnet3d.config import Config, InferenceConfig, RunConfig
    from resnet3d.engine.predict import run_recognition
    from resnet3d.engine.results import result_names

    with tempfile.TemporaryDirectory(prefix="resnet3d-bench-test-out-") as out:
        # flavour "seed": the seed's windows (full windows every sample_duration frames), as the baseline's
        config = Config(data=data,
                        run=RunConfig(result_path=out, batch_size=args.batch_size, precision=args.precision),
                        inference=InferenceConfig(flavour="seed", subset=args.subset, stride=args.sample_duration,
                                                  crop="center", top_k=1, batch_size=args.batch_size,
                                                  fold_bn=fold_bn))
        start, cpu_start = time.perf_counter(), cpu_seconds()
        summary = run_recognition(config, model=model, device=device, class_names=names, overwrite=True,
                                  show_progress=False, announce=False, assemble_device=assemble_on)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        with open(summary["output"], "r", encoding="utf-8") as handle:
            ours = {k: names.index(v[0]["label"]) for k, v in json.load(handle)["results"].items()}
    rate = len(videos) / seconds
    decoding = "" if assemble_on is None else (f", JPEG bytes from the workers decoded on {assemble_on.type}"
                                               + (" (a share of the chunks)" if args.decode_device == "mixed" else ""))
    record: Dict[str, object] = {
        "baseline": False, "scheme": "batches across videos, uint8 to the device, "
        + ("bf16 autocast + channels_last_3d" if device.type == "cuda" and args.precision != "fp32" else "fp32")
        + (", BN folded into the convs" if summary["folded_bn"] else "")
        + decoding,
        "seconds": round(seconds, 3), "videos_per_s": round(rate, 3),
        "steady_videos_per_s": _steady_rate(len(videos), summary["seconds"] - summary["setup_s"]
                                            - summary["first_chunk_s"]),
        "cpu_seconds": round(cpu, 3), "videos_per_cpu_s": _rounded(len(videos) / cpu if cpu > 0 else None),
        "model_threads": summary["model_threads"], "batch_size": args.batch_size,
        "fold_bn": fold_bn, "folded_bn": summary["folded_bn"],
        "decode_device": args.decode_device, "bad_frames": summary["bad_frames"], "errors": summary["errors"],
        # the pass's fixed costs, which a few hundred videos do not amortise as a data set does
        "setup_s": round(summary["setup_s"], 3), "first_chunk_s": round(summary["first_chunk_s"], 3),
        # blocked on the workers after their first chunk: near 0 when the GPU or the main process bounds
        "data_wait_share": round(summary["data_wait_s"] / seconds, 3) if seconds > 0 else 0.0}
    if assemble_on is not None:
        record["assemble_device"] = str(assemble_on)
    if "gpu_decode_share" in summary:  # --decode-device mixed: where the share of chunks decoded there went
        record.update({key: summary[key] for key in ("gpu_decode_share", "gpu_decode_share_history")})
    if baseline_rate:
        record["speedup"] = round(rate / baseline_rate, 2)
        if baseline_steady and record["steady_videos_per_s"]:
            record["steady_speedup"] = round(record["steady_videos_per_s"] / baseline_steady, 2)
        if baseline_per_cpu and cpu > 0:  # on a shared machine, the steadier ratio
            record["speedup_per_cpu"] = round(len(videos) / cpu / baseline_per_cpu, 2)
        result_id = result_names([v.key for v in videos], "seed")
        agree = [ours.get(result_id[key]) == value for key, value in (baseline_top1 or {}).items()]
        record["top1_agreement"] = round(sum(agree) / max(1, len(agree)), 3)
    return record, rate


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)
