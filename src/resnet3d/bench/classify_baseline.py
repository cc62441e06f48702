"""The companion tool's way of classifying one's own videos, re-enacted for ``bench classify``.

The successor's companion tool (video-classification-3d-cnn-pytorch: ``main.py`` and
``classify.py``) does, for each input video:

1. ``ffmpeg -i VIDEO tmp/image_%05d.jpg``: every frame to a JPEG file in a temporary folder, at
   ffmpeg's default quality (its mjpeg encoder's 200 kb/s rate control, qscale 2-31, full-range
   YUV 4:2:0);
2. a torch DataLoader (``batch_size``, ``num_workers = n_threads``) over the video's clips, each
   frame made by PIL and float tensors (``PilFrameTransform``: open, convert RGB, shorter side to
   ``sample_size``, centre crop, ToTensor with norm value 1, minus the ActivityNet mean);
3. the model in fp32 NCDHW on each batch; softmax scores per clip, collected into the tool's
   record (segment, label, scores);
4. the temporary folder removed.

Without ``--ffmpeg`` no binary is needed: step 1 runs through PyAV's copy of the same FFmpeg
libraries, doing what the command does (decode every frame with frame threads, swscale to
full-range YUV 4:2:0, the mjpeg encoder at the command's defaults and the video's frame rate, one
file per frame). That copy's libavcodec is newer than a distribution's ffmpeg, and its rate control
lands on other qscales (on the generated 640x360 H.264 videos, PyAV 18's FFmpeg 8.1 wrote 7.5 KB
per frame where Debian's ffmpeg 5.1 wrote 5.2 KB, at about the same CPU cost); the baseline's line
gives ``mean_jpeg_bytes`` so that runs can be compared. Rotation metadata is not applied by the PyAV path (ffmpeg's autorotate does).

One departure, so that both sides score the same clips and their labels can be compared clip by
clip: the clips start at frames 1, 1 + sample_duration, ... until one reaches the last frame,
which is loop-padded (``resnet3d.classify.clips.clip_starts``, classify's rule). The tool's
``range(1, n_frames - sample_duration + 1, sample_duration)`` left out the video's last 1 to
``sample_duration`` frames; one clip more per video is at most a few percent of the work.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from resnet3d.bench.pil_frames import PilFrameTransform
from resnet3d.errors import UserError
from resnet3d.normalization import InputNorm

FRAME_NAME = "image_%05d.jpg"
# the image2 muxer's frame rate when the input does not say
DEFAULT_RATE = Fraction(25)


@dataclass(frozen=True)
class CompanionSettings:
    sample_size: int
    sample_duration: int
    batch_size: int
    workers: int  # the tool's --n_threads: DataLoader workers
    input_norm: InputNorm
    ffmpeg: Optional[str] = None  # an ffmpeg binary to extract with; None: PyAV


@dataclass
class Extracted:
    """What the extraction of the pass wrote, summed over its videos."""

    jpeg_files: int = 0
    jpeg_bytes: int = 0


def extract_with_pyav(video: str, folder: str) -> None:
    """``ffmpeg -i VIDEO folder/image_%05d.jpg`` through PyAV: every frame, ffmpeg's defaults."""
    import av

    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # the ffmpeg command decodes with frame and slice threads
        rate = stream.average_rate or DEFAULT_RATE
        encoder = None
        written = 0
        for number, frame in enumerate(container.decode(stream)):
            if encoder is None:
                encoder = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height = frame.width, frame.height
                encoder.pix_fmt = "yuvj420p"  # the command's choice for mjpeg: full-range 4:2:0
                encoder.time_base = 1 / rate  # the rate control spends its bits per second of video
                encoder.framerate = rate
            picture = frame.reformat(width=encoder.width, height=encoder.height, format="yuvj420p")
            picture.pts, picture.time_base = number, encoder.time_base
            written = _write_packets(encoder.encode(picture), folder, written)
        if encoder is not None:
            _write_packets(encoder.encode(None), folder, written)


