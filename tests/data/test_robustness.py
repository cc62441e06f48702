"""Bad data never stops a run: stand-in frames, substituted videos, counts and one log line per file."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from resnet3d.data import DataConfig, batch_counters, build_dataset, build_loader, set_epoch
from resnet3d.data.decode import DecodeError, decode_region
from resnet3d.data.sources import JpegFolderSource
from resnet3d.data.spatial import Box
from resnet3d.errors import UserError

from data_helpers import ramp_frames, write_frames, write_json


def _dataset(tmp_path, n_videos=3, n_frames=8, **changes):
    labels = ["a"]
    database = {f"k{i}": {"subset": "training", "annotations": {"label": "a"}} for i in range(n_videos)}
    path = write_json(tmp_path / "k.json", {"labels": labels, "database": database})
    for i in range(n_videos):
        write_frames(tmp_path / "jpg" / "a" / f"k{i}", ramp_frames(n_frames, 16, 16))
    cfg = DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=8, sample_duration=n_frames, **changes)
    return cfg


def test_corrupt_and_missing_frames_are_replaced_counted_and_logged_once(tmp_path, caplog):
    cfg = _dataset(tmp_path)
    folder = tmp_path / "jpg" / "a" / "k0"
    (folder / "image_00003.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "image_00006.jpg").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        item = dataset[0]
        dataset[0]  # the same file again: no second log line
    assert item["clip"].shape == (8, 8, 8, 3)
    assert item["bad_frames"] == 2 and item["bad_video"] == 0
    levels = [round(float(f.float().mean()) / 10) for f in item["clip"]]
    assert levels[2] in (2, 4) and levels[5] in (5, 7)  # a neighbouring frame stands in
    assert levels[:2] == [1, 2] and levels[6:] == [7, 8]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(folder) in messages[0] and "stands in" in messages[0]


def test_truncated_jpeg_counts_as_bad(tmp_path):
    cfg = _dataset(tmp_path)
    frame = tmp_path / "jpg" / "a" / "k1" / "image_00004.jpg"
    frame.write_bytes(frame.read_bytes()[: len(frame.read_bytes()) // 2])
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    assert dataset[1]["bad_frames"] == 1


def test_window_past_the_end_borrows_frames_from_the_video(tmp_path):
    cfg = _dataset(tmp_path, n_frames=6)
    (tmp_path / "jpg" / "a" / "k0" / "n_frames").write_text("20")  # claims more frames than exist
    dataset = build_dataset(cfg.with_changes(sample_duration=4), "training", sampling="even", n_clips=2, train=False)
    last = dataset[1]  # frames 17..20: none exist
    assert last["bad_frames"] == 4 and last["bad_video"] == 0
    assert last["clip"].float().mean() > 0


def test_unreadable_video_is_replaced_and_counted(tmp_path, caplog):
    cfg = _dataset(tmp_path)
    for jpg in (tmp_path / "jpg" / "a" / "k1").glob("*.jpg"):
        jpg.write_bytes(b"garbage")
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        item = dataset[1]
    assert item["bad_video"] == 1 and item["video"] != 1
    assert any("k1" in r.getMessage() and "no readable frame" in r.getMessage() for r in caplog.records)


def test_empty_folder_is_replaced(tmp_path):
    cfg = _dataset(tmp_path)
    shutil.rmtree(tmp_path / "jpg" / "a" / "k2")
    (tmp_path / "jpg" / "a" / "k2").mkdir()
    dataset = build_dataset(cfg, "training")
    assert dataset[2]["bad_video"] == 1


def test_workers_survive_bad_data_and_counters_add_up(tmp_path):
    cfg = _dataset(tmp_path, n_videos=6)
    (tmp_path / "jpg" / "a" / "k0" / "image_00002.jpg").write_bytes(b"nope")
    (tmp_path / "jpg" / "a" / "k3" / "image_00005.jpg").unlink()
    for jpg in (tmp_path / "jpg" / "a" / "k4").glob("*.jpg"):
        jpg.write_bytes(b"garbage")
    dataset = build_dataset(cfg, "training", sampling="center")
    loader = build_loader(dataset, 3, train=True, num_workers=2, seed=1)
    totals = {"bad_frames": 0, "bad_video": 0}
    for epoch in range(2):
        set_epoch(loader, epoch)
        for batch in loader:
            assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape[1:] == (8, 8, 8, 3)
            for key, value in batch_counters(batch).items():
                totals[key] += value
    # per epoch: k0 and k3 one stand-in frame each; k4 replaced by the next candidate,
    # (4 + 7919) % 6 = k3, whose clip again has its one stand-in frame
    assert totals["bad_video"] == 2
    assert totals["bad_frames"] == 2 * 3


def test_a_whole_unreadable_data_set_is_a_clear_error(tmp_path):
    cfg = _dataset(tmp_path, n_videos=2)
    for jpg in (tmp_path / "jpg").rglob("*.jpg"):
        jpg.write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"none of the 2 training videos has a readable frame \(the last: .*garbage"):
        build_dataset(cfg, "training")[0]
    (tmp_path / "many").mkdir()
    many = _dataset(tmp_path / "many", n_videos=24)
    for jpg in (tmp_path / "many" / "jpg").rglob("*.jpg"):
        jpg.write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"^21 videos in a row had no readable frame \(the last: "):
        build_dataset(many, "training")[0]


@pytest.mark.parametrize("pattern, n_frames_file", [("img_{:05d}.jpg", False), ("frame{:06d}.jpg", True)])
def test_frames_named_otherwise_say_what_is_there_and_the_fix(tmp_path, caplog, pattern, n_frames_file):
    """Another tool's frame names give a line naming what the folder holds, the expected names
    and the fix, whether the folder has an n_frames file (frames 'missing') or not (no frames)."""
    cfg = _dataset(tmp_path, n_videos=2)
    folder = tmp_path / "jpg" / "a" / "k1"
    for index in range(1, 9):
        (folder / f"image_{index:05d}.jpg").rename(folder / pattern.format(index))
    if not n_frames_file:
        (folder / "n_frames").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert dataset[1]["bad_video"] == 1
    lines = [r.getMessage() for r in caplog.records if "k1" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"holds 8 image files named like '{pattern.format(1)}', none named image_%05d.jpg" in lines[0]
    assert "resnet3d prepare frames" in lines[0] and "rename them" in lines[0]
    (tmp_path / "jpg" / "a" / "k0").rename(tmp_path / "k0")  # nothing readable left: the error keeps the reason
    with pytest.raises(UserError, match=r"the one training video has no readable frame \(the last: .*k1: .*named like"):
        build_dataset(cfg.with_changes(), "training", sampling="center", train=False)[1]


def test_recognition_of_frames_named_otherwise_says_so(tmp_path):
    from resnet3d.engine.windows import Unit, ViewPlan, WindowDataset

    cfg = _dataset(tmp_path, n_videos=1)
    folder = tmp_path / "jpg" / "a" / "k0"
    for jpg in folder.glob("image_*.jpg"):
        jpg.rename(folder / jpg.name.replace("image_", "img_"))
    (folder / "n_frames").unlink()
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    windows = WindowDataset(dataset.videos, [Unit("k0", (0,))], cfg, ViewPlan(8, 8))
    chunks = list(windows.unit_chunks(0))
    assert "named like 'img_00001.jpg'" in chunks[0]["error"]


LOAD_WITH_TWO_WORKERS = """
import sys
from resnet3d.data import DataConfig, build_dataset, build_loader
cfg = DataConfig(video_path=sys.argv[1], annotation_path=sys.argv[2], sample_size=8, sample_duration=8)
# two windows of the one video: item 0 goes to worker 0, item 1 to worker 1
dataset = build_dataset(cfg, "validation", sampling="even", n_clips=2, train=False)
for batch in build_loader(dataset, 1, train=False, num_workers=2):
    print("bad frames", int(batch["bad_frames"].sum()))
