"""``resnet3d classify`` on awkward inputs: where listed videos' overlays go, linked folders,
dangling links, a one-pixel-high video, inputs whose clock restarts, and overlays that fail."""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from resnet3d.classify.overlay import TIME_BASE, OverlayClock, even_sized
from resnet3d.cli import main
from resnet3d.synthetic import render_video, write_mp4


def _video(path: Path, frames: int = 12, seed: int = 0) -> Path:
    write_mp4(path, render_video(seed % 4, frames, (48, 64), np.random.default_rng(seed)), fps=25)
    return path


def _encode(path: Path, codec: str, pictures, fmt: str, pix_fmt: str = "yuv420p") -> Path:
    """``pictures`` (T, H, W, 3) uint8 through ``codec`` into container ``fmt``, at 25 frames/s."""
    height, width = pictures.shape[1:3]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for picture in pictures:
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _frame_times_ms(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [round(float(frame.pts * stream.time_base) * 1000) for frame in container.decode(stream)]


def test_listed_videos_named_by_absolute_or_climbing_paths_keep_their_overlays_in_the_folder(
        our_checkpoint, tmp_path):
    """`--input LIST` lines were joined to the overlay folder as they stood: an absolute one or
    one with '..' put its overlay beside the input, and with --overwrite replaced a user's file."""
    elsewhere = tmp_path / "elsewhere"
    source = _encode(elsewhere.mkdir() or elsewhere / "clip.avi", "mpeg4",
                     render_video(1, 10, (48, 64), np.random.default_rng(2)), "avi")
    users_own = elsewhere / "clip.mp4"
    users_own.write_bytes(b"the user's own file, not an overlay")
    _video(tmp_path / "other" / "b.mp4")
    root = tmp_path / "root"
    root.mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text(f"{source}\n../other/b.mp4\n")
    overlay = tmp_path / "overlay"
    out = tmp_path / "labels.json"
    assert main(["classify", "--input", str(listing), "--video_root", str(root), "--model", str(our_checkpoint),
                 "--output", str(out), "--overlay", str(overlay), "--overwrite"]) == 0
    assert users_own.read_bytes() == b"the user's own file, not an overlay"
    records = json.loads(out.read_text())
    assert [record["overlay"] for record in records] == [str(overlay / "clip.mp4"), str(overlay / "b.mp4")]
    assert sorted(p.name for p in overlay.iterdir()) == ["b.mp4", "clip.mp4"]
    assert len(_frame_times_ms(overlay / "clip.mp4")) == 10


def test_linked_folders_are_searched_and_a_dangling_link_gets_an_error_entry(our_checkpoint, tmp_path, capsys):
    """Path.rglob did not follow symlinked folders (prepare frames does) and dropped a dangling
    link without a word; a link back up the tree must not loop."""
    real = tmp_path / "real"
    _video(real / "a.mp4")
    top = tmp_path / "top"
    _video(top / "own.mp4", seed=1)
    (top / "linked").symlink_to(real, target_is_directory=True)
    (top / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    (top / "loop").symlink_to(top, target_is_directory=True)
    out = tmp_path / "labels.json"
    assert main(["classify", str(top), "--model", str(our_checkpoint), "--output", str(out)]) == 1
    records = {Path(record["video"]).relative_to(top).as_posix(): record for record in json.loads(out.read_text())}
    assert sorted(records) == ["gone.mp4", "linked/a.mp4", "own.mp4"]
    assert "error" in records["gone.mp4"] and "error" not in records["linked/a.mp4"]
    printed = capsys.readouterr()
    assert str(top / "gone.mp4") in printed.err and "2 of 3 videos classified" in printed.out


def test_a_one_pixel_high_video_gets_its_overlay(our_checkpoint, tmp_path):
    """Cutting a 1-pixel side to an even size left nothing, and the whole run stopped with a traceback."""
    pictures = np.repeat(np.linspace(0, 250, 64, dtype=np.uint8)[None, None, :, None], 3, axis=3)
    source = _encode(tmp_path / "line.mkv", "ffv1", np.repeat(pictures, 6, axis=0), "matroska", pix_fmt="yuv444p")
    overlay = tmp_path / "overlay"
    assert main(["classify", str(source), "--model", str(our_checkpoint), "--output", str(tmp_path / "l.json"),
                 "--overlay", str(overlay)]) == 0
    with av.open(str(overlay / "line.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (2, 64, 3)
    assert even_sized(np.zeros((1, 1, 3), np.uint8)).shape == (2, 2, 3)
    assert even_sized(np.zeros((5, 7, 3), np.uint8)).shape == (4, 6, 3)


def test_an_input_whose_clock_restarts_plays_through_in_the_overlay(our_checkpoint, tmp_path):
    """Two transport streams joined end to end: the second half's times start again at 0. The
    copy used to squeeze that half into 1/60000 s steps after the first (invisible when played)."""
    rng = np.random.default_rng(3)
    halves = [_encode(tmp_path / f"{name}.ts", "mpeg2video", render_video(k, 30, (48, 64), rng), "mpegts")
              for k, name in enumerate(("first", "second"))]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "joined.ts").write_bytes(b"".join(half.read_bytes() for half in halves))
    overlay = tmp_path / "overlay"
    assert main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(tmp_path / "l.json"),
                 "--overlay", str(overlay)]) == 0
    assert _frame_times_ms(overlay / "joined.mp4") == [40 * index for index in range(60)]


def test_the_overlay_clock_restarts_forward_and_repeats_take_the_next_tick():
    clock = OverlayClock(step=2400)  # 25 frames/s in 1/60000 s
    times = [clock.pts(t) for t in (0.0, 0.04, 0.08, 0.08, 0.12, 0.08, 0.16, 0.20, 0.0, 0.04)]
    # a repeated time and a step of one frame back: the next free tick; five frames back: a restart
    assert times == [0, 2400, 4800, 4801, 7200, 7201, 9600, 12000, 14400, 16800]
    assert TIME_BASE == Fraction(1, 60000)


def test_an_overlay_that_cannot_be_written_costs_only_its_own_copy(our_checkpoint, tmp_path, capsys):
    """An overlay failing half-way stopped the run: the videos after it were never classified."""
    videos = tmp_path / "videos"
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        _video(videos / name, seed=len(name) + ord(name[0]))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "b.mp4").mkdir()  # a folder where b's copy goes: it cannot be renamed into place
    out = tmp_path / "labels.json"
    status = main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(out),
                   "--overlay", str(overlay), "--overwrite"])
    assert status == 1
    records = {Path(record["video"]).name: record for record in json.loads(out.read_text())}
    assert sorted(records) == ["a.mp4", "b.mp4", "c.mp4"] and all(records[n]["clips"] for n in records)
    assert "overlay_error" in records["b.mp4"] and "overlay" not in records["b.mp4"]
    assert records["c.mp4"]["overlay"] == str(overlay / "c.mp4") and (overlay / "c.mp4").is_file()
    assert "1 overlay(s) could not be written" in capsys.readouterr().out
    assert not [p for p in overlay.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("where", ["inside the input", "a file", "a file in the way"])
def test_overlay_folders_that_cannot_work_are_refused_before_any_video(our_checkpoint, tmp_path, capsys, where):
    videos = tmp_path / "videos"
    _video(videos / "sub" / "a.mp4")
    overlay = {"inside the input": videos / "overlays", "a file": tmp_path / "o.txt",
               "a file in the way": tmp_path / "overlay"}[where]
    if where == "a file":
        overlay.write_text("mine")
    if where == "a file in the way":
        overlay.mkdir()
        (overlay / "sub").write_text("mine")
    out = tmp_path / "labels.json"
    assert main(["classify", str(videos), "--model", str(our_checkpoint), "--output", str(out),
                 "--overlay", str(overlay)]) == 2
    message = capsys.readouterr().err
    assert "--overlay" in message and not out.exists()
    assert {"inside the input": "inside the input folder", "a file": "is a file",
            "a file in the way": "in the way of the folder"}[where] in message
    assert os.listdir(videos) == ["sub"]


def test_a_folder_listed_in_the_input_list_gives_its_videos(our_checkpoint, tmp_path):
    """It was one error entry, 'unreadable or truncated: Is a directory'."""
    _video(tmp_path / "root" / "clips" / "a.mp4")
    _video(tmp_path / "root" / "clips" / "deeper" / "b.mp4", seed=1)
    listing = tmp_path / "list.txt"
    listing.write_text("clips\n")
    out, overlay = tmp_path / "labels.json", tmp_path / "overlay"
    assert main(["classify", "--input", str(listing), "--video_root", str(tmp_path / "root"), "--model",
                 str(our_checkpoint), "--output", str(out), "--overlay", str(overlay)]) == 0
    records = json.loads(out.read_text())
    assert [Path(r["video"]).name for r in records] == ["a.mp4", "b.mp4"] and not any("error" in r for r in records)
    assert sorted(p.relative_to(overlay).as_posix() for p in overlay.rglob("*.mp4")) == ["clips/a.mp4",
                                                                                         "clips/deeper/b.mp4"]
