"""``resnet3d prepare frames`` on real files: odd sizes, portrait, rotation, 10-bit, grey, MJPEG
AVI, and the broken ones (zero bytes, truncated, audio only); resuming and replacing folders."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from prepare_videos import decoded_frame_count, write_audio_only, write_truncated, write_video
from resnet3d import cli
from resnet3d.errors import UserError
from resnet3d.prepare.decode import ResizeRule
from resnet3d.prepare.extract import ExtractOptions, extract_video
from resnet3d.prepare.frame_folders import image_name
from resnet3d.prepare.frames import CRASH_REASON, FAILURES_FILE, LOCK_FILE, exclusive_lock, prepare_frames, run_jobs
from resnet3d.prepare.videos import VideoJob, find_videos

SMALL = ExtractOptions(rule=ResizeRule(short_side=32), quality=90)


def jpeg_size(path: Path):
    height, width, _, _ = simplejpeg.decode_jpeg_header(path.read_bytes())
    return width, height


def red_block_centre(path: Path):
    """(row, column) of the red block, as fractions of the height and width."""
    rgb = simplejpeg.decode_jpeg(path.read_bytes())
    red = np.argwhere((rgb[..., 0] > 180) & (rgb[..., 2] < 90))
    row, col = red.mean(axis=0)
    return row / rgb.shape[0], col / rgb.shape[1]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "walk" / "odd.mp4", n_frames=10, size=(33, 47), pix_fmt="yuv444p")  # 4:2:0 needs even sizes
    write_video(root / "walk" / "portrait.avi", n_frames=8, size=(35, 49), codec="mjpeg")
    write_video(root / "run" / "rotated.mp4", n_frames=6, size=(64, 48), rotation=90)
    write_video(root / "run" / "tenbit.mkv", n_frames=5, size=(64, 48), pix_fmt="yuv420p10le")
    write_video(root / "run" / "grey.mp4", n_frames=4, size=(40, 40), pix_fmt="gray")
    (root / "run" / "empty.mp4").write_bytes(b"")
    write_truncated(root / "run" / "cut.avi")
    write_audio_only(root / "run" / "sound.mp4")
    (root / "run" / "notes.txt").write_text("not a video")
    return root


GOOD = {
    "walk/odd": ("walk/odd.mp4", (32, 46)),
    "walk/portrait": ("walk/portrait.avi", (32, 45)),
    "run/rotated": ("run/rotated.mp4", (32, 43)),  # 64x48 turned upright: 48x64
    "run/tenbit": ("run/tenbit.mkv", (43, 32)),
    "run/grey": ("run/grey.mp4", (32, 32)),
}


@pytest.fixture(scope="module")
def extracted(video_dir, tmp_path_factory):
    frame_dir = tmp_path_factory.mktemp("frames")
    summary = prepare_frames(video_dir, frame_dir, SMALL, workers=2, progress=False)
    return frame_dir, summary


def test_every_good_video_is_complete(video_dir, extracted):
    frame_dir, summary = extracted
    assert (summary.done, summary.skipped, summary.failed) == (5, 0, 3)
    assert summary.layout == "kinetics"
    for folder, (video, size) in GOOD.items():
        out = frame_dir / folder
        expected = decoded_frame_count(video_dir / video)
        names = sorted(os.listdir(out))
        assert names == sorted([image_name(i) for i in range(1, expected + 1)] + ["fps", "n_frames"]), folder
        assert (out / "n_frames").read_text() == str(expected)
        assert jpeg_size(out / "image_00001.jpg") == size, folder
    assert (frame_dir / "walk/odd/fps").read_text() == "25.0\n"


def test_failures_are_listed_with_reasons(video_dir, extracted):
    frame_dir, _ = extracted
    lines = (frame_dir / FAILURES_FILE).read_text().splitlines()
    assert lines[0] == "video\treason"
    reasons = dict(line.split("\t") for line in lines[1:])
    assert set(reasons) == {str(video_dir / "run" / n) for n in ("empty.mp4", "cut.avi", "sound.mp4")}
    assert reasons[str(video_dir / "run/empty.mp4")] == "empty file (0 bytes)"
    assert reasons[str(video_dir / "run/cut.avi")].startswith("truncated: decoded ")
    assert reasons[str(video_dir / "run/sound.mp4")] == "no video stream (streams: audio)"
    for name in ("empty", "cut", "sound"):  # nothing half-made is left, not even hidden
        assert not any(name in p for p in os.listdir(frame_dir / "run"))


def test_rotation_metadata_is_applied(extracted):
    frame_dir, _ = extracted
    # Upright (coded) the red block is top-left; turned 90 degrees counter-clockwise it is bottom-left.
    row, col = red_block_centre(frame_dir / "walk/portrait/image_00001.jpg")
    assert row < 0.3 and col < 0.3
    row, col = red_block_centre(frame_dir / "run/rotated/image_00001.jpg")
    assert row > 0.7 and col < 0.3


def test_grey_and_ten_bit_become_colour_jpegs(extracted):
    frame_dir, _ = extracted
    for folder in ("run/grey", "run/tenbit"):
        rgb = simplejpeg.decode_jpeg((frame_dir / folder / "image_00001.jpg").read_bytes())
        assert rgb.shape[2] == 3
    grey = simplejpeg.decode_jpeg((frame_dir / "run/grey/image_00002.jpg").read_bytes()).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 3  # a grey source stays grey
    tenbit = simplejpeg.decode_jpeg((frame_dir / "run/tenbit/image_00001.jpg").read_bytes())
    assert tenbit[0, 0, 0] > 180 and tenbit[0, 0, 2] < 90  # red stays red through 10 bits


def test_cli_exit_status_and_summary(video_dir, tmp_path, capsys):
    status = cli.main(["prepare", "frames", str(video_dir), str(tmp_path / "f"), "--short-side", "32",
                       "--workers", "1", "--no-progress"])
    assert status == 1  # three videos failed
    out = capsys.readouterr().out
    assert "5 done, 0 skipped, 3 failed" in out and FAILURES_FILE in out
    only_good = tmp_path / "good"
    write_video(only_good / "a.mp4", n_frames=3)
    assert cli.main(["prepare", "frames", str(only_good), str(tmp_path / "g"), "--no-progress"]) == 0
    assert jpeg_size(tmp_path / "g/a/image_00001.jpg") == (320, 240)  # default short side 240
    assert not (tmp_path / "g" / FAILURES_FILE).exists()


def visible(folder: Path):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _mtimes(folder: Path):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def one_video(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", n_frames=9, size=(48, 32))
    return videos, tmp_path / "frames"


def run(videos, frames, **changes):
    options = ExtractOptions(**{**SMALL.__dict__, **changes})
    return prepare_frames(videos, frames, options, workers=1, progress=False)


def test_finished_videos_are_skipped_untouched(one_video):
    videos, frames = one_video
    assert run(videos, frames).done == 1
    before = _mtimes(frames / "clip")
    summary = run(videos, frames)
    assert (summary.done, summary.skipped) == (0, 1)
    assert _mtimes(frames / "clip") == before


def test_partial_folders_of_other_tools_are_redone(one_video):
    videos, frames = one_video
    run(videos, frames)
    reference = sorted(os.listdir(frames / "clip"))
    for name in reference:  # an interrupted ffmpeg: 4 frames, no n_frames
        if name not in [image_name(i) for i in range(1, 5)]:
            (frames / "clip" / name).unlink()
    assert run(videos, frames).done == 1
    assert sorted(os.listdir(frames / "clip")) == reference
    (frames / "clip" / image_name(5)).unlink()  # a hole below n_frames
    assert run(videos, frames).done == 1
    assert sorted(os.listdir(frames / "clip")) == reference


def test_complete_folders_of_other_tools_are_adopted(one_video):
    videos, frames = one_video
    run(videos, frames)
    (frames / "clip" / "n_frames").unlink()
    (frames / "clip" / "fps").unlink()
    before = _mtimes(frames / "clip")
    summary = run(videos, frames)
    assert (summary.skipped, summary.adopted) == (1, 1)
    assert (frames / "clip" / "n_frames").read_text() == "9"
    assert (frames / "clip" / "fps").read_text() == "25.0\n"
    assert all(_mtimes(frames / "clip")[p] == t for p, t in before.items())  # frames untouched


def test_folders_holding_user_files_are_never_replaced_without_overwrite(one_video):
    videos, frames = one_video
    (frames / "clip").mkdir(parents=True)
    (frames / "clip" / image_name(1)).write_bytes(b"mine")
    (frames / "clip" / "notes.txt").write_text("my notes")
    summary = run(videos, frames)
    assert summary.failed == 1
    assert "notes.txt" in summary.failures[0][1] and "--overwrite" in summary.failures[0][1]
    assert (frames / "clip" / "notes.txt").read_text() == "my notes"
    assert run(videos, frames, overwrite=True).done == 1
    assert not (frames / "clip" / "notes.txt").exists()
    assert (frames / "clip" / "n_frames").read_text() == "9"
    assert not (frames / FAILURES_FILE).exists()  # the stale list goes once nothing fails


def test_leftovers_of_a_killed_run_are_cleared(one_video):
    videos, frames = one_video
    leftover = frames / ".clip.resnet3d-partial"
    leftover.mkdir(parents=True)
    (leftover / image_name(1)).write_bytes(b"half")
    assert run(videos, frames).done == 1
    assert sorted(p.name for p in frames.iterdir()) == ["clip"]


def test_fps_resampling_and_quality(one_video):
    videos, frames = one_video
    summary = run(videos, frames, fps=12.5)  # 9 frames at 25 fps = 0.36 s -> 4.5 -> 5 frames
    assert summary.frames == 5
    assert (frames / "clip" / "fps").read_text() == "12.5\n"
    low = run(videos, frames.with_name("low"), quality=20)
    assert low.done == 1
    assert (frames.with_name("low") / "clip" / image_name(1)).stat().st_size < (frames / "clip" / image_name(1)).stat().st_size


def test_activitynet_and_flat_layouts(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "v_abcdefghijk.mp4", n_frames=3)
    write_video(videos / "lmnopqrstuv.mp4", n_frames=3)
    summary = prepare_frames(videos, tmp_path / "an", SMALL, layout="activitynet", workers=1, progress=False)
    assert summary.done == 2
    assert visible(tmp_path / "an") == ["v_abcdefghijk", "v_lmnopqrstuv"]
    summary = prepare_frames(videos, tmp_path / "flat", SMALL, workers=1, progress=False)
    assert summary.layout == "flat"
    assert visible(tmp_path / "flat") == ["lmnopqrstuv", "v_abcdefghijk"]


def test_height_rule_and_same_name_videos(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", n_frames=2, size=(64, 48))
    write_video(videos / "a.mkv", n_frames=2, size=(64, 48))
    options = ExtractOptions(rule=ResizeRule(short_side=None, height=36))
    summary = prepare_frames(videos, tmp_path / "f", options, workers=1, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    assert "same output folder" in summary.failures[0][1]
    assert jpeg_size(tmp_path / "f/a/image_00001.jpg") == (48, 36)


def test_anamorphic_video_gets_its_display_shape(tmp_path):
    from fractions import Fraction

    video = write_video(tmp_path / "wide.mp4", n_frames=2, size=(64, 48), sample_aspect_ratio=Fraction(2, 1))
    outcome = extract_video(video, tmp_path / "wide", SMALL)
    assert outcome.status == "done"
    assert jpeg_size(tmp_path / "wide" / image_name(1)) == (85, 32)  # shown as 128x48


def test_mirrored_rotation(tmp_path):
    video = write_video(tmp_path / "m.mp4", n_frames=2, size=(64, 48), rotation=90, hflip=True)
    assert extract_video(video, tmp_path / "m", SMALL).status == "done"
    row, col = red_block_centre(tmp_path / "m" / image_name(1))
    assert row > 0.7 and col > 0.7  # turned counter-clockwise, then mirrored: bottom-right, as ffmpeg shows it


def test_hdf5_output(tmp_path):
    h5py = pytest.importorskip("h5py")
    videos = tmp_path / "videos"
    write_video(videos / "jump" / "x.mp4", n_frames=7, size=(48, 32))
    options = ExtractOptions(rule=ResizeRule(short_side=32), hdf5=True)
    assert prepare_frames(videos, tmp_path / "h5", options, workers=1, progress=False).done == 1
    path = tmp_path / "h5" / "jump" / "x.hdf5"
    with h5py.File(path, "r") as handle:
        video = handle["video"]
        assert len(video) == 7 == decoded_frame_count(videos / "jump" / "x.mp4")
        assert video.attrs["fps"] == 25.0
        for element in video:
            assert simplejpeg.decode_jpeg(element.tobytes()).shape == (32, 48, 3)
    assert sorted(p.name for p in (tmp_path / "h5" / "jump").iterdir()) == ["x.hdf5"]
    assert prepare_frames(videos, tmp_path / "h5", options, workers=1, progress=False).skipped == 1
    assert cli.main(["prepare", "frames", str(videos), str(tmp_path / "cli"), "--hdf5", "--size", "32",
                     "--n_jobs", "-1", "--no-progress"]) == 0
    with h5py.File(tmp_path / "cli" / "jump" / "x.hdf5", "r") as handle:
        assert simplejpeg.decode_jpeg(handle["video"][0].tobytes()).shape == (32, 48, 3)


def test_hdf5_without_h5py_is_a_clear_error(monkeypatch):
    import sys

    from resnet3d.errors import UserError
    from resnet3d.prepare.hdf5 import require_h5py

    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(UserError, match=r'pip install "resnet3d\[hdf5\]"'):
        require_h5py()


def crash_on_boom(video: Path, output: Path, options: ExtractOptions):
    """Stands in for a decoder that crashes the process on one file."""
    if video.stem == "boom":
        os._exit(3)
    return extract_video(video, output, options)


@pytest.mark.slow
def test_a_crashing_worker_costs_only_its_video(tmp_path):
    videos = tmp_path / "videos"
    jobs = []
    for name in ("a", "boom", "b", "c"):
        write_video(videos / f"{name}.mp4", n_frames=3)
        jobs.append(VideoJob(videos / f"{name}.mp4", Path(name)))
    outcomes = {job.video.stem: outcome for job, outcome in run_jobs(jobs, tmp_path / "f", SMALL, 2, crash_on_boom)}
    assert sorted(outcomes) == ["a", "b", "boom", "c"]
    assert outcomes["boom"].status == "failed" and outcomes["boom"].reason == CRASH_REASON
    assert all(outcomes[n].status in ("done", "skipped") for n in "abc")
    assert all((tmp_path / "f" / n / "n_frames").read_text() == "3" for n in "abc")


def test_second_run_on_same_dir_is_refused(tmp_path):
    import fcntl

    from resnet3d.errors import UserError

    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", n_frames=2)
    frames = tmp_path / "frames"
    frames.mkdir()
    with open(frames / LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242 somehost\n")
        held.flush()
        with pytest.raises(UserError, match="another 'resnet3d prepare frames' .*process 4242 on somehost"):
            prepare_frames(videos, frames, SMALL, workers=1, progress=False)
        assert (frames / LOCK_FILE).exists()  # the refused run leaves the holder's lock alone
        assert not (frames / "a").exists()
    shutil.rmtree(frames)


def test_a_finished_run_leaves_no_lock_file_and_the_next_run_takes_a_new_one(tmp_path):
    """The lock file went with the run (it was left in every FRAME_DIR). Removing it must not let
    two runs in: a run that locked the file just before the holder removed it sees that the name
    now points elsewhere and locks the new file, where the next run finds it."""
    import fcntl

    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", n_frames=2)
    frames = tmp_path / "frames"
    assert prepare_frames(videos, frames, SMALL, workers=1, progress=False).done == 1
    assert sorted(p.name for p in frames.iterdir()) == ["a"]

    stale = open(frames / LOCK_FILE, "a+")  # a run that opened the lock file ...
    calls = []
    real_stat = os.stat

    def holder_finishes_meanwhile(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE) and not calls:
            calls.append(path)
            os.unlink(path)  # ... while the holder removed it and let go
        return real_stat(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "stat", holder_finishes_meanwhile)
        with exclusive_lock(frames):
            assert calls  # the first file was gone when checked: the lock is on the new file
            with open(frames / LOCK_FILE) as current:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(current, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(UserError, match="another 'resnet3d prepare frames'"):
                with exclusive_lock(frames):
                    pass
    stale.close()
    assert not (frames / LOCK_FILE).exists()


def test_a_full_disk_stops_the_run_and_odd_errors_fail_one_video(one_video, monkeypatch):
    import errno

    from resnet3d.errors import UserError
    from resnet3d.prepare import extract

    videos, frames = one_video

    def no_space(video, folder, options):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / image_name(1)))

    monkeypatch.setattr(extract, "_write_frames", no_space)
    with pytest.raises(UserError, match="No space left on device; make room and run again"):
        run(videos, frames)
    assert not list(frames.iterdir())  # the lock file goes with the run, however it ends

    def bug(video, folder, options):
        raise ValueError("something odd")

    monkeypatch.setattr(extract, "_write_frames", bug)
    summary = run(videos, frames)
    assert summary.failures == [(str(videos / "clip.mp4"), "unexpected error, please report it: ValueError: something odd")]


def _variable_rate_mkv(path: Path, times_ms, size=(48, 32)) -> Path:
    """Matroska (no frame count in its index) with frames at ``times_ms``, nominally 25 fps, as
    phones record when the light drops: fewer frames than duration x 25."""
    import av
    from fractions import Fraction

    width, height = size
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * index % 250, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_variable_frame_rate_matroska_is_complete_and_a_cut_one_is_not(tmp_path):
    """12 frames over 0.84 s (21 at the nominal 25 fps) reach the end: done, every frame. The
    same file cut in half still fails as truncated."""
    times = [0, 40, 80, 200, 240, 280, 400, 440, 480, 600, 700, 800]
    video = _variable_rate_mkv(tmp_path / "phone.mkv", times)
    outcome = extract_video(video, tmp_path / "phone", SMALL)
    assert (outcome.status, outcome.reason, outcome.frames) == ("done", "", 12)
    cut = tmp_path / "cut.mkv"
    long_video = _variable_rate_mkv(tmp_path / "long.mkv", [40 * i for i in range(60)])
    cut.write_bytes(long_video.read_bytes()[: long_video.stat().st_size // 2])
    outcome = extract_video(cut, tmp_path / "cut", SMALL)
    assert outcome.status == "failed" and outcome.reason.startswith("truncated: decoded ")


def test_a_layout_that_finds_no_video_is_an_error_naming_the_layout_that_would(tmp_path, capsys):
    """--layout ucf101 on loose videos, --layout activitynet on class folders, videos a level too
    deep: each used to write nothing and exit 0."""
    loose = tmp_path / "loose"
    write_video(loose / "v_a_g01_c01.avi", n_frames=2, codec="mjpeg")
    write_video(loose / "v_b_g01_c01.avi", n_frames=2, codec="mjpeg")
    frame_dir = tmp_path / "frames"
    assert cli.main(["prepare", "frames", str(loose), str(frame_dir), "--layout", "kinetics", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"no video in a class folder of {loose}, but 2 directly in it (e.g. {loose}/v_a_g01_c01.avi)" in err
    assert "--layout kinetics reads VIDEO_DIR/<class>/<video> -> FRAME_DIR/<class>/<video>/" in err
    assert "for loose videos pass --layout flat (VIDEO_DIR/<video> -> FRAME_DIR/<video>/)" in err
    # UCF-101's split files name each video's class; flat frame folders would never be found in training
    assert cli.main(["prepare", "frames", str(loose), str(frame_dir), "--layout", "ucf101", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"no video in a class folder of {loose}, but 2 directly in it" in err and "--layout flat" not in err
    assert f"resnet3d prepare ucf101-json ANNOTATION_DIR {loose} OUT_DIR" in err
    assert not frame_dir.exists()
    assert cli.main(["prepare", "frames", str(loose), str(frame_dir), "--layout", "flat", "--no-progress"]) == 0
    assert visible(frame_dir) == ["v_a_g01_c01", "v_b_g01_c01"]

    classes = tmp_path / "classes"
    write_video(classes / "jump" / "j1.mp4", n_frames=2)
    with pytest.raises(UserError, match=r"no video directly in .*classes, but 1 in class folders \(e.g. .*jump/j1.mp4\): "
                                        r"--layout flat reads VIDEO_DIR/<video> -> FRAME_DIR/<video>/; for class "
                                        r"folders pass --layout kinetics, ucf101 or hmdb51"):
        prepare_frames(classes, tmp_path / "an", SMALL, layout="flat", workers=1, progress=False)
    # ActivityNet's subfolders are splits (train_val/, test/): its JSON places them in v_<id>/
    with pytest.raises(UserError, match=r"no video directly in .*classes, but 1 in its subfolders \(e.g. .*jump/j1.mp4\): "
                                        r"--layout activitynet reads VIDEO_DIR/<video> -> FRAME_DIR/v_<id>/; pass "
                                        r"--annotation with the ActivityNet JSON"):
        prepare_frames(classes, tmp_path / "an", SMALL, layout="activitynet", workers=1, progress=False)
    write_video(tmp_path / "deep" / "train" / "jump" / "j2.mp4", n_frames=2)
    with pytest.raises(UserError, match=r"only deeper \(e.g. .*deep/train/jump/j2.mp4\): --layout hmdb51 reads .*give "
                                        r"the folder that holds the class folders"):
        prepare_frames(tmp_path / "deep", tmp_path / "hm", SMALL, layout="hmdb51", workers=1, progress=False)
    (tmp_path / "linked").mkdir()  # a symlinked data set folder, as extraction follows it
    (tmp_path / "linked" / "UCF-101").symlink_to(tmp_path / "deep" / "train")
    with pytest.raises(UserError, match=r"only deeper \(e.g. .*linked/UCF-101/jump/j2.mp4\)"):
        prepare_frames(tmp_path / "linked", tmp_path / "ln", SMALL, layout="ucf101", workers=1, progress=False)
    # prepare fps finds its videos the same way, and says the same
    assert cli.main(["prepare", "fps", str(loose), str(frame_dir), "--layout", "kinetics"]) == 2
    assert "for loose videos pass --layout flat" in capsys.readouterr().err


def test_an_annotation_naming_none_of_the_videos_is_an_error(tmp_path):
    import json

    write_video(tmp_path / "videos" / "mine.mp4", n_frames=2)
    annotation = tmp_path / "k.json"
    annotation.write_text(json.dumps({"labels": ["a"], "database": {
        "abcdefghijk_000001_000011": {"subset": "training", "annotations": {"label": "a"}}}}))
    with pytest.raises(UserError, match=r"none of the 1 videos under .*videos is named by a key of .*k.json \(e.g. "
                                        r"mine.mp4; the JSON's keys look like 'abcdefghijk_000001_000011'\)"):
        prepare_frames(tmp_path / "videos", tmp_path / "f", SMALL, workers=1, progress=False, annotation=annotation)


def test_videos_a_layout_ignores_beside_ones_it_takes_are_named(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "jump" / "j1.mp4", n_frames=2)
    write_video(videos / "stray.mp4", n_frames=2)
    summary = prepare_frames(videos, tmp_path / "f", SMALL, layout="ucf101", workers=1, progress=False)
    assert summary.done == 1
    assert f"1 video outside the 'ucf101' layout ignored (e.g. {videos}/stray.mp4)" in summary.line()


def test_videos_below_a_class_folder_and_dangling_links_are_not_lost_without_a_word(tmp_path):
    """A video one folder below its class folder was neither extracted nor counted, and a
    dangling link named like a video vanished from the count and the failures list."""
    videos = tmp_path / "videos"
    write_video(videos / "jump" / "j1.mp4", n_frames=2)
    write_video(videos / "jump" / "takes" / "j2.mp4", n_frames=2)
    (videos / "jump" / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    summary = prepare_frames(videos, tmp_path / "f", SMALL, workers=1, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    assert f"1 video outside the 'kinetics' layout ignored (e.g. {videos}/jump/takes/j2.mp4)" in summary.line()
    rows = (tmp_path / "f" / FAILURES_FILE).read_text().splitlines()
    assert rows[1].startswith(f"{videos}/jump/gone.mp4\t")


def test_annotation_mode_follows_symlinked_folders(tmp_path):
    """As the layouts do: a download folder linked into VIDEO_DIR was not searched."""
    import json

    write_video(tmp_path / "store" / "abcdefghijk_000001_000011.mp4", n_frames=2)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "linked").symlink_to(tmp_path / "store", target_is_directory=True)
    (videos / "loop").symlink_to(videos, target_is_directory=True)  # a cycle ends
    annotation = tmp_path / "k.json"
    annotation.write_text(json.dumps({"labels": ["a"], "database": {
        "abcdefghijk_000001_000011": {"subset": "training", "annotations": {"label": "a"}}}}))
    summary = prepare_frames(videos, tmp_path / "f", SMALL, workers=1, progress=False, annotation=annotation)
    assert summary.done == 1 and summary.missing == 0
    assert (tmp_path / "f" / "a" / "abcdefghijk_000001_000011" / "image_00001.jpg").is_file()


def test_a_video_file_given_as_video_dir_is_named_as_such(tmp_path):
    video = write_video(tmp_path / "one.mp4", n_frames=2) or tmp_path / "one.mp4"
    with pytest.raises(UserError, match=r"one.mp4 is a file: prepare frames takes the folder that holds the videos"):
        prepare_frames(video, tmp_path / "f", SMALL, workers=1, progress=False)


def _touch(*paths: Path) -> None:
    for path in paths:  # the layouts go by names: an empty file named like a video is one
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_one_split_folder_under_splits_gives_the_class_layouts_folders_or_stops(tmp_path, capsys):
    """--layout splits (DATASET mit) given one split folder: class folders of loose videos give
    <class>/<video>, as --layout kinetics does. A class folder that also holds a folder of videos
    read as a split folder: its own videos were dropped without a word and the subfolder's taken
    as a class (old/b). Such a folder is ambiguous, so the run stops before writing anything."""
    training = tmp_path / "Moments_in_Time_Raw" / "training"
    _touch(training / "clapping" / "a.mp4", training / "clapping" / "a2.mp4", training / "running" / "c.mp4")
    for layout in ("splits", "kinetics"):
        assert [str(job.output) for job in find_videos(training, layout).jobs] == [
            "clapping/a", "clapping/a2", "running/c"]

    _touch(training / "clapping" / "old" / "b.mp4")
    assert [str(job.output) for job in find_videos(training, "kinetics").jobs] == [
        "clapping/a", "clapping/a2", "running/c"]
    with pytest.raises(UserError) as refused:
        find_videos(training, "splits")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{training / 'clapping'}/ holds both loose videos (e.g. {training}/clapping/a.mp4) "
                              f"and folders of videos (e.g. {training}/clapping/old/b.mp4)")
    assert f"if {training} is one split folder, whose subfolders are classes, pass --layout kinetics" in message
    assert message.endswith("Nothing written")
    frames = tmp_path / "jpg"
    assert cli.main(["prepare", "frames", str(training), str(frames), "mit", "--no-progress"]) == 2
    assert "holds both loose videos" in capsys.readouterr().err and not frames.exists()

    # in a folder of split folders too: a split folder's loose videos beside its class folders
    _touch(tmp_path / "k" / "train" / "jump" / "j.mp4", tmp_path / "k" / "train" / "stray.mp4",
           tmp_path / "k" / "val" / "jump" / "v.mp4")
    with pytest.raises(UserError, match=r"k/train/ holds both loose videos \(e.g. .*k/train/stray.mp4\) and folders "
                                        r"of videos \(e.g. .*k/train/jump/j.mp4\)"):
        find_videos(tmp_path / "k", "splits")
