"""The fast JPEG path on real bytes: one decode buffer per clip, DCT-scale choice with its upscale
tolerance, libjpeg-turbo's fast decode, and the clip resize."""
from __future__ import annotations

import numpy as np
import pytest
import simplejpeg
import torch

from resnet3d.data import DataConfig, decode, spatial
from resnet3d.data.clip import read_clip
from resnet3d.data.decode import ClipDecoder, decode_region, scale_divisor
from resnet3d.data.sources import JpegFolderSource
from resnet3d.errors import UserError
from resnet3d.synthetic import render_video

from data_helpers import write_frames


def _frames(n=6, size=(96, 128), seed=0):
    return render_video(0, n, size, np.random.default_rng(seed), noise=2.0)


def _jpeg(frame, subsampling="420", quality=90):
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorsubsampling=subsampling)


def test_scale_divisor_tolerance():
    box = spatial.Box(0, 0, 204, 204, 320, 240)
    assert scale_divisor(box, (112, 112), 1.0) == 1  # 102 px at 1/2 would need an upscale
    assert scale_divisor(box, (112, 112), 0.9) == 2  # 102 >= 0.9 * 112
    assert scale_divisor(spatial.Box(0, 0, 230, 230, 320, 240), (112, 112), 1.0) == 2
    assert scale_divisor(spatial.Box(0, 0, 240, 240, 320, 240), (28, 28), 1.0) == 8
    assert scale_divisor(spatial.Box(0, 0, 100, 240, 320, 240), (112, 112), 0.5) == 1  # the narrow side decides


def _single(data, box, out_hw, **options):
    """One frame the slow, obvious way: its region on its own, then resized."""
    region = decode_region(data, box, out_hw, **options)
    return spatial.resize_clip(torch.from_numpy(np.ascontiguousarray(region))[None], out_hw)[0]


@pytest.mark.parametrize("coords", [(8, 4, 120, 92), (17, 3, 111, 95), (0, 0, 128, 96)])
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])  # one frame per group / the whole clip at once
def test_clip_decoder_rows_equal_single_frame_decodes(coords, chunk_bytes, monkeypatch):
    monkeypatch.setattr(decode, "CHUNK_BYTES", chunk_bytes)
    box = spatial.Box(*coords, 128, 96)
    datas = [_jpeg(f) for f in _frames()]
    clip = ClipDecoder(box, (24, 24), len(datas))
    assert all(clip.add(k, data) is None for k, data in enumerate(datas))
    resized, done = clip.finish()
    assert clip.divisor > 1 and done == list(range(len(datas))) and resized.shape == (6, 24, 24, 3)
    for k, data in enumerate(datas):
        assert torch.equal(resized[k], _single(data, box, (24, 24)))
    # the crop sits where the box is: compare with a full decode, cut, then resized
    x0, y0, x1, y1 = coords
    full = np.ascontiguousarray(simplejpeg.decode_jpeg(datas[0])[y0:y1, x0:x1])
    reference = spatial.resize_clip(torch.from_numpy(full)[None], (24, 24))[0]
    assert (resized[0].float() - reference.float()).abs().mean() < 4.0


def test_clip_decoder_groups_around_a_gap_and_into_out(monkeypatch):
    monkeypatch.setattr(decode, "CHUNK_BYTES", 3 * 48 * 64 * 3)  # three frames per group
    box = spatial.Box(0, 0, 128, 96, 128, 96)
    datas = [_jpeg(f) for f in _frames(6)]
    out = torch.zeros((6, 20, 20, 3), dtype=torch.uint8)
    clip = ClipDecoder(box, (20, 20), 6, out=out)
    for k in (0, 2, 3, 4, 5):  # position 1 unreadable: the first group is rows 0, 2, 3
        clip.add(k, datas[k])
    resized, done = clip.finish()
    assert resized is out and done == [0, 2, 3, 4, 5] and int(out[1].max()) == 0
    for k in done:
        assert torch.equal(out[k], _single(datas[k], box, (20, 20)))


