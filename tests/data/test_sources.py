"""Frame sources on real files: JPEG folders, HDF5 (RGB and flow), flow JPEGs, MP4 with seeking,
and the DCT-scaled decode against a full decode."""
from __future__ import annotations

import numpy as np
import pytest
import simplejpeg
import torch

from resnet3d.data import DataConfig, build_dataset, spatial
from resnet3d.data.clip import read_clip
from resnet3d.data.decode import decode_full, decode_region
from resnet3d.data.sources import FlowJpegFolderSource, Hdf5Source, JpegFolderSource, VideoFileSource
from resnet3d.synthetic import render_video, write_mp4

from data_helpers import ramp_frames, write_frames, write_json


def _full(w, h):
    return spatial.Box(0, 0, w, h, w, h)


def test_jpeg_folder_reads_the_requested_frames(tmp_path):
    write_frames(tmp_path / "v", ramp_frames(8))
    source = JpegFolderSource(str(tmp_path / "v"))
    assert source.n_frames() == 8
    clip, bad = read_clip(source, [3, 4, 4, 8], _full, (12, 16), (1, 9))
    assert clip.shape == (4, 12, 16, 3) and bad == 0
    assert [round(float(f.float().mean()) / 10) for f in clip] == [3, 4, 4, 8]


def test_dct_scaled_region_matches_full_decode_then_resize():
    rng = np.random.default_rng(1)
    frame = render_video(0, 1, (240, 320), rng, noise=1.0)[0]
    data = simplejpeg.encode_jpeg(frame, quality=90)
    box = spatial.Box(60, 20, 300, 220, 320, 240)
    region = decode_region(data, box, (56, 56))
    assert region.shape[0] >= 56 and region.shape[1] >= 56 and region.shape[0] < 200  # a reduced scale
    fast = spatial.resize_clip(torch.from_numpy(np.ascontiguousarray(region))[None], (56, 56))[0].float()
    full = decode_full(data)[20:220, 60:300]
    reference = spatial.resize_clip(torch.from_numpy(np.ascontiguousarray(full))[None], (56, 56))[0].float()
    assert (fast - reference).abs().mean() < 3.0  # same picture; DCT scaling is a slightly different filter


def test_pil_and_simplejpeg_decoders_agree():
    rng = np.random.default_rng(2)
    data = simplejpeg.encode_jpeg(render_video(2, 1, (48, 64), rng)[0], quality=92)
    box = spatial.Box(8, 4, 56, 44, 64, 48)
    a = decode_region(data, box, (40, 48), decoder="simplejpeg").astype(int)
    b = decode_region(data, box, (40, 48), decoder="pil").astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2.0


def _write_hdf5(path, frames, keys=("video",)):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        for key, planes in zip(keys, frames):
            dataset = handle.create_dataset(key, (len(planes),), dtype=h5py.vlen_dtype(np.dtype("uint8")))
            for i, plane in enumerate(planes):
                if plane.ndim == 2:
                    data = simplejpeg.encode_jpeg(plane[:, :, None], quality=95, colorspace="GRAY")
                else:
                    data = simplejpeg.encode_jpeg(plane, quality=95)
                dataset[i] = np.frombuffer(data, dtype=np.uint8)


def test_hdf5_video_equals_jpeg_folder(tmp_path):
    frames = render_video(1, 6, (32, 40), np.random.default_rng(0))
    write_frames(tmp_path / "jpg", frames)
    _write_hdf5(tmp_path / "v.hdf5", [frames])
    h5 = Hdf5Source(str(tmp_path / "v.hdf5"))
    assert h5.n_frames() == 6
    a, _ = read_clip(h5, [2, 3, 6], spatial.center_box, (16, 16), (1, 7))
    b, _ = read_clip(JpegFolderSource(str(tmp_path / "jpg")), [2, 3, 6], spatial.center_box, (16, 16), (1, 7))
    assert torch.equal(a, b)


def test_hdf5_dataset_with_successor_zero_based_segments(tmp_path):
    frames = ramp_frames(10, 16, 16)
    (tmp_path / "h5" / "a").mkdir(parents=True)
    _write_hdf5(tmp_path / "h5" / "a" / "k1.hdf5", [frames])
    path = write_json(tmp_path / "k.json", {"labels": ["a"], "database": {"k1": {"subset": "training", "annotations": {"label": "a", "segment": [0, 10]}}}})
    cfg = DataConfig(video_path=str(tmp_path / "h5"), annotation_path=path, file_type="hdf5", sample_size=8, sample_duration=10)
    item = build_dataset(cfg, "training", sampling="center", train=False)[0]
    assert item["bad_frames"] == 0
    assert [round(float(f.float().mean()) / 10) for f in item["clip"]] == list(range(1, 11))