"""


def test_a_bad_frame_is_logged_once_however_many_workers_read_it(tmp_path):
    import subprocess
    import sys

    cfg = _dataset(tmp_path, n_videos=1)
    path = write_json(tmp_path / "val.json", {"labels": ["a"], "database": {
        "k0": {"subset": "validation", "annotations": {"label": "a"}}}})
    (tmp_path / "jpg" / "a" / "k0" / "image_00004.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    done = subprocess.run([sys.executable, "-c", LOAD_WITH_TWO_WORKERS, cfg.video_path, path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n").count("bad frames 1") == 2  # both workers met it
    lines = [line for line in done.stderr.splitlines() if "image_00004.jpg" in line]
    assert len(lines) == 1, done.stderr


@pytest.mark.parametrize("digits", [4, 6])
def test_frames_with_another_zero_padding_say_so_and_the_fix(tmp_path, caplog, digits):
    """ffmpeg's %04d / %06d names (image_0001.jpg, image_000001.jpg) match the frame pattern but
    are not the names read: the line says the padding is wrong, gives the rename and the fix, with
    or without an n_frames file (prepare n-frames counts those frames)."""
    cfg = _dataset(tmp_path, n_videos=2)
    for n_frames_file in (True, False):
        folder = tmp_path / "jpg" / "a" / f"k{int(n_frames_file)}"
        for index in range(1, 9):
            (folder / f"image_{index:05d}.jpg").rename(folder / f"image_{index:0{digits}d}.jpg")
        if not n_frames_file:
            (folder / "n_frames").unlink()
    first = f"image_{1:0{digits}d}.jpg"
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with pytest.raises(UserError) as caught:
        dataset[0]
    message = str(caught.value)
    assert f"holds 8 frames numbered with {digits} digits like '{first}'" in message
    assert "zero padding must be 5 digits" in message and f"'{first}' -> 'image_00001.jpg'" in message
    assert "resnet3d prepare frames" in message
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        with pytest.raises(UserError):
            build_dataset(cfg, "training", sampling="center", train=False)[1]
    assert any("k1: no readable frame (the folder holds 8 frames numbered" in r.getMessage() for r in caplog.records)


def test_an_n_frames_file_counting_more_frames_than_the_folder_holds_is_named(tmp_path, caplog):
    cfg = _dataset(tmp_path, n_videos=2, n_frames=12)
    (tmp_path / "jpg" / "a" / "k0" / "n_frames").write_text("30")
    (tmp_path / "jpg" / "a" / "k1" / "image_00005.jpg").unlink()  # a hole: not the n_frames file's fault
    dataset = build_dataset(cfg.with_changes(sample_duration=4), "training", sampling="even", n_clips=3, train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        items = [dataset[i] for i in range(len(dataset))]
    assert sum(item["bad_frames"] for item in items) == 8 + 1  # k0's windows 14-17 and 27-30; k1's frame 5
    lines = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records}
    k0 = lines[str(tmp_path / "jpg" / "a" / "k0" / "image_00014.jpg")]
    n_frames = tmp_path / "jpg" / "a" / "k0" / "n_frames"
    assert f"the n_frames file ({n_frames}) says 30 frames, but the folder's frames end at image_00012.jpg" in k0
    assert "resnet3d prepare n-frames" in k0 and "delete it" in k0
    k1 = lines[str(tmp_path / "jpg" / "a" / "k1" / "image_00005.jpg")]
    assert k1.endswith("missing (a gap: the folder's frames run to image_00012.jpg); copy the folder again or extract "
                       "its frames again to fill it; a neighbouring frame stands in")


def _full_box(width, height):
    return Box(0, 0, width, height, width, height)


def _frame_levels(clip):
    return [round(float(f.float().mean()) / 10) for f in clip]


def _save_png(path, level, size=16):
    Image.fromarray(np.full((size, size, 3), level, dtype="uint8")).save(path, format="PNG")


def test_a_png_named_jpg_is_decoded_and_an_empty_frame_is_named(tmp_path, caplog):
    cfg = _dataset(tmp_path, n_videos=2)
    folder = tmp_path / "jpg" / "a" / "k0"
    _save_png(folder / "image_00003.jpg", 30)
    (folder / "image_00006.jpg").write_bytes(b"")
    for index in range(1, 9):  # k1: every frame a PNG, the first one too (it sets the crop box)
        _save_png(tmp_path / "jpg" / "a" / "k1" / f"image_{index:05d}.jpg", 10 * index)
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        first, second = dataset[0], dataset[1]
    assert first["bad_frames"] == 1 and _frame_levels(first["clip"])[2] == 3
    assert _frame_levels(first["clip"])[5] in (5, 7)  # the empty frame: a neighbour stands in
    assert second["bad_frames"] == 0 and second["bad_video"] == 0 and _frame_levels(second["clip"]) == list(range(1, 9))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{folder / 'image_00006.jpg'}: empty file (0 bytes); a neighbouring") for m in messages)
    png_notes = [m for m in messages if "a PNG image, not a JPEG; read with PIL" in m]
    assert len(png_notes) == 2 and not any("corrupt JPEG" in m for m in messages)  # once per folder


def test_frames_that_are_not_images_say_what_they_are(tmp_path, caplog):
    cfg = _dataset(tmp_path, n_videos=1)
    folder = tmp_path / "jpg" / "a" / "k0"
    (folder / "image_00002.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # a PNG cut short
    (folder / "image_00004.jpg").write_bytes(b"<html>not found</html>")
    (folder / "image_00006.jpg").write_bytes(b"\xff\xd8\xff\xe0 damaged")
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    _, failures, _ = JpegFolderSource(str(folder)).load(list(range(1, 9)), _full_box, (8, 8))
    assert failures[2].startswith("damaged PNG image, not a JPEG (")
    assert failures[4] == "not an image: neither JPEG nor a format PIL reads (first bytes b'<html>no')"
    assert failures[6].startswith("corrupt JPEG (")
    assert dataset[0]["bad_frames"] == 3


def test_the_jpeg_fast_path_still_takes_the_jpeg_frames_beside_a_png(tmp_path):
    """Only the frame that fails the JPEG path is decoded on its own; the others are resized
    together in the clip's tensor."""
    write_frames(tmp_path / "v", ramp_frames(8, 16, 16))
    _save_png(tmp_path / "v" / "image_00004.jpg", 40)
    regions, failures, _ = JpegFolderSource(str(tmp_path / "v")).load(list(range(1, 9)), _full_box, (8, 8))
    assert not failures and sorted(regions) == [4] and sorted(regions.resized_at) == [1, 2, 3, 5, 6, 7, 8]
    png = (tmp_path / "v" / "image_00004.jpg").read_bytes()
    assert decode_region(png, _full_box(16, 16), (8, 8), decoder="pil").mean() == 40
    with pytest.raises(DecodeError, match="a PNG image; --decoder simplejpeg reads JPEG only"):
        decode_region(png, _full_box(16, 16), (8, 8), decoder="simplejpeg")