def test_a_frame_of_another_size_is_decoded_on_its_own(tmp_path):
    frames = _frames(5)
    write_frames(tmp_path / "v", frames)
    odd = np.ascontiguousarray(frames[2][8:88, 4:124])  # frame 3 is 120x80, not 128x96
    (tmp_path / "v" / "image_00003.jpg").write_bytes(simplejpeg.encode_jpeg(odd, quality=95))
    source = JpegFolderSource(str(tmp_path / "v"))
    regions, failures, box = source.load([1, 2, 3, 4, 5], spatial.center_box, (32, 32))
    assert not failures and regions.readable() == [1, 2, 3, 4, 5]
    assert sorted(regions.resized_at) == [1, 2, 4, 5] and list(regions) == [3]  # the odd one on its own
    for out in (None, torch.zeros((5, 32, 32, 3), dtype=torch.uint8)):
        clip, bad = read_clip(source, [1, 2, 3, 4, 5], spatial.center_box, (32, 32), (1, 6), out)
        assert clip.shape == (5, 32, 32, 3) and bad == 0
        assert torch.equal(clip[1], regions.resized[1])
        rel = box.for_size(120, 80)  # the same relative box on the odd frame
        assert (rel.x0, rel.y0, rel.x1, rel.y1) == (15, 0, 105, 80)
        third = spatial.resize_clip(torch.from_numpy(np.ascontiguousarray(odd[:, 15:105]))[None], (32, 32))[0]
        assert (clip[2].float() - third.float()).abs().mean() < 3.0


def test_fast_path_equals_frame_by_frame_assembly_with_repeats_and_stand_ins(tmp_path):
    write_frames(tmp_path / "v", _frames(6), quality=90)
    (tmp_path / "v" / "image_00004.jpg").write_bytes(b"\xff\xd8 broken")
    source = JpegFolderSource(str(tmp_path / "v"))
    pick = lambda w, h: spatial.Box(10, 6, 118, 90, w, h)  # noqa: E731
    datas = {i: (tmp_path / "v" / f"image_{i:05d}.jpg").read_bytes() for i in (2, 3, 5, 6)}
    expected = {i: _single(data, pick(128, 96), (40, 40)) for i, data in datas.items()}
    cases = [
        [2, 3, 4, 5, 6, 2, 3],  # loop padding repeats 2 and 3; frame 4 is corrupt (3 stands in)
        [2, 3, 4, 5, 6],  # each frame once: resized straight into the batch slot
    ]
    for indices in cases:
        for out in (None, torch.zeros((len(indices), 40, 40, 3), dtype=torch.uint8)):
            clip, bad = read_clip(source, indices, pick, (40, 40), (1, 7), out)
            assert bad == 1 and clip.shape == (len(indices), 40, 40, 3) and clip.is_contiguous()
            assert out is None or clip.data_ptr() == out.data_ptr()
            for k, index in enumerate(indices):
                assert torch.equal(clip[k], expected[3 if index == 4 else index])


def test_fast_decode_is_close_to_exact_but_not_identical():
    frame = _frames(1, (96, 128))[0]
    data = _jpeg(frame, "420", quality=92)
    box = spatial.Box(0, 0, 128, 96, 128, 96)
    exact = decode_region(data, box, (96, 128)).astype(float)
    fast = decode_region(data, box, (96, 128), fast_decode=True).astype(float)
    assert exact.shape == fast.shape == (96, 128, 3)
    assert 0 < np.abs(exact - fast).mean() < 2.0


def test_data_config_checks_the_decode_tolerance():
    assert DataConfig(decode_tolerance=1.0).decode_tolerance == 1.0
    with pytest.raises(UserError, match="decode_tolerance"):
        DataConfig(decode_tolerance=0.3)
    restored = DataConfig.from_dict(DataConfig(decode_tolerance=0.8, fast_decode=False).to_dict())
    assert restored.decode_tolerance == 0.8 and restored.fast_decode is False