def _write_packets(packets, folder: str, written: int) -> int:
    for packet in packets:
        written += 1
        with open(os.path.join(folder, FRAME_NAME % written), "wb") as handle:
            handle.write(bytes(packet))
    return written


def extract_with_ffmpeg(binary: str, video: str, folder: str) -> None:
    """The tool's own command (given as a list here: no shell, so any file name works)."""
    done = subprocess.run([binary, "-nostdin", "-i", video, os.path.join(folder, FRAME_NAME)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{video}: the baseline's {binary} failed (exit status {done.returncode}: {last})")


class ExtractedClips(torch.utils.data.Dataset):
    """The tool's ``Video`` data set over one folder of extracted frames: item i is clip i as
    float (C, T, S, S) and its segment ``[first, last]`` (1-based, inclusive)."""

    def __init__(self, folder: str, duration: int, transform: PilFrameTransform) -> None:
        from resnet3d.classify.clips import clip_starts

        self.folder = folder
        self.n_frames = len(os.listdir(folder))  # as the tool counts them
        self.duration = duration
        self.transform = transform
        self.starts = clip_starts(self.n_frames, duration, duration)

    def __len__(self) -> int:
        return len(self.starts) if self.n_frames else 0

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        from resnet3d.data.temporal import loop_pad

        start = self.starts[index]
        last = min(start + self.duration - 1, self.n_frames)
        frames = []
        for number in loop_pad(list(range(start, last + 1)), self.duration):
            path = os.path.join(self.folder, FRAME_NAME % number)
            if not os.path.exists(path):  # the tool's video_loader checks every frame, and stops at a gap
                break
            frames.append(self.transform(path))
        return torch.stack(frames, 0).permute(1, 0, 2, 3), torch.tensor([start, last])


def classify_like_the_companion(videos: Sequence[Tuple[str, str]], model: torch.nn.Module,
                                class_names: Optional[Sequence[str]], device: torch.device,
                                settings: CompanionSettings, workdir: str) -> Tuple[List[Dict[str, Any]], Extracted]:
    """The tool's record of each ``(path, name)`` in ``videos``, and what its extraction wrote.
    ``model``: in eval mode on ``device``, as the tool ran it (fp32, NCDHW, BatchNorm as it is)."""
    from resnet3d.data.loader import WorkerLoader

    transform = PilFrameTransform(settings.sample_size, settings.input_norm)
    extracted = Extracted()
    records = []
    for path, name in videos:
        folder = tempfile.mkdtemp(prefix="tmp-", dir=workdir)
        try:
            if settings.ffmpeg:
                extract_with_ffmpeg(settings.ffmpeg, path, folder)
            else:
                extract_with_pyav(path, folder)
            dataset = ExtractedClips(folder, settings.sample_duration, transform)
            if not dataset.n_frames:
                raise UserError(f"{path}: the baseline's extraction wrote no frame")
            extracted.jpeg_files += dataset.n_frames
            extracted.jpeg_bytes += sum(entry.stat().st_size for entry in os.scandir(folder))
            loader = WorkerLoader(dataset, batch_size=settings.batch_size, shuffle=False,
                                  num_workers=settings.workers, pin_memory=device.type == "cuda")
            outputs, segments = [], []
            with torch.no_grad():  # the tool's Variable(volatile=True)
                for inputs, batch_segments in loader:  # (the workers end with the last batch)
                    outputs.append(torch.softmax(model(inputs.to(device)), dim=1).cpu())
                    segments.append(batch_segments)
            records.append(_record(name, torch.cat(outputs), torch.cat(segments), class_names))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return records, extracted


def _record(name: str, scores: torch.Tensor, segments: torch.Tensor,
            class_names: Optional[Sequence[str]]) -> Dict[str, Any]:
    """The tool's record of one video (classify's, as ``resnet3d.classify`` writes it)."""
    best = scores.argmax(dim=1)
    clips = []
    for row in range(scores.size(0)):
        label = int(best[row])
        clips.append({"segment": segments[row].tolist(),
                      "label": class_names[label] if class_names else str(label),
                      "scores": scores[row].tolist()})
    return {"video": name, "clips": clips}
