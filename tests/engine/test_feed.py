"""resnet3d.engine.feed: batches sent ahead to the device, step numbers read back late.

The CPU cases run everywhere; the CUDA cases (skipped without a GPU) check the two properties the
module exists for, by stream state rather than by timing: the readout of an earlier step does not
wait for work queued after it, and a batch sent on the side stream arrives intact while the
compute stream is busy.
"""
from __future__ import annotations

import math

import pytest
import torch

from resnet3d.engine.feed import DeviceFeed, HostReadout

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SLEEP_CYCLES = 2_000_000_000  # about a second of GPU clock: far longer than the host work below


def _batch():
    return {
        "clip": torch.randint(0, 256, (2, 4, 8, 8, 3), dtype=torch.uint8),
        "target": torch.tensor([1, 3]),
        "flip": torch.tensor([True, False]),
        "video": torch.tensor([5, 6]),
    }


def test_cpu_feed_moves_the_named_keys_only():
    batch = _batch()
    feed = DeviceFeed(torch.device("cpu"), ("clip", "target", "flip", "jitter"))
    sent = feed.ready(feed.send(batch))
    assert set(sent) == {"clip", "target", "flip"}  # "jitter" is absent from the batch, "video" not asked for
    assert torch.equal(sent["clip"], batch["clip"]) and torch.equal(sent["target"], batch["target"])


def test_cpu_readout_gives_the_numbers_as_floats():
    readout = HostReadout([torch.tensor(2.5), torch.tensor(7), torch.tensor(float("nan"))])
    loss, correct, bad = readout.values()
    assert (loss, correct) == (2.5, 7.0) and math.isnan(bad)


@cuda
def test_cuda_readout_waits_for_its_own_step_only():
    device = torch.device("cuda")
    loss = torch.full((), 3.25, device=device) * 2
    readout = HostReadout([loss, torch.tensor(11, device=device)])
    torch.cuda._sleep(SLEEP_CYCLES)  # the next step, still running when we read
    assert readout.values() == [6.5, 11.0]
    assert not torch.cuda.current_stream().query(), "the readout waited for work queued after it"
    torch.cuda.synchronize()


@cuda
def test_cuda_feed_copies_on_a_side_stream_while_the_compute_stream_is_busy():
    device = torch.device("cuda")
    batch = {key: value.pin_memory() for key, value in _batch().items()}
    feed = DeviceFeed(device, ("clip", "target", "flip"))
    torch.cuda._sleep(SLEEP_CYCLES)  # the running step
    sent = feed.send(batch)
    feed.stream.synchronize()  # the copy finished ...
    assert not torch.cuda.current_stream().query()  # ... while the compute stream is still busy
    on_device = feed.ready(sent)
    assert all(tensor.device.type == "cuda" for tensor in on_device.values())
    assert torch.equal(on_device["clip"].cpu(), batch["clip"])
    assert torch.equal(on_device["flip"].cpu(), batch["flip"])
    torch.cuda.synchronize()


@cuda
def test_every_feed_of_a_gpu_shares_one_side_stream():
    """A stream per feed (per epoch, per validation pass) would hold its own cached blocks."""
    first = DeviceFeed(torch.device("cuda"), ("clip",))
    second = DeviceFeed(torch.device("cuda", torch.cuda.current_device()), ("clip",))
    assert first.stream is second.stream and first.stream != torch.cuda.current_stream()


def test_an_epoch_of_jpeg_byte_batches_decodes_them_in_the_feed(tmp_path):
    """decode_device "cuda" batches (JPEG bytes; assembled on the CPU here) train through the same
    loop: the clips are decoded in ``DeviceFeed.send``, and a frame that fails to decode there is
    counted in the epoch's bad frames."""
    from resnet3d.data import DataConfig, DeviceTransform, build_dataset, build_loader
    from resnet3d.engine.loop import StepParts, train_one_epoch
    from resnet3d.engine.schedules import Schedule
    from resnet3d.models import create_model
    from resnet3d.normalization import KINETICS
    from resnet3d.synthetic import make_action_dataset

    info = make_action_dataset(str(tmp_path), n_classes=2, videos_per_class=4, n_frames=6, size=(32, 40), val_share=0.0)
    damaged = sorted((tmp_path / "jpg").rglob("image_00003.jpg"))[0]
    damaged.write_bytes(damaged.read_bytes()[:200])  # a valid header, then nothing: fails only when decoded
    cfg = DataConfig(dataset=info.dataset, video_path=info.jpg_path, annotation_path=info.annotation_path,
                     sample_size=16, sample_duration=6, num_workers=0, decode_device="cuda")
    loader = build_loader(build_dataset(cfg, "training", seed=0), 4, train=True, num_workers=0, seed=0, drop_last=True)
    assert "jpeg" in next(iter(loader)) and "clip" not in next(iter(loader))
    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=2, widen_factor=0.125)
    parts = StepParts(model=model, eval_model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                      scaler=None, device=torch.device("cpu"), amp_dtype=None,
                      train_transform=DeviceTransform(KINETICS, train=True),
                      eval_transform=DeviceTransform(KINETICS))
    result = train_one_epoch(parts, loader, 1, Schedule(0.01, 0.0), len(loader), show_progress=False)
    assert result.count == 8 and math.isfinite(result.loss)
    assert result.bad_frames >= 1  # the damaged frame's clip, every time it is drawn