def _audio_only_webm(path):
    """A real WebM holding one Opus audio stream and no video."""
    import av

    try:
        container = av.open(str(path), "w")
        stream = container.add_stream("libopus", rate=48000)
    except Exception as error:  # an FFmpeg build without libopus
        pytest.skip(f"cannot write Opus audio ({error})")
    with container:
        for number in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, number * 960
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_video_files_with_no_frames_give_the_exact_reason(tmp_path, caplog):
    """What classify and prepare say about a file (empty, no video stream, cut short) is what
    training, validation and recognition say too, instead of a list of possible causes."""
    from resnet3d.engine.windows import Unit, ViewPlan, WindowDataset
    from resnet3d.synthetic import write_mp4

    folder = tmp_path / "videos" / "a"
    write_mp4(folder / "good.mp4", ramp_frames(8, 16, 16))
    (folder / "empty.mp4").write_bytes(b"")
    data = (folder / "good.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    _audio_only_webm(folder / "audio.webm")
    keys = ["good", "empty", "cut", "audio"]
    path = write_json(tmp_path / "v.json", {"labels": ["a"], "database": {
        key: {"subset": "training", "annotations": {"label": "a"}} for key in keys}})
    cfg = DataConfig(video_path=str(tmp_path / "videos"), annotation_path=path, file_type="video",
                     sample_size=8, sample_duration=4)
    reasons = {"empty": "empty file (0 bytes)", "cut": "unreadable or truncated: ",
               "audio": "no video stream (streams: audio)"}
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert [dataset[i]["bad_video"] for i in range(4)] == [0, 1, 1, 1]
        sliding = build_dataset(cfg, "training", sampling="sliding", stride=4, train=False)
    assert len(sliding) == 2  # good.mp4's two windows
    for number, key in enumerate(keys[1:], start=1):
        name = str(folder / f"{key}.{'webm' if key == 'audio' else 'mp4'}")
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(name)]
        assert len(lines) == 2 and all(f"{name}: no frames ({reasons[key]}" in line for line in lines), lines
        windows = WindowDataset(dataset.videos, [Unit(key, (number,))], cfg, ViewPlan(4, 4))
        assert f"no frames ({reasons[key]}" in list(windows.unit_chunks(0))[0]["error"]


