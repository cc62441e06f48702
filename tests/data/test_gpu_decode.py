"""decode_device "cuda": items of JPEG bytes, assembled into clips on a device (here the CPU).

The encoded path must choose the CPU path's frames, boxes and stand-ins, and its clips must match
the CPU path's pixels up to what the decoders differ by. Measured on these generated frames over
8 epochs of every item (2026-11-26): where the CPU path decodes at full size in its exact mode,
the two differ by at most 1 grey level (mean <= 0.19, PSNR >= 55 dB; the only difference is torch's
fixed-point uint8 resize against our float32 one, each rounding once); with libjpeg-turbo's fast
IDCT and upsampling (the CPU path's default) by at most 5 (mean <= 0.97, PSNR >= 46 dB); where the
CPU path decodes at 1/2 scale (crop >= 2x the output) the crop edges it can cut move by up to a
source pixel, which on these sharp-edged discs and tiny crops gives PSNR 29-40 dB (mean <= 4.8).
The bounds below leave a margin over those figures.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
import types

import numpy as np
import pytest
import torch

from resnet3d.data import DataConfig, batch_counters, build_dataset, build_loader, set_epoch
from resnet3d.data import dataset as dataset_module
from resnet3d.data import gpu_decode
from resnet3d.data.gpu_decode import assemble_clips, check_decode_device, clips_to_device
from resnet3d.data.loader import collate
from resnet3d.errors import UserError

from data_helpers import write_frames, write_json


def _config(motion_set, **changes) -> DataConfig:
    values = dict(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=24,
                  sample_duration=4, decode_tolerance=1.0, fast_decode=False, num_workers=0)
    values.update(changes)
    return DataConfig(**values)


def _pair(cfg: DataConfig, **kwargs):
    """The CPU-decode dataset and the encoded one of the same config."""
    return build_dataset(cfg, "training", **kwargs), build_dataset(cfg.with_changes(decode_device="cuda"), "training", **kwargs)


def _batch(dataset, indices, epoch=0):
    return collate(dataset.__getitems__([(i, epoch) for i in indices]))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean()
    return float(10 * torch.log10(255.0**2 / mse)) if mse > 0 else float("inf")


@pytest.fixture
def no_torchvision(monkeypatch):
    """The simplejpeg fallback, whether or not torchvision is installed."""
    monkeypatch.setattr(gpu_decode, "_batched", None)


@pytest.fixture
def fake_torchvision(monkeypatch):
    """A stand-in ``torchvision.io`` whose ``decode_jpeg`` records its calls and decodes with
    simplejpeg, failing the whole call when one image is bad (as nvJPEG does)."""
    import simplejpeg

    calls = []

    class ImageReadMode:
        RGB = "RGB-mode"

    def decode_jpeg(images, mode=None, device="cpu"):
        calls.append({"images": list(images), "mode": mode, "device": device})
        out = []
        for image in images:
            try:
                array = simplejpeg.decode_jpeg(image.numpy().tobytes(), colorspace="RGB")
            except Exception as error:
                raise RuntimeError(f"Error while decoding JPEG images: {error}") from None
            out.append(torch.from_numpy(array).permute(2, 0, 1).contiguous().to(device))
        return out

    io_module = types.ModuleType("torchvision.io")
    io_module.decode_jpeg = decode_jpeg
    io_module.ImageReadMode = ImageReadMode
    package = types.ModuleType("torchvision")
    package.io = io_module
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.io", io_module)
    monkeypatch.setattr(gpu_decode, "_batched", gpu_decode._UNSET)
    return calls


# -- the worker side ----------------------------------------------------------------------------

@pytest.mark.parametrize("train", [True, False])
def test_encoded_items_pick_the_cpu_paths_frames_boxes_and_draws(motion_set, monkeypatch, train):
    seen = []
    real_read_clip = dataset_module.read_clip

    def spy(source, indices, pick_box, out_hw, video_range, out=None):
        def pick(width, height):
            box = pick_box(width, height)
            seen.append((list(indices), box))
            return box
        return real_read_clip(source, indices, pick, out_hw, video_range, out)

    monkeypatch.setattr(dataset_module, "read_clip", spy)
    cpu, encoded = _pair(_config(motion_set, train_crop="random"), train=train)
    for item in range(len(cpu)):
        for epoch in (0, 3):
            a, b = cpu[(item, epoch)], encoded[(item, epoch)]
            indices, box = seen[-1]
            clip = b["jpeg"]
            assert "clip" not in b and "jpeg" not in a
            assert [clip.frames[p] for p in clip.positions] == indices
            assert all(x == (box.x0, box.y0, box.x1, box.y1) for x in clip.boxes)
            assert clip.out_hw == (24, 24)
            for key in ("target", "video", "bad_frames", "bad_video") + (("flip",) if train else ()):
                assert a[key] == b[key]
            assert torch.equal(a["segment"], b["segment"])
            if train:
                assert torch.equal(a["jitter"], b["jitter"])


def test_collated_batch_layout(motion_set):
    _, encoded = _pair(_config(motion_set))
    items = [encoded[(i, 0)] for i in (0, 5, 7)]
    batch = collate(items)
    offsets = batch["jpeg_offsets"]
    assert batch["jpeg"].dtype == torch.uint8 and batch["jpeg"].dim() == 1
    assert int(offsets[-1]) == batch["jpeg"].numel()
    assert batch["jpeg_positions"].shape == (3, 4) and batch["jpeg_out_hw"].tolist() == [[24, 24]] * 3
    flat = [data for item in items for data in item["jpeg"].images]
    for k, data in enumerate(flat):  # each frame's bytes, exactly
        assert batch["jpeg"][offsets[k] : offsets[k + 1]].numpy().tobytes() == data
    for n, item in enumerate(items):  # positions index the whole batch's frames
        assert [flat[p] for p in batch["jpeg_positions"][n].tolist()] == [item["jpeg"].images[p] for p in item["jpeg"].positions]
        assert set(batch["jpeg_clip"][batch["jpeg_positions"][n]].tolist()) == {n}
    assert batch["target"].tolist() == [item["target"] for item in items]
    assert len(batch["jpeg_names"]) == len(flat) and batch["jpeg_names"][0].endswith(".jpg")


# -- the device side ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "changes, max_diff, max_mean, min_psnr",
    [
        ({}, 1, 0.3, 50.0),  # exact mode, full-size decodes on both sides: only the resize's rounding
        ({"decode_tolerance": 0.9, "fast_decode": True}, 8, 1.5, 42.0),  # the CPU path's fast IDCT and upsampling
        ({"sample_size": 16}, 255, 6.0, 27.0),  # the CPU path decodes at 1/2 scale: crop edges move by a pixel
    ],
)
def test_assembled_clips_match_the_cpu_paths_clips(motion_set, no_torchvision, changes, max_diff, max_mean, min_psnr):
    cfg = _config(motion_set, **changes)
    for train in (True, False):
        cpu, encoded = _pair(cfg, train=train)
        indices = list(range(len(cpu)))
        want = _batch(cpu, indices, epoch=2)
        batch = _batch(encoded, indices, epoch=2)
        got = assemble_clips(batch, "cpu")
        assert got.dtype == torch.uint8 and got.shape == want["clip"].shape and got.is_contiguous()
        diff = (got.int() - want["clip"].int()).abs()
        assert int(diff.max()) <= max_diff and float(diff.float().mean()) <= max_mean
        assert _psnr(got, want["clip"]) >= min_psnr
        assert batch_counters(batch) == batch_counters(want) == {"bad_frames": 0, "bad_video": 0}
        # a GPU's crop and resize (weight matrices) gives the same clips, up to float rounding at .5
        by_matmul = assemble_clips(_batch(encoded, indices, epoch=2), "cpu", resize="matmul")
        assert (by_matmul.int() - got.int()).abs().max() <= 1 and (by_matmul != got).float().mean() < 0.01


def test_weight_matrices_crop_and_resize_as_interpolate_does():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 30, 44), dtype=torch.uint8, generator=generator)
    rng = random.Random(1)
    boxes = []
    for _ in range(8):
        x0, y0 = rng.randint(0, 30), rng.randint(0, 20)
        boxes.append((x0, y0, rng.randint(x0 + 1, 44), rng.randint(y0 + 1, 30)))
    boxes[0] = (0, 0, 44, 30)
    for size in ((12, 12), (9, 17), (50, 60)):  # shrinking, mixed, enlarging
        got = gpu_decode.resize_boxes(images, torch.tensor(boxes, dtype=torch.float64), size)
        want = torch.cat([gpu_decode.resize_crops(images[g : g + 1, :, y0:y1, x0:x1], size)
                          for g, (x0, y0, x1, y1) in enumerate(boxes)])
        assert got.shape == want.shape and (got.int() - want.int()).abs().max() <= 1
        assert (got != want).float().mean() < 0.01
    same = gpu_decode.resize_boxes(images, torch.tensor([[4, 2, 16, 14]] * 8, dtype=torch.float64), (12, 12))
    assert torch.equal(same, images[:, :, 2:14, 4:16])  # a box of the output size is copied exactly


def test_one_clip_of_every_frame_recognition_needs(tmp_path, no_torchvision):
    from resnet3d.data.clip import UnreadableVideo, read_clip, read_encoded_clip
    from resnet3d.data.sources import source_for
    from resnet3d.data.spatial import center_box

    cfg = _folder_set(tmp_path, [("k0", "a", _textured(10, 16, 20))])
    folder = tmp_path / "jpg" / "a" / "k0"
    frame = folder / "image_00004.jpg"
    frame.write_bytes(frame.read_bytes()[:-40])
    source = source_for(str(folder), cfg)
    wanted = list(range(1, 11))
    want, want_bad = read_clip(source, wanted, center_box, (12, 12), (1, 11))
    encoded, n_bad = read_encoded_clip(source, wanted, center_box, (12, 12), (1, 11))
    got, decode_bad = gpu_decode.assemble_clip(encoded, "cpu")
    assert got.shape == want.shape == (10, 12, 12, 3) and (got.int() - want.int()).abs().max() <= 1
    assert n_bad + decode_bad == want_bad == 1
    for path in folder.glob("*.jpg"):
        path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UnreadableVideo, match="k0"):
        gpu_decode.assemble_clip(read_encoded_clip(source, wanted, center_box, (12, 12), (1, 11))[0], "cpu")


def test_a_png_named_jpg_is_decoded_on_the_cpu_in_the_encoded_path(tmp_path, no_torchvision):
    """The workers' path reads a PNG under a .jpg name with PIL; the encoded path (decode device
    cuda or mixed) took it for a corrupt JPEG and stood a neighbour in."""
    from PIL import Image

    from resnet3d.data.clip import read_clip, read_encoded_clip
    from resnet3d.data.sources import source_for
    from resnet3d.data.spatial import center_box

    cfg = _folder_set(tmp_path, [("k0", "a", _textured(10, 16, 20))])
    folder = tmp_path / "jpg" / "a" / "k0"
    Image.fromarray(np.full((16, 20, 3), 200, dtype="uint8")).save(folder / "image_00004.jpg", format="PNG")
    source = source_for(str(folder), cfg)
    wanted = list(range(1, 11))
    want, want_bad = read_clip(source, wanted, center_box, (12, 12), (1, 11))
    encoded, n_bad = read_encoded_clip(source, wanted, center_box, (12, 12), (1, 11))
    assert encoded.on_cpu[3] and not any(encoded.on_cpu[:3])
    got, decode_bad = gpu_decode.assemble_clip(encoded, "cpu")
    assert want_bad == n_bad == decode_bad == 0
    assert got.shape == want.shape and (got.int() - want.int()).abs().max() <= 1 and int(got[3].float().mean()) == 200


def test_clips_to_device_takes_either_kind_of_batch(motion_set, no_torchvision):
    cpu, encoded = _pair(_config(motion_set))
    plain = _batch(cpu, [1, 2])
    assert torch.equal(clips_to_device(plain, "cpu"), plain["clip"])
    assert (clips_to_device(_batch(encoded, [1, 2]), "cpu").int() - plain["clip"].int()).abs().max() <= 1


def _textured(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Frames whose brightness tells their index (10 * i) under a fixed texture."""
    texture = np.random.default_rng(seed).integers(-20, 21, (height, width, 1))
    return np.stack([np.clip(60 + 10 * i + texture, 0, 255).astype(np.uint8).repeat(3, axis=2) for i in range(1, n + 1)])


