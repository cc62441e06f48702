"""One answer to "is this file a video?" for prepare, training on video files and classify."""
from pathlib import Path

import numpy as np
import pytest

import resnet3d
from resnet3d.commands.classify import find_videos as classify_inputs
from resnet3d.prepare.videos import find_videos as prepare_inputs
from resnet3d.synthetic import write_mp4
from resnet3d.video_files import VIDEO_EXTENSIONS, is_video_file


def _folder_of_videos(root: Path) -> Path:
    frames = np.full((4, 32, 32, 3), 90, dtype=np.uint8)
    write_mp4(root / "waving" / "a.mp4", frames)
    write_mp4(root / "waving" / "B.MP4", frames)
    # what copying from a Mac leaves beside each video: AppleDouble metadata, not a video
    (root / "waving" / "._a.mp4").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / "waving" / "notes.txt").write_text("not a video")
    return root


def test_is_video_file():
    assert is_video_file("clip.mp4") and is_video_file(Path("x/CLIP.AVI")) and is_video_file("a.b.webm")
    assert not is_video_file("._clip.mp4") and not is_video_file(".hidden.mkv")
    assert not is_video_file("clip.jpg") and not is_video_file("mp4") and not is_video_file("x/clip")


def test_prepare_and_classify_find_the_same_videos(tmp_path):
    root = _folder_of_videos(tmp_path / "videos")
    prepared = sorted(job.video.name for job in prepare_inputs(root, "kinetics").jobs)
    classified = sorted(Path(path).name for path, _, _ in classify_inputs([str(root)], "", ""))
    assert prepared == classified == ["B.MP4", "a.mp4"]


def test_one_list_of_video_extensions():
    package = Path(resnet3d.__file__).parent
    defining = sorted(path.relative_to(package).as_posix() for path in package.rglob("*.py")
                      if "VIDEO_EXTENSIONS = (" in path.read_text(encoding="utf-8"))
    assert defining == ["video_files.py"]
    assert ".mp4" in VIDEO_EXTENSIONS and all(ext == ext.lower() for ext in VIDEO_EXTENSIONS)


def _write(path: Path, n_frames=8, size=(32, 24), rotation=None, sample_aspect_ratio=None, times_ms=None):
    """H.264 frames with a blue band along the right edge (grey level 20 * frame index elsewhere),
    optionally with a display rotation (phones), non-square pixels or variable timestamps."""
    import av
    from fractions import Fraction

    width, height = size
    with av.open(str(path), "w", format="matroska" if path.suffix == ".mkv" else None) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if times_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(n_frames):
            picture = np.full((height, width, 3), 20 * (index + 1), dtype=np.uint8)
            picture[:, -width // 4:] = (10, 10, 250)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if times_ms:
                frame.pts, frame.time_base = times_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _blue_side(rgb: np.ndarray) -> str:
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 100)
    h, w = blue.shape
    edges = {"top": blue[: h // 8], "bottom": blue[-(h // 8):], "left": blue[:, : w // 8], "right": blue[:, -(w // 8):]}
    return max(edges, key=lambda side: edges[side].mean())


def _training_frames(path: Path, indices):
    from resnet3d.data.sources import VideoFileSource
    from resnet3d.data.spatial import Box

    regions, failures, _ = VideoFileSource(str(path)).load(indices, lambda w, h: Box(0, 0, w, h, w, h), None)
    assert failures == {}
    return [regions[i] for i in indices]


@pytest.mark.parametrize("rotation, side", [(90, "top"), (270, "bottom")])
def test_phone_rotation_is_applied_by_classify_overlay_and_training(tmp_path, rotation, side):
    """A 32x24 video a phone marks as turned by 90 degrees is shown 24x32 with the right edge on
    top (-90: at the bottom), as by a player, ffmpeg and ``prepare frames``; classify, its
    --overlay copy and training on video files saw it sideways."""
    from resnet3d.classify.clips import decode_frames
    from resnet3d.classify.overlay import write_overlay

    video = _write(tmp_path / "phone.mp4", rotation=rotation)
    shown = list(decode_frames(str(video)))
    assert len(shown) == 8 and shown[0].shape == (32, 24, 3) and _blue_side(shown[0]) == side
    assert write_overlay(str(video), tmp_path / "overlay.mp4", [(1, 4, "waving 0.90")]) == 8
    last = list(decode_frames(str(tmp_path / "overlay.mp4")))[-1]  # frames 5-8 carry no caption
    assert last.shape == (32, 24, 3) and _blue_side(last) == side
    trained = _training_frames(video, [1, 6])
    assert all(f.shape == (32, 24, 3) and _blue_side(f) == side for f in trained)


def test_non_square_pixels_are_shown_at_the_display_aspect_ratio(tmp_path):
    """16x24 pixels twice as wide as tall are a 32x24 picture (prepare frames' shape too)."""
    from fractions import Fraction

    from resnet3d.classify.clips import decode_frames

    video = _write(tmp_path / "anamorphic.mp4", size=(16, 24), sample_aspect_ratio=Fraction(2, 1))
    assert next(iter(decode_frames(str(video)))).shape == (24, 32, 3)
    assert _training_frames(video, [3])[0].shape == (24, 32, 3)


def test_variable_frame_rate_training_frames_show_what_is_on_screen(tmp_path):
    """Frames at 0, 40, 80, 200, 240 ... ms of a nominal 25 fps video: the instants 120 and
    160 ms (frames 4 and 5 of the 1/25 s grid) still show the frame from 80 ms, instead of
    being reported 'past the end of the video' and replaced by a neighbour."""
    times = [0, 40, 80, 200, 240, 280, 320, 360]
    video = _write(tmp_path / "phone.mkv", times_ms=times)
    frames = _training_frames(video, [1, 2, 3, 4, 5, 6, 7])
    grey = [round(float(f[:, :16].mean()) / 20) for f in frames]
    assert grey == [1, 2, 3, 3, 3, 4, 5]