@pytest.mark.parametrize("file_type", ["video", "hdf5"])
def test_an_empty_file_with_a_segment_in_the_annotation_is_said_to_be_empty(tmp_path, caplog, file_type):
    """With the frame range given by the annotation the file is opened only when a clip is read:
    a 0-byte file then read as the reader's 'Invalid data found' / 'file signature not found'."""
    if file_type == "hdf5":
        pytest.importorskip("h5py")
    from resnet3d.synthetic import write_mp4

    folder = tmp_path / "videos" / "a"
    write_mp4(folder / "good.mp4", ramp_frames(8, 16, 16))
    empty = folder / ("empty.mp4" if file_type == "video" else "empty.hdf5")
    empty.write_bytes(b"")
    if file_type == "hdf5":
        import simplejpeg

        from resnet3d.prepare.hdf5 import write_video

        write_video(folder / "good.hdf5", [simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8))] * 8)
    path = write_json(tmp_path / "v.json", {"labels": ["a"], "database": {
        key: {"subset": "training", "annotations": {"label": "a", "segment": [1, 9]}} for key in ("good", "empty")}})
    cfg = DataConfig(video_path=str(tmp_path / "videos"), annotation_path=path, file_type=file_type,
                     sample_size=8, sample_duration=4)
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert dataset[1]["bad_video"] == 1
    assert f"{empty}: no readable frame (empty file (0 bytes))" in caplog.text, caplog.text