def _folder_set(tmp_path, videos, sample_duration=8, sample_size=12):
    """Frame folders of ``videos`` (key, label, frames) and their config; exact mode and crops
    under twice the output size, so the CPU path decodes at full size as the encoded one does."""
    database = {key: {"subset": "training", "annotations": {"label": label}} for key, label, _ in videos}
    path = write_json(tmp_path / "set.json", {"labels": sorted({label for _, label, _ in videos}), "database": database})
    for key, label, frames in videos:
        write_frames(tmp_path / "jpg" / label / key, frames)
    return DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=sample_size,
                      sample_duration=sample_duration, decode_tolerance=1.0, fast_decode=False, num_workers=0)


def test_bad_frames_are_replaced_and_counted_as_on_the_cpu_path(tmp_path, no_torchvision):
    cfg = _folder_set(tmp_path, [(f"k{i}", "a", _textured(8, 16, 20, seed=i)) for i in range(3)])
    folder = tmp_path / "jpg" / "a" / "k0"
    (folder / "image_00003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")  # header unreadable: the worker sees it
    (folder / "image_00006.jpg").unlink()  # missing: the worker sees it
    frame = folder / "image_00008.jpg"  # header fine, data cut short: only the decoder sees it
    frame.write_bytes(frame.read_bytes()[:-40])
    cpu, encoded = _pair(cfg, sampling="center", train=False)
    want = _batch(cpu, [0, 1])
    batch = _batch(encoded, [0, 1])
    assert batch["bad_frames"].tolist() == [2, 0]  # the truncated frame is not known yet
    got = assemble_clips(batch, "cpu")
    assert batch_counters(batch) == batch_counters(want) == {"bad_frames": 3, "bad_video": 0}
    assert (got.int() - want["clip"].int()).abs().max() <= 1
    levels = [round((float(f.float().mean()) - 60) / 10) for f in got[0]]
    assert levels == [1, 2, 2, 4, 5, 5, 7, 7]  # each stand-in is the nearest readable frame, the earlier on a tie


