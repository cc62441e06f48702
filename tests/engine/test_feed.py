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

from resnet3d.engine.feed import AHEAD, DeviceFeed, HostReadout

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


# -- DeviceFeed.batches: batches in flight, JPEG bytes decoded in the decode thread ---------------


class _Recorded:
    """An iterable of batches that records how many were taken, and when each was handed out."""

    def __init__(self, batches):
        self.batches = batches
        self.taken = 0

    def __iter__(self):
        for batch in self.batches:
            self.taken += 1
            yield batch


def test_batches_come_in_order_with_the_next_one_already_sent():
    source = _Recorded([{**_batch(), "target": torch.tensor([n, n])} for n in range(5)])
    feed = DeviceFeed(torch.device("cpu"), ("clip", "target"))
    seen = []
    for batch, on_device, waited in feed.batches(source):
        seen.append(int(on_device["target"][0]))
        assert on_device["target"] is not None and waited >= 0
        assert source.taken == min(len(seen) + AHEAD - 1, 5)  # the step's batch, and the next ones under way
    assert seen == [0, 1, 2, 3, 4]


def test_the_seconds_waited_count_the_loader():
    import time

    def slow():
        time.sleep(0.05)
        yield _batch()

    (_, _, waited), = list(DeviceFeed(torch.device("cpu"), ("clip",)).batches(slow()))
    assert waited >= 0.05


def _jpeg_batch(n: int) -> dict:
    return {"jpeg": torch.zeros(4, dtype=torch.uint8), "target": torch.tensor([n]), "bad_frames": torch.zeros(1)}


def test_jpeg_byte_batches_are_decoded_in_the_decode_thread_and_others_in_the_caller(monkeypatch):
    import threading

    import resnet3d.data as data

    where = {}  # the batch's first target -> the thread that made its clips

    def assemble(batch, device, non_blocking=True):
        where[int(batch["target"][0])] = threading.current_thread().name
        if "jpeg" in batch:
            batch["bad_frames"] += 1  # as assemble_clips counts frames that did not decode
            return torch.full((1, 2, 4, 4, 3), int(batch["target"][0]), dtype=torch.uint8)
        return batch["clip"]

    monkeypatch.setattr(data, "clips_to_device", assemble)
    feed = DeviceFeed(torch.device("cpu"), ("clip", "target"))
    out = [(int(on_device["clip"][0, 0, 0, 0, 0]), float(batch["bad_frames"][0]) if "jpeg" in batch else None)
           for batch, on_device, _ in feed.batches([_jpeg_batch(7), _batch(), _jpeg_batch(9)])]
    assert out[0] == (7, 1.0) and out[2] == (9, 1.0)  # counts changed by decoding are read after it
    assert where[7].startswith("resnet3d-decode") and where[9].startswith("resnet3d-decode")
    assert where[1] == threading.current_thread().name  # _batch()'s target starts with 1


def test_a_decoding_failure_surfaces_in_the_loop_as_itself(monkeypatch):
    import resnet3d.data as data
    from resnet3d.errors import UserError

    def assemble(batch, device, non_blocking=True):
        raise UserError("no frame of this batch decodes (the first: a/image_00001.jpg); check the JPEG files")

    monkeypatch.setattr(data, "clips_to_device", assemble)
    feed = DeviceFeed(torch.device("cpu"), ("clip", "target"))
    with pytest.raises(UserError, match="no frame of this batch decodes"):
        list(feed.batches([_jpeg_batch(1)]))


def test_leaving_early_drops_the_batches_in_flight(monkeypatch):
    import contextlib

    import resnet3d.data as data

    monkeypatch.setattr(data, "clips_to_device", lambda batch, device, non_blocking=True: torch.zeros(1, dtype=torch.uint8))
    source = _Recorded([_jpeg_batch(n) for n in range(10)])
    with contextlib.closing(DeviceFeed(torch.device("cpu"), ("clip", "target")).batches(source)) as fed:
        for _ in fed:
            break
    assert source.taken == AHEAD  # the one used and those in flight; nothing more is read