def test_hdf5_files_with_no_frames_give_the_reason(tmp_path, caplog):
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "hdf5" / "a"
    folder.mkdir(parents=True)
    with h5py.File(folder / "other.hdf5", "w") as handle:
        handle.create_dataset("frames", data=np.zeros(3))
    (folder / "empty.hdf5").write_bytes(b"")
    path = write_json(tmp_path / "h.json", {"labels": ["a"], "database": {
        key: {"subset": "training", "annotations": {"label": "a"}} for key in ("other", "empty")}})
    cfg = DataConfig(video_path=str(tmp_path / "hdf5"), annotation_path=path, file_type="hdf5", sample_size=8, sample_duration=4)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        build_dataset(cfg, "training", sampling="sliding", stride=4, train=False)
    assert f"{folder / 'other.hdf5'}: no frames (the HDF5 file has no dataset 'video' (its datasets: frames)); skipped" in caplog.text
    assert f"{folder / 'empty.hdf5'}: no frames (empty file (0 bytes)); skipped" in caplog.text
    # with the frames given by the annotation's segment, the file is first opened for a clip: same reason
    path = write_json(tmp_path / "s.json", {"labels": ["a"], "database": {
        "other": {"subset": "training", "annotations": {"label": "a", "segment": [0, 3]}}}})
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"), pytest.raises(UserError) as caught:
        build_dataset(cfg.with_changes(annotation_path=path), "training", sampling="center", train=False)[0]
    assert "no readable frame (the HDF5 file has no dataset 'video' (its datasets: frames))" in str(caught.value)


