"""``resnet3d train`` on CUDA: bf16 autocast with channels_last_3d, fp16 with a GradScaler,
continuing on CUDA, a CUDA checkpoint continued on the CPU and a CPU one on CUDA; and one
training step that is queued without the host waiting for the GPU.

The runs are in this process (``resnet3d.cli.main``: no second torch import or CUDA start-up),
except ``--deterministic``, which sets process-wide switches.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from gpu_helpers import (
    CUDA,
    TINY_CLIP,
    TINY_MODEL,
    data_flags,
    describe,
    in_process,
    max_difference,
    read_checkpoint,
    requires_cuda,
    resnet3d,
)

from resnet3d.engine.logs import read_log

pytestmark = [requires_cuda, pytest.mark.slow]

# 8 training videos in batches of 4: two steps per epoch; loader workers, so batches come
# through pinned memory; the flip and colour jitter drawn per clip and applied on the device.
RUN = [*TINY_MODEL, *TINY_CLIP, "--n-classes", "4", "--batch-size", "4", "--workers", "2", "--lr", "0.01",
       "--scheduler", "constant", "--colorjitter", "--no-curves", "--checkpoint-every", "1", "--seed", "1"]
STEPS_PER_EPOCH = 2


def _train(info, result_path, *flags) -> None:
    status = in_process("train", *data_flags(info), *RUN, "--result-path", result_path, *flags)
    assert status == 0, f"resnet3d train {' '.join(map(str, flags))} exited {status} (its error: captured stderr)"


def _used(result_path):
    """What the run got (opts.json's "used"): device, processes, precision, memory format."""
    used = json.loads((result_path / "opts.json").read_text())["used"]
    return {key: used.get(key) for key in ("device", "processes", "precision", "channels_last")}


def _finite_losses(result_path, epochs):
    train, val = read_log(result_path / "train.log"), read_log(result_path / "val.log")
    assert [int(row["epoch"]) for row in train] == list(range(1, epochs + 1))
    assert [int(row["epoch"]) for row in val] == list(range(1, epochs + 1))
    losses = [float(row["loss"]) for row in train + val]
    assert all(math.isfinite(loss) for loss in losses), losses
    return train


def _check_checkpoint(path, epoch):
    saved = read_checkpoint(path)
    assert saved["format"] == "resnet3d" and saved["epoch"] == epoch and saved["arch"] == "resnet-10"
    weights = saved["state_dict"]
    assert all(t.device.type == "cpu" for t in weights.values())  # map_location="cpu" read it
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
    # master weights stay float32 under autocast
    assert {t.dtype for k, t in weights.items() if not k.endswith("num_batches_tracked")} == {torch.float32}
    momentum = [s["momentum_buffer"] for s in saved["optimizer"]["state"].values()]
    assert momentum and all(bool(torch.isfinite(m).all()) for m in momentum)
    return saved


def test_bf16_channels_last_run_continues_on_cuda_then_on_the_cpu(gpu_motion, tmp_path):
    out = tmp_path / "bf16"
    _train(gpu_motion, out, "--device", "cuda", "--epochs", 2)
    assert _used(out) == {"device": "cuda:0", "processes": 1, "precision": "bf16", "channels_last": True}
    first = _finite_losses(out, 2)
    one, two = _check_checkpoint(out / "model_1.pth", 1), _check_checkpoint(out / "model_2.pth", 2)
    assert max_difference(one["state_dict"], two["state_dict"]) > 0  # the second epoch trained
    assert two["rng_state"]["cuda"]  # the CUDA generator's state travels with the run

    _train(gpu_motion, out, "--device", "cuda", "--epochs", 3, "--resume", "auto")
    assert _used(out)["device"] == "cuda:0"
    train = _finite_losses(out, 3)
    assert train[:2] == first  # the earlier epochs' rows are kept as they were
    three = _check_checkpoint(out / "model_3.pth", 3)
    assert max_difference(two["state_dict"], three["state_dict"]) > 0

    # a checkpoint written from CUDA (channels_last_3d weights, CUDA RNG state) continues on the CPU
    _train(gpu_motion, out, "--device", "cpu", "--epochs", 4, "--resume", "auto")
    assert _used(out) == {"device": "cpu", "processes": 1, "precision": "fp32", "channels_last": False}
    _finite_losses(out, 4)
    four = _check_checkpoint(out / "model_4.pth", 4)
    assert max_difference(three["state_dict"], four["state_dict"]) > 0


def test_cpu_checkpoint_continues_on_cuda_in_fp16_with_its_grad_scaler(gpu_motion, tmp_path):
    out = tmp_path / "fp16"
    _train(gpu_motion, out, "--device", "cpu", "--epochs", 1)
    assert _used(out)["device"] == "cpu"
    _train(gpu_motion, out, "--device", "cuda", "--precision", "fp16", "--epochs", 2, "--resume", "auto")
    assert _used(out) == {"device": "cuda:0", "processes": 1, "precision": "fp16", "channels_last": True}
    _finite_losses(out, 2)
    two = _check_checkpoint(out / "model_2.pth", 2)
    scaler = two["scaler"]
    assert isinstance(scaler, dict) and math.isfinite(scaler["scale"]) and scaler["scale"] > 0

    _train(gpu_motion, out, "--device", "cuda", "--precision", "fp16", "--epochs", 3, "--resume", "auto")
    _finite_losses(out, 3)
    continued = _check_checkpoint(out / "model_3.pth", 3)["scaler"]
    # The scaler went on from the saved one: without an overflow its scale stays and its count of
    # good steps grows by this epoch's steps; a fresh scaler would start again at 65536 and 0.
    if continued["scale"] == scaler["scale"]:
        assert continued["_growth_tracker"] == scaler["_growth_tracker"] + STEPS_PER_EPOCH, (scaler, continued)
    else:
        assert continued["scale"] < scaler["scale"], (scaler, continued)  # overflows only lower it


def _pinned_batch(n=4, seed=0):
    """A training batch as the loader hands it over: uint8 clips and the per-clip draws, pinned."""
    from resnet3d.data.device import draw_augmentation
    from resnet3d.synthetic import render_video

    rng = np.random.default_rng(seed)
    clips = torch.from_numpy(np.stack([render_video(i % 4, 8, (32, 32), rng) for i in range(n)]))
    draws = [draw_augmentation(random.Random(seed * 100 + i), (0.4, 0.4, 0.4, 0.1)) for i in range(n)]
    batch = {"clip": clips, "target": torch.arange(n) % 4, "flip": torch.tensor([f for f, _ in draws]),
             "jitter": torch.stack([j for _, j in draws])}
    return {key: value.pin_memory() for key, value in batch.items()}


def test_a_bf16_training_step_is_queued_without_waiting_for_the_gpu():
    """The loop's promise (engine.loop, engine.feed): the batch is copied on a side stream, the
    step is queued, and its numbers are copied back behind it; the host waits only when it reads
    them, a step later. Any host sync in between (a tensor made from Python numbers on the GPU,
    a data-dependent branch, an .item()) raises in torch's sync debug mode."""
    from resnet3d.data.device import DeviceTransform
    from resnet3d.engine.feed import DeviceFeed, HostReadout
    from resnet3d.engine.loop import StepParts, train_step
    from resnet3d.models import create_model
    from resnet3d.normalization import KINETICS

    torch.manual_seed(0)
    model = create_model("resnet", 10, widen_factor=0.25, n_classes=4)
    model = model.to(CUDA).to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    parts = StepParts(model=model, eval_model=model, optimizer=optimizer, scaler=None, device=CUDA,
                      amp_dtype=torch.bfloat16,
                      train_transform=DeviceTransform(KINETICS, train=True, hflip=True, colorjitter=True),
                      eval_transform=DeviceTransform(KINETICS), channels_last=True)
    batch = _pinned_batch()
    feed = DeviceFeed(CUDA, ("clip", "target", "flip", "jitter"))

    def step():
        on_device = feed.ready(feed.send(batch))
        clips, targets = on_device.pop("clip"), on_device.pop("target")
        return HostReadout(train_step(parts, clips, targets, on_device))

    # warm-up, the same pattern as below (two readouts alive at once): cuDNN's algorithm choice,
    # the device and pinned-memory allocators' blocks, the transform's constants
    for _ in range(2):
        for readout in [step() for _ in range(2)]:
            readout.values()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        readouts = [step() for _ in range(2)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for readout in readouts:
        loss_sum, correct = readout.values()
        assert math.isfinite(loss_sum) and 0 <= correct <= 4


def test_deterministic_on_cuda_trains_or_says_why_not(gpu_motion, tmp_path):
    """--deterministic turns on torch.use_deterministic_algorithms: on CUDA some operations of the
    models (AdaptiveAvgPool3d's backward, among others) have no deterministic kernel and raise.
    The run must train, or end with one line naming the flag, never with torch's traceback."""
    done = resnet3d("train", *data_flags(gpu_motion), *RUN, "--result-path", tmp_path / "det", "--device", "cuda",
                    "--epochs", 1, "--deterministic")
    assert "Traceback" not in done.stderr, describe(done)
    if done.returncode != 0:
        assert done.returncode == 2 and "--deterministic" in done.stderr, describe(done)
    else:
        _finite_losses(tmp_path / "det", 1)


def test_training_with_jpeg_decoding_on_the_gpu(gpu_motion, tmp_path):
    """--decode-device cuda: workers hand over JPEG bytes, nvJPEG (torchvision) or, without
    torchvision, simplejpeg in the main process decodes each batch; the run trains, validates and
    records the setting; continuing it on the CPU needs --decode-device cpu, and works with it."""
    out = tmp_path / "gpu-decode"
    _train(gpu_motion, out, "--device", "cuda", "--epochs", 1, "--decode-device", "cuda")
    assert json.loads((out / "opts.json").read_text())["data"]["decode_device"] == "cuda"
    _finite_losses(out, 1)
    _check_checkpoint(out / "model_1.pth", 1)
    _train(gpu_motion, out, "--device", "cpu", "--epochs", 2, "--resume", "auto", "--decode-device", "cpu")
    _finite_losses(out, 2)


def test_training_with_the_workers_and_the_gpu_decoding_side_by_side(gpu_motion, tmp_path):
    """--decode-device mixed: batches of pixels from the workers and batches of JPEG bytes decoded
    in the feed's thread on the GPU, in one run; it trains, validates and records the setting."""
    out = tmp_path / "mixed-decode"
    _train(gpu_motion, out, "--device", "cuda", "--epochs", 2, "--decode-device", "mixed")
    assert json.loads((out / "opts.json").read_text())["data"]["decode_device"] == "mixed"
    _finite_losses(out, 2)
    _check_checkpoint(out / "model_2.pth", 2)


@pytest.mark.parametrize("writer_channels_last", [False, True], ids=["contiguous-writer", "channels-last-writer"])
def test_fused_sgd_continues_momentum_saved_in_the_other_memory_format(writer_channels_last):
    """CUDA's fused SGD kernel refuses momentum buffers whose strides differ from their parameter's
    (a CPU run's checkpoint continued in channels_last_3d, or the reverse): load_optimizer_state
    lays them out as the parameters. The continued step equals the for-loop kernel's from the same
    state (which takes any strides), on the same model and batch."""
    import copy

    from torch import nn

    from resnet3d.config import OptimConfig
    from resnet3d.engine.optim import build_optimizer, load_optimizer_state, sgd_kernel_name
    from resnet3d.models import create_model

    def model_in(channels_last):
        torch.manual_seed(0)
        model = create_model("resnet", 10, widen_factor=0.25, n_classes=4).to(CUDA)
        return model.to(memory_format=torch.channels_last_3d) if channels_last else model

    clips = torch.randn(2, 3, 8, 32, 32, device=CUDA)
    targets = torch.tensor([1, 3], device=CUDA)

    def step(model, optimizer):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(clips), targets).backward()
        optimizer.step()

    def sgd(model, **kernel):
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, **kernel)

    writer = model_in(writer_channels_last)
    written = sgd(writer, foreach=False)
    step(writer, written)
    saved = copy.deepcopy(written.state_dict())  # (as a checkpoint: nothing shared with the writer)

    reader = model_in(not writer_channels_last)
    reader.load_state_dict(writer.state_dict())
    plain = copy.deepcopy(reader)
    fused = build_optimizer(reader.parameters(), OptimConfig(learning_rate=0.05))
    assert sgd_kernel_name(fused) == "fused"
    load_optimizer_state(fused, saved)
    loop = sgd(plain, foreach=False)
    loop.load_state_dict(copy.deepcopy(saved))
    step(reader, fused)
    step(plain, loop)
    weights = [{name: p.detach() for name, p in model.named_parameters()} for model in (reader, plain)]
    difference = max_difference(*weights)
    assert difference <= 1e-5, difference  # two kernels' rounding; mixed-up elements move weights by ~1e-2
