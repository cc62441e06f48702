"""Recognition on CUDA against the CPU: ``resnet3d test`` gives the same top-1 labels and close
scores, through the pinned batches filled across videos and the one-batch-in-flight scorer.

Tolerances, on the softmax probabilities that the results file holds (mean over 4 windows):
- bf16 autocast keeps 8 significant bits: every convolution's inputs and weights are rounded to
  a relative 2^-9 (0.2%), with float32 accumulation; over the 10 layers of ResNet-10 a logit
  moves by about 1% of its size. This model's logits lie within +-2.1, so a probability moves by
  at most p(1-p) x 2 x 0.021 ~ 0.01. The CPU's own bf16 autocast (the same rounding, other
  kernels) measured 0.002 per window and 0.001 per video on this model and data.
  BF16_TOLERANCE = 0.03 leaves room for cuDNN's other summation orders; the test records what
  CUDA gave (``record``).
- float32 on CUDA convolves in TF32 by default (10 significant bits, 8x finer than bf16):
  FP32_TOLERANCE = 0.01.
- ``--decode-device cuda`` against decoding in the workers, both on CUDA in fp32: nvJPEG's IDCT
  and chroma upsampling differ from libjpeg-turbo's fast mode by a few grey levels (docs/data.md,
  "Pixels"); on the CPU, the exact full-size decode against the fast mode moved this kind of
  model's probabilities by at most 0.0098 (tests/predict/test_predict_gpu_decode.py), and TF32
  adds up to FP32_TOLERANCE: NVJPEG_TOLERANCE = 0.03.
Top-1 labels must agree wherever the CPU's top two probabilities lie more than twice the
tolerance apart (closer ones may legitimately swap); the model is built so that most videos do.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gpu_helpers import CPU, CUDA, in_process, record, requires_cuda

pytestmark = [requires_cuda, pytest.mark.slow]

BF16_TOLERANCE = 0.03
FP32_TOLERANCE = 0.01
NVJPEG_TOLERANCE = 0.03
FC_SCALE = 8.0  # spreads the logits so that most videos get a clear top-1 (see decisive_model)


def decisive_model():
    """ResNet-10 (widen 0.5) with fixed random weights, BatchNorm statistics of plausible size
    (fresh ones, mean 0 and variance 1, would leave every layer's output unnormalised), and a
    classifier scaled up so that the class probabilities are far from uniform."""
    from resnet3d.models import create_model

    torch.manual_seed(3)
    model = create_model("resnet", 10, widen_factor=0.5, n_classes=4)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm3d):
                layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
        model.fc.weight.mul_(FC_SCALE)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, gpu_motion):
    from resnet3d.engine.checkpoint import save_checkpoint
    from resnet3d.normalization import KINETICS

    model = decisive_model()
    path = tmp_path_factory.mktemp("gpu-ckpt") / "model_best.pth"
    save_checkpoint(path, {"epoch": 1, "arch": "resnet-10", "model_config": model.model_config,
                           "state_dict": model.state_dict(), "optimizer": None, "scheduler": None,
                           "class_names": list(gpu_motion.class_names), "input_norm": KINETICS.to_dict(),
                           "sample_size": 32, "sample_duration": 8})
    return path


def _recognise(info, checkpoint, output, *flags):
    status = in_process("test", "--weights", checkpoint, "--video-path", info.jpg_path, "--annotation-path",
                        info.annotation_path, "--subset", "val", "--stride", 4, "--top-k", 4, "--batch-size", 5,
                        "--workers", 2, "--output", output, "--quiet", *flags)
    assert status == 0, f"resnet3d test {' '.join(map(str, flags))} exited {status}"
    results = json.loads(output.read_text())["results"]
    assert len(results) == 8
    return {video: {entry["label"]: entry["score"] for entry in entries} for video, entries in results.items()}


def _compare(got, want, tolerance, test):
    labels = sorted(next(iter(want.values())))
    difference, agreeing, decisive = 0.0, 0, 0
    for video, scores in want.items():
        assert sorted(got[video]) == labels  # all four classes, the annotation's names
        difference = max(difference, max(abs(got[video][label] - scores[label]) for label in labels))
        ranked = sorted(scores.values(), reverse=True)
        if ranked[0] - ranked[1] > 2 * tolerance:
            decisive += 1
            top = max(scores, key=scores.get)
            agreeing += max(got[video], key=got[video].get) == top
    record(test, max_abs_difference=difference, tolerance=tolerance, decisive_videos=decisive, videos=len(want))
    assert difference <= tolerance, difference
    assert decisive >= len(want) // 2, f"only {decisive} of {len(want)} videos have a clear top-1"
    assert agreeing == decisive


@pytest.fixture(scope="module")
def on_cpu(gpu_motion, checkpoint, tmp_path_factory):
    return _recognise(gpu_motion, checkpoint, tmp_path_factory.mktemp("gpu-rec") / "cpu.json", "--device", "cpu")


def test_bf16_recognition_on_cuda_matches_the_cpu(gpu_motion, checkpoint, on_cpu, tmp_path, capsys):
    output = tmp_path / "cuda.json"
    on_cuda = _recognise(gpu_motion, checkpoint, output, "--device", "cuda")  # auto: bf16, channels_last_3d
    _compare(on_cuda, on_cpu, BF16_TOLERANCE, "recognition_bf16_vs_cpu")
    # the settings digest does not depend on the device or memory format: the CPU continues the file
    capsys.readouterr()
    assert _recognise(gpu_motion, checkpoint, output, "--device", "cpu", "--resume") == on_cuda
    assert "resuming: 8 videos already have results" in capsys.readouterr().err


def test_fp32_recognition_on_cuda_matches_the_cpu(gpu_motion, checkpoint, on_cpu, tmp_path):
    on_cuda = _recognise(gpu_motion, checkpoint, tmp_path / "cuda32.json", "--device", "cuda", "--precision", "fp32")
    _compare(on_cuda, on_cpu, FP32_TOLERANCE, "recognition_fp32_vs_cpu")


def test_recognition_decoding_on_the_gpu_matches_decoding_in_the_workers(gpu_motion, checkpoint, tmp_path):
    """``resnet3d test --decode-device cuda``: the workers hand over JPEG bytes, each chunk is
    decoded by one batched nvJPEG call (torchvision), cropped and resized on the GPU, and batches
    are joined there; the results match the workers' libjpeg-turbo decoding."""
    from resnet3d.data.gpu_decode import batched_decoder

    flags = ("--device", "cuda", "--precision", "fp32")
    in_workers = _recognise(gpu_motion, checkpoint, tmp_path / "workers.json", *flags)
    on_gpu = _recognise(gpu_motion, checkpoint, tmp_path / "nvjpeg.json", *flags, "--decode-device", "cuda")
    record("recognition_nvjpeg_torchvision", torchvision=batched_decoder() is not None)
    _compare(on_gpu, in_workers, NVJPEG_TOLERANCE, "recognition_nvjpeg_vs_worker_decode")


def _chunks(seed=0):
    """Views of two videos as workers hand them over: uint8 (rows, T, H, W, C) per video."""
    from resnet3d.synthetic import render_video

    rng = np.random.default_rng(seed)
    return [torch.from_numpy(np.stack([render_video(video, 8, (32, 32), rng) for _ in range(rows)]))
            for video, rows in ((0, 4), (2, 3))]


def test_scorer_keeps_one_batch_in_flight_from_pinned_batches():
    from resnet3d.data.device import DeviceTransform
    from resnet3d.engine.scoring import RowBatcher, Scorer, prepare_model
    from resnet3d.normalization import KINETICS

    batcher = RowBatcher(3, pin_memory=True)
    for unit, rows in enumerate(_chunks()):
        batcher.add(unit, rows, torch.arange(len(rows)), torch.zeros(len(rows), 2, dtype=torch.int64))
    batches = list(batcher.batches(flush=True))
    assert [len(rows) for rows, _ in batches] == [3, 3, 1]
    assert batches[1][1]["unit"].tolist() == [0, 1, 1]  # a batch filled across videos
    assert all(rows.is_pinned() for rows, _ in batches)

    transform = DeviceTransform(KINETICS, train=False)
    gpu = Scorer(prepare_model(decisive_model(), CUDA, channels_last=True), transform, CUDA, torch.bfloat16)
    cpu = Scorer(prepare_model(decisive_model(), CPU, channels_last=False), transform, CPU)
    assert gpu.submit(*batches[0]) == []  # in flight: nothing is ready yet
    ready = gpu.submit(*batches[1])  # the first batch is collected behind the second
    assert len(ready) == 1 and ready[0][1] is batches[0][1]
    ready += gpu.submit(*batches[2]) + gpu.drain()
    assert len(ready) == 3 and all(got is want for (_, got), (_, want) in zip(ready, batches)) and gpu.calls == 3
    for (scores, _), (rows, meta) in zip(ready, batches):
        assert scores.device.type == "cpu" and scores.is_pinned() and scores.shape == (len(rows), 4)
        want = cpu.submit(rows, meta)[0][0]
        assert float((scores - want).abs().max()) <= BF16_TOLERANCE

    # submitting a batch does not wait for the GPU (the copy back is collected a batch later)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        assert gpu.submit(*batches[0]) == []
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(gpu.drain()) == 1


def test_classify_batches_are_pinned_for_the_gpu_and_hold_the_same_clips(tmp_path):
    from resnet3d.classify import ClassifyOptions, clip_batches
    from resnet3d.synthetic import write_mp4

    frames = np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    video = tmp_path / "a.mp4"
    write_mp4(video, frames)
    options = ClassifyOptions(sample_size=32, sample_duration=8, batch_size=3)
    plain = list(clip_batches(str(video), options, []))
    pinned = list(clip_batches(str(video), ClassifyOptions(**{**options.__dict__, "pin_memory": True}), []))
    assert [len(clips) for clips, _ in pinned] == [len(clips) for clips, _ in plain] == [3, 2]
    assert all(clips.is_pinned() for clips, _ in pinned) and not any(clips.is_pinned() for clips, _ in plain)
    assert all(torch.equal(a, b) and sa == sb for (a, sa), (b, sb) in zip(plain, pinned))