def test_flow_folders_name_an_n_frames_file_past_their_frames(tmp_path):
    from resnet3d.data.sources import FlowJpegFolderSource

    frames = np.ascontiguousarray(ramp_frames(6, 16, 16)[..., 0])
    write_frames(tmp_path / "f" / "u", frames, n_frames_file=False)
    write_frames(tmp_path / "f" / "v", frames, n_frames_file=False)
    (tmp_path / "f" / "n_frames").write_text("9")
    got = FlowJpegFolderSource(str(tmp_path / "f")).frame_bytes([5, 6, 7])
    assert isinstance(got[6], list) and "the n_frames file" in got[7] and "end at u/image_00006.jpg" in got[7]


def _segment_dataset(tmp_path, file_type):
    """Two videos of 6 real frames whose annotation segments (the successor's) ask for more:
    k0 frames 1-19 (its end is past the frames), k1 frames 10-19 (wholly past them)."""
    frames = ramp_frames(6, 16, 16)
    if file_type == "hdf5":
        pytest.importorskip("h5py")
        import simplejpeg

        from resnet3d.prepare.hdf5 import write_video

        (tmp_path / "videos" / "a").mkdir(parents=True)
        for key in ("k0", "k1"):
            write_video(tmp_path / "videos" / "a" / f"{key}.hdf5", [simplejpeg.encode_jpeg(f) for f in frames])
        segments = {"k0": [0, 19], "k1": [10, 20]}  # the successor's HDF5 JSON writes [0, n], read as [1, n + 1)
    else:
        for key in ("k0", "k1"):
            write_frames(tmp_path / "videos" / "a" / key, frames, n_frames_file=False)
        segments = {"k0": [1, 20], "k1": [10, 20]}
    path = write_json(tmp_path / "s.json", {"labels": ["a"], "database": {
        key: {"subset": "training", "annotations": {"label": "a", "segment": segment}} for key, segment in segments.items()}})
    cfg = DataConfig(video_path=str(tmp_path / "videos"), annotation_path=path, file_type=file_type,
                     sample_size=8, sample_duration=4)
    return build_dataset(cfg, "training", sampling="even", n_clips=3, train=False), path


@pytest.mark.parametrize("file_type", ["jpg", "hdf5"])
def test_a_segment_past_the_frames_names_the_annotation_the_key_and_the_fix(tmp_path, caplog, file_type):
    """A segment counted on other frames (frames extracted again at another rate after the
    annotation was made) sent windows past the last frame, said only as 'missing'."""
    dataset, path = _segment_dataset(tmp_path, file_type)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        items = [dataset[i] for i in range(len(dataset))]
    assert [item["bad_frames"] for item in items[:3]] == [0, 4, 4]  # windows 1-4, 8-11, 16-19 of k0
    assert all(item["bad_video"] == 1 for item in items[3:])  # k1 has no frame in 10-19
    held = "the folder's frames end at image_00006.jpg" if file_type == "jpg" else "the file holds 6 frames"
    for key, first in (("k0", 1), ("k1", 10)):
        line = next(r.getMessage() for r in caplog.records if f"/{key}" in r.getMessage())
        assert f"missing: the annotation {path} gives '{key}' a segment of frames {first} to 19, but {held}" in line
        assert "rebuild the annotation" in line and "extract the frames again" in line
    assert "no readable frame" in next(r.getMessage() for r in caplog.records if "/k1" in r.getMessage())


def test_a_frame_folder_gone_during_the_run_says_so(tmp_path, caplog):
    """A folder moved or deleted (or a network drive dropped) after the data set was read said
    'no readable frame (missing)', or with an n_frames file 'the folder holds no frame files'."""
    cfg = _dataset(tmp_path, n_videos=3)
    (tmp_path / "jpg" / "a" / "k2" / "n_frames").unlink()  # its frame count comes from the folder, read late
    dataset = build_dataset(cfg, "training", sampling="center", train=False)
    shutil.rmtree(tmp_path / "jpg" / "a" / "k1")
    shutil.rmtree(tmp_path / "jpg" / "a" / "k2")
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert dataset[1]["bad_video"] == 1 and dataset[2]["bad_video"] == 1
    for key in ("k1", "k2"):
        line = next(r.getMessage() for r in caplog.records if f"/{key}:" in r.getMessage())
        assert "the folder is gone (it was there when the data set was read" in line, line