def test_a_clip_with_no_decodable_frame_takes_another_clip_of_the_batch(tmp_path, no_torchvision, caplog):
    cfg = _folder_set(tmp_path, [("k0", "a", _textured(8, 16, 20)), ("k1", "b", _textured(8, 16, 20, seed=1))])
    for frame in (tmp_path / "jpg" / "a" / "k0").glob("*.jpg"):
        frame.write_bytes(frame.read_bytes()[:-40])  # every frame cut short
    _, encoded = _pair(cfg, sampling="center", train=False)
    batch = _batch(encoded, [0, 1])
    assert batch["target"].tolist() == [0, 1]
    with caplog.at_level("WARNING", logger="resnet3d.data"):
        got = assemble_clips(batch, "cpu")
    assert torch.equal(got[0], got[1])
    assert batch["target"].tolist() == [1, 1] and batch["video"].tolist() == [1, 1]
    assert batch["bad_video"].tolist() == [1, 0]
    assert any("k0" in record.getMessage() for record in caplog.records)
    only = _batch(encoded, [0])
    with pytest.raises(UserError, match="no frame of this batch decodes.*k0"):
        assemble_clips(only, "cpu")


def _cmyk_jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).convert("CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_gray_cmyk_and_frames_of_other_sizes(tmp_path, fake_torchvision):
    frames = _textured(6, 24, 32)
    cfg = _folder_set(tmp_path, [("k0", "a", frames)], sample_duration=6, sample_size=16)
    folder = tmp_path / "jpg" / "a" / "k0"
    write_frames(tmp_path / "gray", np.ascontiguousarray(frames[1:2, :, :, 0]))
    (folder / "image_00002.jpg").write_bytes((tmp_path / "gray" / "image_00001.jpg").read_bytes())
    (folder / "image_00004.jpg").write_bytes(_cmyk_jpeg(frames[3]))
    write_frames(tmp_path / "big", np.repeat(np.repeat(frames[4:5], 2, axis=1), 2, axis=2))  # 48 x 64
    (folder / "image_00005.jpg").write_bytes((tmp_path / "big" / "image_00001.jpg").read_bytes())
    cpu, encoded = _pair(cfg, sampling="center", train=False)
    want = cpu[0]["clip"]
    batch = _batch(encoded, [0])
    assert batch["jpeg_on_cpu"].tolist() == [False, False, False, True, False, False]
    assert batch["jpeg_sizes"][4].tolist() == [48, 64] and batch["jpeg_boxes"][4].tolist() == [8, 0, 56, 48]
    got = assemble_clips(batch, "cpu")
    assert len(fake_torchvision) == 1 and len(fake_torchvision[0]["images"]) == 5  # the CMYK frame decodes on the CPU
    assert batch_counters(batch) == {"bad_frames": 0, "bad_video": 0}
    diff = (got[0].int() - want.int()).abs()
    assert int(diff.max()) <= 2, diff.amax(dim=(1, 2, 3))
    levels = [round((float(f.float().mean()) - 60) / 10) for f in got[0]]
    assert levels == [1, 2, 3, 4, 5, 6]
    by_matmul = assemble_clips(_batch(encoded, [0]), "cpu", resize="matmul")  # frames of two sizes: two products
    assert (by_matmul.int() - got.int()).abs().max() <= 1


def test_one_batched_decode_call_per_batch_with_cpu_tensors_and_the_device(motion_set, fake_torchvision):
    _, encoded = _pair(_config(motion_set))
    batch = _batch(encoded, [0, 3, 6])
    got = assemble_clips(batch, "cpu")
    assert len(fake_torchvision) == 1
    call = fake_torchvision[0]
    assert call["mode"] == "RGB-mode" and call["device"] == torch.device("cpu")
    assert len(call["images"]) == batch["jpeg_offsets"].numel() - 1
    assert all(t.device.type == "cpu" and t.dtype == torch.uint8 and t.dim() == 1 for t in call["images"])
    assert got.shape == (3, 4, 24, 24, 3)


def test_a_failing_batched_call_is_retried_by_halves_down_to_the_bad_frame(tmp_path, fake_torchvision):
    cfg = _folder_set(tmp_path, [("k0", "a", _textured(8, 16, 20)), ("k1", "a", _textured(8, 16, 20, seed=1))])
    frame = tmp_path / "jpg" / "a" / "k1" / "image_00005.jpg"
    frame.write_bytes(frame.read_bytes()[:-40])
    _, encoded = _pair(cfg, sampling="center", train=False)
    batch = _batch(encoded, [0, 1])
    got = assemble_clips(batch, "cpu")
    # frame 5 of the second clip is image 12 of 16: 16 fails, then 0-7 pass, 8-15 fail, 8-11 pass,
    # 12-15 fail, 12-13 fail, 12 alone fails (to the CPU decoders), 13, then 14-15 pass
    assert [len(call["images"]) for call in fake_torchvision] == [16, 8, 8, 4, 4, 2, 1, 1, 2]
    assert batch["bad_frames"].tolist() == [0, 1]
    want = assemble_clips(_batch(encoded, [0, 1]), "cpu", decode=None)  # every frame on the CPU decoders
    assert torch.equal(got, want)


def test_loader_with_two_worker_processes(motion_set, no_torchvision):
    cfg = _config(motion_set)
    cpu, encoded = _pair(cfg)
    loaders = [build_loader(data, 4, train=True, num_workers=2, seed=5, pin_memory=False) for data in (cpu, encoded)]
    for loader in loaders:
        set_epoch(loader, 1)
    batches = 0
    for want, batch in zip(*loaders):
        assert "jpeg" in batch and "clip" not in batch
        got = assemble_clips(batch, "cpu")
        assert (got.int() - want["clip"].int()).abs().max() <= 1
        assert torch.equal(batch["target"], want["target"]) and torch.equal(batch["flip"], want["flip"])
        batches += 1
    assert batches == -(-len(cpu) // 4) > 1


# -- configuration and errors -------------------------------------------------------------------

def test_config_refuses_what_the_encoded_mode_cannot_read():
    with pytest.raises(UserError, match=r"--decode-device \(\[data\] decode_device\) 'gpu' is not one of"):
        DataConfig(decode_device="gpu")
    with pytest.raises(UserError, match="--file_type jpg or hdf5"):
        DataConfig(decode_device="cuda", file_type="video")
    with pytest.raises(UserError, match="--input_type rgb"):
        DataConfig(decode_device="cuda", input_type="flow")
    assert DataConfig.from_dict(DataConfig(decode_device="cuda").to_dict()).decode_device == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_decoding_without_a_gpu_is_one_clear_line():
    check_decode_device("cpu", "cpu")
    with pytest.raises(UserError, match="--decode-device cuda .* use --decode-device cpu"):
        check_decode_device("cuda", "cuda")


@pytest.mark.parametrize("problem", [None, "raises", "wrong colours"])
def test_a_torchvision_whose_gpu_decoder_does_not_run_is_found_at_start(motion_set, monkeypatch, caplog, problem):
    """torchvision imports with only a warning when its compiled operators do not load (built for
    another torch), and one built without nvJPEG raises on every call: ``check_decode_device``
    decodes one small JPEG on the device first, and where that fails says so once and decodes on
    the CPU, instead of failing every batch's call and then every frame's before the fallback.
    (No GPU here: torch is told it has one, and the probe's JPEG is decoded on the CPU.)"""
    import logging

    import simplejpeg

    calls = []

    def decode(images, device):
        calls.append(len(images))
        if problem == "raises":
            raise RuntimeError("decode_jpegs_cuda: torchvision not compiled with nvJPEG support")
        out = [torch.from_numpy(simplejpeg.decode_jpeg(i.numpy().tobytes(), colorspace="RGB")).permute(2, 0, 1)
               for i in images]
        return [o.flip(0) if problem == "wrong colours" else o for o in out]  # BGR, say

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_decode, "_batched", decode)
    monkeypatch.setattr(gpu_decode, "_decode_apart", lambda decode, images, device: decode(images, torch.device("cpu")))
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        check_decode_device("cuda", "cuda")
    assert calls == [1]  # one JPEG
    if problem is None:
        assert gpu_decode.batched_decoder() is decode and not caplog.records
        return
    assert gpu_decode.batched_decoder() is None  # assemble_clips decodes with simplejpeg from now on
    message = caplog.records[-1].getMessage()
    assert "does not run on cuda" in message and "simplejpeg" in message
    assert ("not compiled with nvJPEG" if problem == "raises" else "other colours") in message
    _, encoded = _pair(_config(motion_set))
    assert assemble_clips(_batch(encoded, [0]), "cpu").shape == (1, 4, 24, 24, 3) and calls == [1]


def test_clips_of_different_sizes_in_one_batch_are_refused(tmp_path, no_torchvision):
    cfg = _folder_set(tmp_path, [("k0", "a", _textured(4, 16, 20)), ("k1", "a", _textured(4, 24, 20))], sample_duration=4)
    encoded = build_dataset(cfg.with_changes(decode_device="cuda"), "training", train=False, sampling="center", eval_crop="nocrop")
    assert assemble_clips(_batch(encoded, [0]), "cpu").shape == (1, 4, 12, 15, 3)  # short side 12, as the CPU path
    with pytest.raises(UserError, match="different sizes"):
        assemble_clips(_batch(encoded, [0, 1]), "cpu")


# -- the benchmark ------------------------------------------------------------------------------

def _bench_args(motion_set, *extra):
    from resnet3d.bench import loader as bench_loader

    parser = argparse.ArgumentParser()
    bench_loader.add_arguments(parser)
    return bench_loader, parser.parse_args([
        "--video_path", motion_set.jpg_path, "--annotation_path", motion_set.annotation_path, "--sample_size", "16",
        "--sample_duration", "4", "--batch_size", "4", "--n-batches", "2", "--repeat", "1", *extra,
    ])


def test_bench_measures_the_encoded_loader_beside_the_cpu_decode(motion_set, capsys, no_torchvision):
    bench_loader, args = _bench_args(motion_set, "--decode-device", "cuda", "--assemble-device", "cpu")
    assert bench_loader.run(args) == 0
    ours, encoded = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ours["decode_device"] == "cpu" and encoded["decode_device"] == "cuda" and encoded["assemble_device"] == "cpu"
    for line in (ours, encoded):
        assert line["n_clips"] == 8 and line["clips_per_s"] > 0 and line["clips_per_s_per_core"] > 0
    assert "simplejpeg" in encoded["scheme"]
    assert abs(encoded["vs_cpu_decode_per_core"] - encoded["clips_per_s_per_core"] / ours["clips_per_s_per_core"]) < 0.01


def test_bench_assembles_the_encoded_sides_warm_up_batches_too(motion_set, capsys, no_torchvision, monkeypatch):
    """Every batch the encoded side draws is assembled, the untimed warm-up batch of each block
    too: on a GPU the first assembly starts CUDA, nvJPEG and cuBLAS (about a second of the main
    process's CPU), which must not land in the first timed block's per-core figure."""
    bench_loader, args = _bench_args(motion_set, "--decode-device", "cuda", "--assemble-device", "cpu")
    drawn, assembled = [], []
    real_start, real_assemble = bench_loader._Side.start, bench_loader.assemble_clips

    def start(side, epoch):
        if side.device is not None:
            drawn.append("warm-up")
        return real_start(side, epoch)

    def assemble(batch, device):
        assembled.append(device)
        return real_assemble(batch, device)

    monkeypatch.setattr(bench_loader._Side, "start", start)
    monkeypatch.setattr(bench_loader, "assemble_clips", assemble)
    assert bench_loader.run(args) == 0
    capsys.readouterr()
    # one block of 2 batches (--repeat 1) and the wall-clock block of 2, each after a warm-up batch
    assert len(drawn) == 2 and len(assembled) == 2 * (1 + 2)
    assert all(device == torch.device("cpu") for device in assembled)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_bench_refuses_cuda_decoding_without_a_gpu(motion_set):
    bench_loader, args = _bench_args(motion_set, "--decode-device", "cuda")
    with pytest.raises(UserError, match="torch sees none here"):
        bench_loader.run(args)



def _nvjpeg_available() -> bool:
    if not torch.cuda.is_available():
        return False
    gpu_decode._batched = gpu_decode._UNSET
    return gpu_decode.batched_decoder() is not None


@pytest.mark.skipif(not _nvjpeg_available(), reason="needs a CUDA GPU and torchvision (nvJPEG)")
def test_nvjpeg_on_the_gpu_matches_the_cpu_decoders(motion_set):
    """On the GPU machine: the real batched nvJPEG call, and the weight-matrix resize in CUDA.
    nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: the bound is the fast mode's."""
    _, encoded = _pair(_config(motion_set))
    indices = list(range(len(encoded)))
    on_gpu = assemble_clips(_batch(encoded, indices), "cuda")
    on_cpu = assemble_clips(_batch(encoded, indices), "cpu", decode=None)
    assert on_gpu.device.type == "cuda" and on_gpu.shape == on_cpu.shape
    diff = (on_gpu.cpu().int() - on_cpu.int()).abs()
    assert float(diff.float().mean()) <= 1.5 and _psnr(on_gpu.cpu(), on_cpu) >= 40.0


SLEEP_CYCLES = 1_000_000_000  # about half a second of GPU clock: far longer than the host work below


def _split_images(batch):
    return list(torch.split(batch["jpeg"], np.diff(batch["jpeg_offsets"].tolist()).tolist()))


@pytest.mark.skipif(not _nvjpeg_available(), reason="needs a CUDA GPU and torchvision (nvJPEG)")
def test_nvjpeg_never_writes_into_memory_that_queued_kernels_still_read(motion_set):
    """torchvision allocates decoded images on the caller's current stream and nvJPEG writes them
    from a stream of its own that does not wait for the caller's (pytorch/vision pull request
    9606): blocks freed while kernels queued behind a running one still read them must keep their
    values through a decode call. The caching allocator hands out freed blocks of the right size
    first, and the decoded images have exactly those blocks' sizes: with the images allocated on
    the caller's stream (torchvision's own behaviour) the sums come out wrong."""
    _, encoded = _pair(_config(motion_set))
    batch = _batch(encoded, [0, 1])
    images = _split_images(batch)
    sizes = [tuple(size) for size in batch["jpeg_sizes"].tolist()]
    device = torch.device("cuda")
    decode = gpu_decode.batched_decoder()
    gpu_decode.decode_images(images, [False] * len(images), device, decode)  # nvJPEG's handle and buffers
    torch.cuda.synchronize()
    held = [torch.full((3, h, w), 7, dtype=torch.uint8, device=device) for h, w in sizes]
    torch.cuda.synchronize()
    torch.cuda._sleep(SLEEP_CYCLES)  # a running step
    sums = [tensor.sum(dtype=torch.int64) for tensor in held]  # queued behind it
    del held  # their blocks go back to the stream's pool while the sums above still have to read them
    decoded = gpu_decode.decode_images(images, [False] * len(images), device, decode)
    torch.cuda.synchronize()
    assert [int(total) for total in sums] == [7 * 3 * h * w for h, w in sizes]
    assert all(image is not None and image.shape == (3, *size) for image, size in zip(decoded, sizes))


@pytest.mark.skipif(not _nvjpeg_available(), reason="needs a CUDA GPU and torchvision (nvJPEG)")
def test_the_feed_decodes_a_batch_while_the_compute_stream_is_busy(motion_set):
    """Training's promise with --decode-device cuda (engine.feed): the next batch is decoded,
    cropped and resized on the feed's side stream while the step runs. A host sync on the way
    (a tensor made from Python numbers on the GPU, an .item()) raises in torch's sync debug mode,
    and a wait for the compute stream shows as that stream being idle when the batch is sent."""
    from resnet3d.engine.feed import DeviceFeed

    _, encoded = _pair(_config(motion_set))
    device = torch.device("cuda")
    feed = DeviceFeed(device, ("clip", "target"))

    def pinned_batch():  # as the loader hands it over
        batch = _batch(encoded, [0, 3, 6])
        return {key: value.pin_memory() if torch.is_tensor(value) else value for key, value in batch.items()}

    for _ in range(2):  # warm-up: nvJPEG, cuBLAS, and cached blocks for every tensor (no cudaMalloc below)
        want = feed.ready(feed.send(pinned_batch()))["clip"].cpu()
    torch.cuda.synchronize()
    batch = pinned_batch()
    torch.cuda._sleep(SLEEP_CYCLES)  # the running step, on the compute stream
    torch.cuda.set_sync_debug_mode("error")
    try:
        sent = feed.send(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # (torch's sync debug mode does not see a wait inside nvJPEG or the driver; this does)
    assert not torch.cuda.current_stream(device).query(), "decoding the batch waited for the compute stream"
    got = feed.ready(sent)
    torch.cuda.synchronize()
    assert got["clip"].shape == (3, 4, 24, 24, 3)
    assert int((got["clip"].cpu().int() - want.int()).abs().max()) <= 1  # the same batch, decoded again
    assert torch.equal(got["target"].cpu(), batch["target"])
