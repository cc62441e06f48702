"""``resnet3d bench loader``: training-loader clips/s, ours against the originals' scheme.

Ours: ``resnet3d.data`` as training uses it (one crop box per clip, JPEG decoded at the smallest
DCT scale covering the crop, one resize for the whole clip, uint8 out; normalisation is left to
the device). ``--baseline`` also runs, in the same process and on the same videos, what the
successor's training loader does per frame (``SuccessorBaseline``). ``--decode-device cuda``
adds the encoded loader (workers hand over JPEG bytes; each batch is decoded, cropped and resized
on the GPU by ``resnet3d.data.gpu_decode.assemble_clips``, whose time and main-process CPU count
as part of the batch). All sides go through a DataLoader with ``--n_threads`` workers.

Per-core figures divide the clips by the CPU seconds the decoding processes (the main process and
its workers) actually used, read from the OS, so other load on the machine does not lower them;
where that cannot be read they fall back to wall time / workers. The sides take turns in blocks
of ``--n-batches`` batches, ``--repeat`` times, and the per-core figures add up all blocks, so a
busy spell on a shared machine falls on both alike; ``speedup_per_core_by_repeat`` shows the
spread. ``clips_per_s`` (wall clock) comes from one more block of each side.
"""
from __future__ import annotations

import argparse
import os
import random
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from resnet3d.bench.common import emit
from resnet3d.cliargs import add_flag
from resnet3d.data import DataConfig, build_dataset, build_loader, set_epoch
from resnet3d.data import spatial, temporal
from resnet3d.data.config import DATASETS, TRAIN_CROPS
from resnet3d.data.gpu_decode import assemble_clips, batched_decoder, check_decode_device
from resnet3d.errors import UserError
from resnet3d.engine.subsets import require_videos
from resnet3d.frame_flags import add_decode_flags, decode_settings
from resnet3d.normalization import KINETICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video_path", required=True, help="frame folders (or videos with --file_type video)")
    parser.add_argument("--annotation_path", required=True, help="annotation JSON")
    parser.add_argument("--dataset", default="kinetics", choices=DATASETS, help="annotation flavour and folder layout")
    parser.add_argument("--file_type", default="jpg", choices=("jpg", "hdf5", "video"), help="what --video_path holds")
    parser.add_argument("--sample_size", type=int, default=112, help="output height and width")
    parser.add_argument("--sample_duration", type=int, default=16, help="frames per clip")
    parser.add_argument("--train_crop", default="random", choices=TRAIN_CROPS, help="training crop of our loader (the baseline always uses the successor's random-resized crop)")
    parser.add_argument("--n_threads", type=int, default=0, help="DataLoader workers (0: the main process)")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per batch")
    add_flag(parser, "--n-batches", type=int, default=10, help="batches timed (after one warm-up batch)")
    add_decode_flags(parser.add_argument_group("our loader's JPEG decoding"), decode_device=False)
    add_flag(parser, "--decode-device", default="cpu", choices=("cpu", "cuda"),
             help="cuda: also measure, in the same run, the loader that hands JPEG bytes to the GPU and decodes, crops "
                  "and resizes each batch there (docs/data.md, 'Decoding on the GPU'), beside the CPU-decode loader")
    add_flag(parser, "--assemble-device", default=None, metavar="DEVICE",
             help="where the --decode-device cuda side decodes and assembles its batches (default cuda; cpu runs the "
                  "same steps with simplejpeg on the CPU, e.g. on a machine without a GPU)")
    parser.add_argument("--baseline", action="store_true", help="also measure the originals' per-frame PIL + float scheme")
    add_flag(parser, "--repeat", type=int, default=3, help="blocks of --n-batches batches per side, taken in turns; per-core figures add up all blocks")