def test_a_frame_without_read_permission_says_to_check_the_permissions(tmp_path, monkeypatch):
    """chmod 000 on a frame (or its folder): root reads it anyway, so the refusal is simulated at
    the one call that opens frame files."""
    import os

    from resnet3d.data import sources

    cfg = _dataset(tmp_path, n_videos=1)
    locked = str(tmp_path / "jpg" / "a" / "k0" / "image_00003.jpg")
    real = sources.read_bytes

    def read_bytes(path):
        if path == locked:
            raise PermissionError(13, os.strerror(13), path)
        return real(path)

    monkeypatch.setattr(sources, "read_bytes", read_bytes)
    got = JpegFolderSource(str(tmp_path / "jpg" / "a" / "k0")).frame_bytes([2, 3])
    assert isinstance(got[2], list)
    assert got[3] == "unreadable (Permission denied): check the permissions of the file and its folder"
    assert build_dataset(cfg, "training", sampling="center", train=False)[0]["bad_frames"] == 1


def _smooth_frame(height, width, level):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, np.full((height, width), level)], -1).astype(np.uint8)


def _exif_rotated(image, path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the originals' PIL loader does not apply it
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())


JPEG_FLAVOURS = {
    "grey": lambda image, path: image.convert("L").save(path, "JPEG", quality=95),
    "cmyk": lambda image, path: image.convert("CMYK").save(path, "JPEG", quality=95),
    "progressive": lambda image, path: image.save(path, "JPEG", quality=95, progressive=True),
    "exif": _exif_rotated,
    "444": lambda image, path: image.save(path, "JPEG", quality=95, subsampling=0),
    "422": lambda image, path: image.save(path, "JPEG", quality=95, subsampling=1),
    "420": lambda image, path: image.save(path, "JPEG", quality=95, subsampling=2),
    "sizes": lambda image, path: (image if int(path.name[6:11]) % 2 else image.resize((128, 96))).save(path, "JPEG", quality=95),
    "smaller than the crop": lambda image, path: image.resize((20, 15)).save(path, "JPEG", quality=95),
}


@pytest.mark.parametrize("flavour", sorted(JPEG_FLAVOURS))
def test_jpeg_flavours_give_the_pixels_pil_decodes(tmp_path, flavour):
    """Grey, CMYK, progressive, EXIF-rotated and every chroma subsampling, frames of two sizes in
    one folder, and frames smaller than the output: the clip is the frames as the originals' PIL
    loader decodes them (``convert('RGB')``), centre-cropped and resized, in the exact mode."""
    from resnet3d.data.spatial import center_box, resize_clip

    folder = tmp_path / "jpg" / "a" / "k0"
    folder.mkdir(parents=True)
    for index in range(1, 5):
        JPEG_FLAVOURS[flavour](Image.fromarray(_smooth_frame(48, 64, 40 * index)), folder / f"image_{index:05d}.jpg")
    path = write_json(tmp_path / "k.json", {"labels": ["a"], "database": {"k0": {"subset": "training",
                                                                                   "annotations": {"label": "a"}}}})
    cfg = DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=32, sample_duration=4,
                     decode_tolerance=1.0, fast_decode=False)
    item = build_dataset(cfg, "training", sampling="center", train=False)[0]
    assert item["bad_frames"] == 0 and item["clip"].shape == (4, 32, 32, 3)
    for index, got in enumerate(item["clip"], start=1):
        with Image.open(folder / f"image_{index:05d}.jpg") as image:
            pixels = np.asarray(image.convert("RGB"))
        box = center_box(pixels.shape[1], pixels.shape[0])
        want = resize_clip(torch.from_numpy(np.ascontiguousarray(pixels[box.y0:box.y1, box.x0:box.x1]))[None], (32, 32))[0]
        # the 128x96 frames are decoded at 1/2 scale (their crop still spans twice the output there)
        assert (got.int() - want.int()).abs().max() <= (2 if flavour == "sizes" else 1), (flavour, index)