@cuda
def test_cuda_batches_decoded_in_the_thread_equal_those_decoded_in_the_caller(tmp_path):
    """The decoding thread sets the device and the side stream itself (both are per thread): its
    clips match the same batches assembled in the calling thread, while the compute stream is busy."""
    from resnet3d.data import DataConfig, build_dataset, build_loader
    from resnet3d.data.gpu_decode import assemble_clips
    from resnet3d.synthetic import make_action_dataset

    info = make_action_dataset(str(tmp_path), n_classes=2, videos_per_class=4, n_frames=6, size=(32, 40), val_share=0.0)
    cfg = DataConfig(dataset=info.dataset, video_path=info.jpg_path, annotation_path=info.annotation_path,
                     sample_size=16, sample_duration=6, num_workers=0, decode_device="cuda")
    batches = list(build_loader(build_dataset(cfg, "training", seed=0), 4, train=True, num_workers=0, seed=0))
    device = torch.device("cuda", torch.cuda.current_device())
    wanted = [assemble_clips(dict(batch), device).cpu() for batch in batches]
    feed = DeviceFeed(torch.device("cuda"), ("clip", "target"))
    torch.cuda._sleep(SLEEP_CYCLES // 4)  # a step still running
    got = [on_device["clip"].cpu() for _, on_device, _ in feed.batches(batches)]
    assert len(got) == len(wanted) and all(torch.equal(a, b) for a, b in zip(got, wanted))
    torch.cuda.synchronize()


def test_a_mixed_epoch_trains_on_batches_of_both_kinds_with_real_workers(tmp_path):
    """decode_device "mixed" through the training loop: two worker processes hand over batches of
    pixels and batches of JPEG bytes (the latter decoded in the feed's thread, on the CPU here),
    every clip counts, and the loop reports its waits to the loader's share."""
    from resnet3d.data import DataConfig, DeviceTransform, build_dataset, build_loader
    from resnet3d.data.loader import decode_share_of
    from resnet3d.engine.loop import StepParts, train_one_epoch
    from resnet3d.engine.schedules import Schedule
    from resnet3d.models import create_model
    from resnet3d.normalization import KINETICS
    from resnet3d.synthetic import make_action_dataset

    info = make_action_dataset(str(tmp_path), n_classes=2, videos_per_class=8, n_frames=6, size=(32, 40), val_share=0.0)
    cfg = DataConfig(dataset=info.dataset, video_path=info.jpg_path, annotation_path=info.annotation_path,
                     sample_size=16, sample_duration=6, num_workers=2, decode_device="mixed")
    loader = build_loader(build_dataset(cfg, "training", seed=0), 2, train=True, num_workers=2, seed=0, drop_last=True)
    share = decode_share_of(loader)
    share.share = 0.5
    observed = []
    real_observe = share.observe
    share.observe = lambda *waits: observed.append(waits) or real_observe(*waits)

    class Recording:
        """The loader, noting which kind each batch is."""

        kinds = []

        def __iter__(self):
            for batch in loader:
                self.kinds.append("jpeg" if "jpeg" in batch else "clip")
                yield batch

    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=2, widen_factor=0.125)
    parts = StepParts(model=model, eval_model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                      scaler=None, device=torch.device("cpu"), amp_dtype=None,
                      train_transform=DeviceTransform(KINETICS, train=True), eval_transform=DeviceTransform(KINETICS))
    batches = Recording()
    try:
        result = train_one_epoch(parts, batches, 1, Schedule(0.01, 0.0), len(loader), show_progress=False,
                                 decode_share=share)
    finally:  # (the patched share keeps the loader in a reference cycle: its workers would outlive the test)
        from resnet3d.data.loader import release_workers

        release_workers(loader)
    assert result.count == 16 and math.isfinite(result.loss)
    assert set(batches.kinds) == {"jpeg", "clip"}
    assert len(observed) == len(loader) - 1 and all(w >= 0 for waits in observed for w in waits)


def test_a_loader_error_comes_after_the_batches_fetched_before_it():
    """The feed fetches AHEAD batches before handing over the first: a loader that failed at the
    third batch raised before the first step, and the steps a run keeps when its data gives out
    (an interrupted epoch) were lost."""

    def loader():
        for value in range(2):
            yield {"clip": torch.full((1,), value)}
        raise RuntimeError("DataLoader worker (pid 1234) is killed by signal: Killed.")

    handed = []
    with pytest.raises(RuntimeError, match="is killed by signal"):
        for batch, on_device, _ in DeviceFeed(torch.device("cpu"), ["clip"]).batches(loader()):
            handed.append(int(on_device["clip"]))
    assert handed == [0, 1]