class SuccessorBaseline(torch.utils.data.Dataset):
    """The successor's training item, re-enacted step by step (its main.py ``get_train_utils``,
    spatial_transforms.py and datasets/loader.py, which wrap torchvision's transforms):

    - ``VideoLoader``: per frame, ``exists()``, open, ``PIL.Image.open``, ``convert('RGB')``;
    - ``RandomResizedCrop``: one box per clip, then per frame ``F.resized_crop`` = PIL ``crop`` +
      ``resize(BILINEAR)``;
    - ``RandomHorizontalFlip``: per clip draw, per frame PIL ``transpose``;
    - ``ToTensor``: ``np.array`` copy, HWC -> CHW ``contiguous``, float, ``div(255)``;
    - ``ScaleValue(value_scale)``: ``tensor *= s``;
    - ``Normalize(mean, std)`` (torchvision's, out of place): clone, mean and std as tensors,
      zero-std check, ``sub_``/``div_``;
    - ``torch.stack(clip).permute(1, 0, 2, 3)``, then the DataLoader's default collate.
    """

    def __init__(self, ours, sample_size: int, value_scale: float = 1.0) -> None:
        self.ours = ours
        self.size = sample_size
        self.value_scale = value_scale
        self.mean = list(KINETICS.mean)
        self.std = list(KINETICS.std)

    def __len__(self) -> int:
        return len(self.ours)

    def _load_frames(self, folder: str, indices: List[int]):
        from PIL import Image

        frames = []
        for i in indices:
            path = os.path.join(folder, f"image_{i:05d}.jpg")
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    with Image.open(handle) as image:
                        frames.append(image.convert("RGB"))
        return frames

    def _to_tensor(self, image) -> torch.Tensor:
        tensor = torch.from_numpy(np.array(image, np.uint8, copy=True))
        tensor = tensor.view(image.size[1], image.size[0], len(image.getbands()))
        return tensor.permute((2, 0, 1)).contiguous().to(dtype=torch.float32).div(255)

    def _normalize(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        if (std == 0).any():
            raise ValueError("std evaluated to zero")
        return tensor.sub_(mean[:, None, None]).div_(std[:, None, None])

    def __getitem__(self, index):
        from PIL import Image

        item, epoch = index if isinstance(index, tuple) else (index, 0)
        video_index, _ = self.ours.items[item]
        # the same seed as ours: both sides draw the same window and crop for an item (ours draws
        # its flip from a stream of its own), so a block's figures compare the same work
        rng = random.Random(f"{self.ours.seed}/{epoch}/{item}")
        begin, end = self.ours.frame_range(video_index)
        indices = temporal.random_crop(temporal.frame_range(begin, end), self.ours.cfg.sample_duration, rng)
        frames = self._load_frames(self.ours.videos[video_index].path, indices)
        width, height = frames[0].size
        cfg = self.ours.cfg
        box = spatial.random_resized_box(width, height, (cfg.train_crop_min_scale, 1.0), (cfg.train_crop_min_ratio, 1 / cfg.train_crop_min_ratio), rng)
        flip = rng.random() < 0.5
        clip = []
        for image in frames:  # the successor's spatial transform, frame by frame
            image = image.crop((box.x0, box.y0, box.x1, box.y1)).resize((self.size, self.size), Image.BILINEAR)
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            tensor = self._to_tensor(image)
            tensor *= self.value_scale
            clip.append(self._normalize(tensor))
        return torch.stack(clip, 0).permute(1, 0, 2, 3), self.ours.videos[video_index].target


def _worker_cpu_seconds(iterator) -> Optional[float]:
    """CPU seconds (user + system) used so far by the iterator's worker processes (Linux /proc)."""
    workers = getattr(iterator, "_workers", None) or []
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for worker in workers:
        try:
            with open(f"/proc/{worker.pid}/stat", "r") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


class _Side:
    """One loader under test: its batches, and the CPU seconds and clips they cost. ``device``:
    where an encoded side's batches are decoded and assembled (``assemble_clips``), part of what
    a batch costs (the main process's CPU time and, on a GPU, the wait for the device)."""

    def __init__(self, name: str, loader, baseline: bool, device: Optional[torch.device] = None) -> None:
        self.name = name
        self.loader = loader
        self.baseline = baseline
        self.device = device
        self.epoch = 0
        self.iterator = None
        self.cpu: Optional[float] = 0.0
        self.clips = 0
        self._workers_cpu: Optional[float] = None

    @property
    def queue_size(self) -> int:
        """Batches the workers make ahead of the consumer: ``workers x prefetch_factor``."""
        workers = int(getattr(self.loader, "num_workers", 0) or 0)
        return workers * int(getattr(self.loader, "prefetch_factor", 0) or 0) if workers else 0

    def start(self, epoch: int) -> None:
        """A fresh pass, with untimed batches first: one warm-up batch (worker start, first file
        opens; for an encoded side also its assembly: on a GPU the first one starts CUDA, nvJPEG
        and cuBLAS, about a second of main-process CPU that no later batch costs), then the
        ``queue_size`` batches the workers made ahead meanwhile. Those cost CPU before the
        measurement starts; counted in it, they made a few timed batches look nearly free (15
        workers queue 60 batches of 64 clips)."""
        self.epoch = epoch
        set_epoch(self.loader, epoch)
        self.iterator = iter(self.loader)
        for _ in range(1 + self.queue_size):
            batch = self._next_batch()
            if self.device is not None:
                assemble_clips(batch, self.device)
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._workers_cpu = _worker_cpu_seconds(self.iterator)

    def _next_batch(self):
        try:
            return next(self.iterator)
        except StopIteration:  # a small data set: go round again (persistent workers stay)
            set_epoch(self.loader, self.epoch + 1000)
            self.epoch += 1000
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def fetch(self) -> int:
        """One batch; adds the main process's CPU time while fetching it, plus everything this
        side's workers used since its last batch (they may work ahead while the other side is
        measured: that time is theirs and is counted here)."""
        begin = time.process_time()
        batch = self._next_batch()
        if self.device is not None:
            batch = {"clip": assemble_clips(batch, self.device)}
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        main = time.process_time() - begin
        workers = _worker_cpu_seconds(self.iterator)
        if self.cpu is not None and workers is not None and self._workers_cpu is not None:
            self.cpu += main + workers - self._workers_cpu
        else:
            self.cpu = None
        self._workers_cpu = workers
        n = (batch[0] if self.baseline else batch["clip"]).shape[0]
        self.clips += n
        return n


def _alternating_cpu(sides: List[_Side], n_batches: int, repeats: int) -> List[Dict[str, Optional[float]]]:
    """Per-core cost of every side, measured in alternating blocks of ``n_batches`` batches
    (baseline, ours, baseline, ours, ...), so that busy spells of other jobs on a shared machine
    (which slow each CPU second through shared caches and cores) fall on both sides alike. Blocks
    rather than single batches: taking turns batch by batch made both sides ~10% slower (each
    evicts the other's caches), ours a little more. Returns each repeat's clips per CPU second,
    by side."""
    by_repeat: List[Dict[str, Optional[float]]] = []
    for repeat in range(repeats):
        rates: Dict[str, Optional[float]] = {}
        for side in sides:
            side.start(repeat)
            cpu, clips = side.cpu, side.clips
            for _ in range(n_batches):
                side.fetch()
            used = None if side.cpu is None or cpu is None else side.cpu - cpu
            rates[side.name] = (side.clips - clips) / used if used else None
        by_repeat.append(rates)
    return by_repeat


def _ratios(by_repeat: List[Dict[str, Optional[float]]], side: str, reference: str) -> List[float]:
    return [round(r[side] / r[reference], 2) for r in by_repeat if r.get(side) and r.get(reference)]


def _wall_once(side: _Side, n_batches: int) -> Tuple[float, int]:
    """Wall seconds and clips for ``n_batches`` batches of one side alone (after a warm-up)."""
    side.start(10_000)
    clips_before = side.clips
    begin = time.perf_counter()
    for _ in range(n_batches):
        side.fetch()
    return time.perf_counter() - begin, side.clips - clips_before


def _scheme(side: _Side, cfg: DataConfig) -> str:
    if side.baseline:
        return "successor: PIL per frame, crop+resize, flip, ToTensor float, ScaleValue, Normalize, stack"
    if side.device is None:
        return f"resnet3d ({cfg.decoder} decode at a power-of-two DCT scale, crop before resize, uint8)"
    if batched_decoder() is not None:
        decode = "one batched torchvision decode_jpeg" + (" (nvJPEG)" if side.device.type == "cuda" else "") + " call"
    else:
        decode = "simplejpeg frame by frame in the main process (no torchvision)"
    return (f"resnet3d encoded: workers read JPEG bytes and headers; {decode}, full size; crop and antialiased "
            f"resize on {side.device}, uint8")


def _record(wall: Tuple[float, int], cpu: Optional[float], n_clips: int, args, cfg: DataConfig, side: _Side) -> dict:
    """One JSON line. Per-core figures use the CPU time the decoding processes really used when it
    could be read (robust to other load on the machine), else wall time divided by the workers."""
    seconds, wall_clips = wall
    rate = wall_clips / seconds
    per_core = n_clips / cpu if cpu else rate / max(1, args.n_threads)
    baseline = side.baseline
    return {
        "what": "loader",
        "baseline": baseline,
        **({} if baseline else {"decode_device": "cpu" if side.device is None else cfg.decode_device,
                                "assemble_device": None if side.device is None else str(side.device)}),
        "clips_per_s": round(rate, 2),
        "clips_per_s_per_core": round(per_core, 2),
        "frames_per_s_per_core": round(per_core * args.sample_duration, 1),
        "per_core_from": "cpu_time" if cpu else "wall_time",
        "cpu_seconds": round(cpu, 3) if cpu else None,
        "n_clips": n_clips,
        "seconds": round(seconds, 3),
        "n_threads": args.n_threads,
        "batch_size": args.batch_size,
        "sample_size": args.sample_size,
        "sample_duration": args.sample_duration,
        "file_type": args.file_type,
        "train_crop": args.train_crop,
        "repeats": max(1, args.repeat),
        "untimed_batches": 1 + side.queue_size,  # per block: the warm-up and the drained prefetch queue
        "scheme": _scheme(side, cfg),
        **({} if baseline or side.device is not None else {"decode_tolerance": cfg.decode_tolerance,
                                                           "fast_decode": cfg.fast_decode}),
    }


def _assemble_device(args: argparse.Namespace) -> Optional[torch.device]:
    """Where the encoded side assembles its batches; None when there is no encoded side."""
    if args.decode_device == "cpu":
        if args.assemble_device is not None:
            raise UserError("--assemble-device goes with --decode-device cuda (the side that decodes on a device)")
        return None
    device = torch.device(args.assemble_device or args.decode_device)
    if device.type == "cuda":
        check_decode_device("cuda", device)
    elif args.file_type not in ("jpg", "hdf5"):
        raise UserError(f"--decode-device cuda reads JPEG frames: use --file_type jpg or hdf5, not {args.file_type}")
    return device


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)  # one core per decoding process, for both sides
    assemble_on = _assemble_device(args)
    cfg = DataConfig(
        dataset=args.dataset,
        video_path=args.video_path,
        annotation_path=args.annotation_path,
        file_type=args.file_type,
        sample_size=args.sample_size,
        sample_duration=args.sample_duration,
        train_crop=args.train_crop,
        num_workers=args.n_threads,
        **decode_settings(args, decode_device=False),
    )
    for flag, value in (("--n-batches", args.n_batches), ("--batch_size", args.batch_size), ("--repeat", args.repeat)):
        if value < 1:
            raise UserError(f"{flag} must be 1 or more (got {value})")
    dataset = build_dataset(cfg, "training")
    require_videos(len(dataset.videos), cfg.annotation_path, "training", "the loader bench reads training clips")
    if args.batch_size > len(dataset):
        raise UserError(f"--batch_size {args.batch_size} is more than the {len(dataset)} training clips of "
                        f"{cfg.annotation_path}: use at most {len(dataset)}")
    sides = [_Side("ours", _loader(dataset, args), False)]
    if args.baseline:
        if args.file_type != "jpg":
            raise UserError("--baseline re-enacts the originals' JPEG-folder loader: use --file_type jpg")
        sides.insert(0, _Side("baseline", _loader(SuccessorBaseline(dataset, args.sample_size), args), True))
    if assemble_on is not None:
        cfg = cfg.with_changes(decode_device=args.decode_device)
        encoded = build_dataset(cfg, "training")
        sides.append(_Side("encoded", _loader(encoded, args, pin_memory=assemble_on.type == "cuda"), False, assemble_on))
    by_repeat = _alternating_cpu(sides, args.n_batches, max(1, args.repeat))
    per_core = {side.name: (side.cpu, side.clips) for side in sides}
    records = {side.name: _record(_wall_once(side, args.n_batches), *per_core[side.name], args, cfg, side) for side in sides}
    ours = records["ours"]
    if "baseline" in records:
        emit(records["baseline"])
        base = records["baseline"]
        ours["speedup_per_core"] = round(ours["clips_per_s_per_core"] / base["clips_per_s_per_core"], 2)
        ours["speedup_per_core_by_repeat"] = _ratios(by_repeat, "ours", "baseline")
        ours["speedup_wall"] = round(ours["clips_per_s"] / base["clips_per_s"], 2)
    emit(ours)
    if "encoded" in records:
        encoded_record = records["encoded"]
        encoded_record["vs_cpu_decode_per_core"] = round(encoded_record["clips_per_s_per_core"] / ours["clips_per_s_per_core"], 2)
        encoded_record["vs_cpu_decode_per_core_by_repeat"] = _ratios(by_repeat, "encoded", "ours")
        encoded_record["vs_cpu_decode_wall"] = round(encoded_record["clips_per_s"] / ours["clips_per_s"], 2)
        emit(encoded_record)
    return 0


def _loader(dataset, args: argparse.Namespace, pin_memory: Optional[bool] = None):
    return build_loader(dataset, args.batch_size, train=True, num_workers=args.n_threads, seed=0, pin_memory=pin_memory)