def test_resize_clip_rows_first_matches_one_call():
    rng = np.random.default_rng(3)
    big = torch.from_numpy(rng.integers(0, 256, (3, 90, 80, 3), dtype=np.uint8))
    assert spatial._rows_first(90, 80, (40, 40)) and not spatial._rows_first(50, 80, (40, 40))
    ours = spatial.resize_clip(big[:, 5:85, 2:78], (40, 40))  # a strided view, rows shrink 2x
    x = big[:, 5:85, 2:78].permute(0, 3, 1, 2)
    one = torch.nn.functional.interpolate(x, size=(40, 40), mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    assert ours.is_contiguous() and (ours.int() - one.int()).abs().max() <= 1


def test_batches_are_written_in_place_and_equal_item_by_item(motion_set):
    from resnet3d.data import build_dataset, build_loader, set_epoch
    from resnet3d.data.loader import collate

    cfg = DataConfig(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=16, sample_duration=4)
    dataset = build_dataset(cfg, "training", seed=2)
    items = dataset.__getitems__([(0, 1), (5, 1), (3, 1)])
    batch = collate(items)
    assert batch["clip"].data_ptr() == items[0]["clip"].data_ptr()  # no copy: the items' own tensor
    expected = torch.stack([dataset[(i, 1)]["clip"] for i in (0, 5, 3)])
    assert torch.equal(batch["clip"], expected) and batch["target"].tolist() == [dataset[(i, 1)]["target"] for i in (0, 5, 3)]
    loader = build_loader(dataset, 3, train=True, num_workers=2, seed=2)
    set_epoch(loader, 1)
    order = [index for index, _ in loader.sampler]
    first = next(iter(loader))
    assert first["clip"].is_shared()  # made in a worker's shared memory, passed on without a copy
    assert torch.equal(first["clip"], torch.stack([dataset[(i, 1)]["clip"] for i in order[:3]]))


def test_collate_stacks_clips_that_are_not_one_batch_tensor():
    from resnet3d.data.loader import collate

    clips = [torch.full((2, 4, 4, 3), v, dtype=torch.uint8) for v in (1, 2)]
    batch = collate([{"clip": c, "target": i} for i, c in enumerate(clips)])
    assert batch["clip"].shape == (2, 2, 4, 4, 3) and batch["clip"][1].max() == 2
    assert batch["clip"].data_ptr() not in (clips[0].data_ptr(), clips[1].data_ptr())
    pairs = collate([(torch.zeros(3), 1), (torch.ones(3), 0)])  # not our items: the default collate
    assert pairs[0].shape == (2, 3) and pairs[1].tolist() == [1, 0]


def test_resize_clip_writes_into_a_batch_slot():
    clip = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (3, 60, 50, 3), dtype=np.uint8))
    batch = torch.zeros((2, 3, 20, 20, 3), dtype=torch.uint8)
    result = spatial.resize_clip(clip[:, 5:55], (20, 20), out=batch[1])
    assert result.data_ptr() == batch[1].data_ptr() and int(batch[0].max()) == 0
    assert torch.equal(batch[1], spatial.resize_clip(clip[:, 5:55], (20, 20)))


def test_two_live_clip_decoders_do_not_share_the_reused_buffer():
    box = spatial.Box(0, 0, 128, 96, 128, 96)
    datas = [_jpeg(f) for f in _frames(4, seed=5)]
    first = ClipDecoder(box, (20, 20), 2)
    first.add(0, datas[0])  # still in the buffer, not resized yet
    second = ClipDecoder(box, (20, 20), 2)  # while the first is unfinished: its own buffer
    second.add(0, datas[2])
    second.add(1, datas[3])
    first.add(1, datas[1])
    a, _ = first.finish()
    b, _ = second.finish()
    for got, data in ((a[0], datas[0]), (a[1], datas[1]), (b[0], datas[2]), (b[1], datas[3])):
        assert torch.equal(got, _single(data, box, (20, 20)))
    third = ClipDecoder(box, (20, 20), 2)  # both finished: the thread's buffer is free again
    assert np.shares_memory(third._buffer, decode._scratch.buffer)