def test_flow_hdf5_gives_two_channels(tmp_path):
    u = np.stack([np.full((16, 16), 60 + i, np.uint8) for i in range(4)])
    v = np.stack([np.full((16, 16), 200 - i, np.uint8) for i in range(4)])
    _write_hdf5(tmp_path / "f.hdf5", [u, v], keys=("video_u", "video_v"))
    clip, bad = read_clip(Hdf5Source(str(tmp_path / "f.hdf5"), flow=True), [1, 4], spatial.center_box, (8, 8), (1, 5))
    assert clip.shape == (2, 8, 8, 2) and bad == 0
    assert abs(float(clip[1, ..., 0].float().mean()) - 63) <= 1 and abs(float(clip[1, ..., 1].float().mean()) - 197) <= 1


@pytest.mark.parametrize("layout", ["uv", "flow_xy"])
def test_flow_jpeg_folders(tmp_path, layout):
    import simplejpeg as sj

    folder = tmp_path / "v"
    for i in range(1, 4):
        planes = (np.full((12, 12, 1), 40 * i, np.uint8), np.full((12, 12, 1), 250 - 40 * i, np.uint8))
        names = (f"u/image_{i:05d}.jpg", f"v/image_{i:05d}.jpg") if layout == "uv" else (f"flow_x_{i:05d}.jpg", f"flow_y_{i:05d}.jpg")
        for name, plane in zip(names, planes):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(sj.encode_jpeg(plane, quality=95, colorspace="GRAY"))
    source = FlowJpegFolderSource(str(folder))
    assert source.n_frames() == 3
    clip, _ = read_clip(source, [2, 3], spatial.center_box, (6, 6), (1, 4))
    assert clip.shape == (2, 6, 6, 2)
    assert abs(float(clip[0, ..., 0].float().mean()) - 80) <= 1 and abs(float(clip[0, ..., 1].float().mean()) - 170) <= 1


def test_mp4_seeking_reads_the_right_frames(tmp_path):
    """Frames read from an H.264 file (after a seek past several keyframes) match the same frames
    of the JPEG copy, and not their neighbours."""
    frames = np.stack([np.full((32, 48, 3), 6 * i, dtype=np.uint8) for i in range(1, 41)])
    frames[:, 4:12, 4:12] = 255 - frames[:, 4:12, 4:12]  # some structure
    write_mp4(tmp_path / "v.mp4", frames, fps=25, gop=8)
    source = VideoFileSource(str(tmp_path / "v.mp4"))
    assert source.n_frames() == 40 and source.fps() == pytest.approx(25)
    wanted = [30, 31, 33, 38]
    clip, bad = read_clip(source, wanted, _full, (32, 48), (1, 41))
    assert bad == 0
    brightness = [float(f[16:, 16:].float().mean()) for f in clip]
    assert [round(b / 6) for b in brightness] == wanted


def test_a_raw_h264_stream_without_count_or_duration_is_read(tmp_path):
    """A raw elementary stream (.h264, as some cameras and tools write) records neither a frame
    count nor a duration; its packets are counted, and its frames read like an MP4's."""
    import av

    path = tmp_path / "camera.h264"
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(1, 31):
            frame = np.full((32, 48, 3), 8 * i, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:  # what the container itself says
        assert not container.streams.video[0].frames and not container.duration
    source = VideoFileSource(str(path))
    assert source.n_frames() == 30
    clip, bad = read_clip(source, [3, 4, 20], _full, (32, 48), (1, 31))
    assert bad == 0
    assert [round(float(f.float().mean()) / 8) for f in clip] == [3, 4, 20]


def test_video_dataset_matches_jpeg_dataset(motion_set):
    """The same clips from MP4 files and from JPEG folders (both lossy copies of one render)."""
    common = dict(annotation_path=motion_set.annotation_path, sample_size=24, sample_duration=6, n_val_samples=2)
    jpg = build_dataset(DataConfig(video_path=motion_set.jpg_path, **common), "validation")
    mp4 = build_dataset(DataConfig(video_path=motion_set.video_path, file_type="video", **common), "validation")
    assert len(jpg) == len(mp4) == 8
    for i in range(len(jpg)):
        a, b = jpg[i], mp4[i]
        assert torch.equal(a["segment"], b["segment"]) and a["target"] == b["target"]
        assert (a["clip"].float() - b["clip"].float()).abs().mean() < 8


@pytest.mark.parametrize("text", ["abc", "", "0", "-5"])
def test_an_n_frames_file_without_a_count_is_named_once(tmp_path, caplog, text):
    """It was passed over without a word (the frames present were counted)."""
    import logging

    write_frames(tmp_path / "v", ramp_frames(6, 8, 8))
    (tmp_path / "v" / "n_frames").write_text(text)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert JpegFolderSource(str(tmp_path / "v")).n_frames() == 6
        assert JpegFolderSource(str(tmp_path / "v")).n_frames() == 6
    lines = [r.getMessage() for r in caplog.records if "n_frames" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"{tmp_path / 'v' / 'n_frames'}: holds {repr(text) if text else 'nothing'}, not a frame count" in lines[0]
    assert "the 6 frames present are counted instead" in lines[0] and "resnet3d prepare n-frames" in lines[0]
