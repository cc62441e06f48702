"""Frames lost to corrupt data in ``prepare frames``: counted, named, and filled so that every
decoded frame keeps the number the originals' ``ffmpeg -i V image_%05d.jpg`` gives it.

The expected image sequences were measured with Debian's ffmpeg 5.1 on these very files (the
same PyAV encoding, the same bytes overwritten): ``ffmpeg -i bad.avi -q:v 2 image_%05d.jpg``,
each image matched to its source frame by its grey level."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import List

import numpy as np
import pytest
import simplejpeg

from resnet3d import cli
from resnet3d.prepare.decode import VOP_START, LostFrames, ResizeRule, VideoReader, fill_lost, is_not_coded_vop
from resnet3d.prepare.extract import ExtractOptions
from resnet3d.prepare.frames import prepare_frames

N_FRAMES = 30
OPTIONS = ExtractOptions(rule=ResizeRule(short_side=0), quality=90)


def write_grey_avi(path: Path, codec: str, gop_size: int = 5) -> Path:
    """30 frames of 64x48, frame i a uniform grey of 10 + 8 i (so each image says which frame it is)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.gop_size = gop_size
        for index in range(N_FRAMES):
            picture = np.full((48, 64, 3), 10 + 8 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def overwrite_packets(path: Path, indices: List[int]) -> None:
    """Overwrite the payload of the given frames' packets after their first 4 bytes (the AVI
    chunks around them stay intact, so only the decoder sees the damage)."""
    import av

    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for index in indices:
        position, size = packets[index]
        data[position + 4 : position + size] = bytes((j * 37) % 251 for j in range(size - 4))
    path.write_bytes(bytes(data))


def source_frames(folder: Path) -> List[int]:
    """Which source frame each image of a frame folder shows, in image order."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    assert names == [f"image_{i:05d}.jpg" for i in range(1, len(names) + 1)]
    return [int(round((simplejpeg.decode_jpeg((folder / n).read_bytes()).mean() - 10) / 8)) for n in names]


# lost frames (0-based) -> what ffmpeg 5.1 wrote: the source frame of each image
FFMPEG = {
    (7,): [0, 1, 2, 3, 4, 5, 6, 8, 8, *range(9, 30)],
    (5, 6): [0, 1, 2, 3, 4, 4, 7, 7, *range(8, 30)],
    (7, 8, 9): [0, 1, 2, 3, 4, 5, 6, 6, 6, 10, 10, *range(11, 30)],
    (3, 12, 13): [0, 1, 2, 4, 4, 5, 6, 7, 8, 9, 10, 11, 11, 14, 14, *range(15, 30)],
    (0,): list(range(1, 30)),
    (29,): list(range(0, 29)),
}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """One MJPEG and one MPEG-4 AVI per case, in a Kinetics-style folder, extracted once."""
    videos = tmp_path_factory.mktemp("damaged")
    for codec in ("mjpeg", "mpeg4"):
        write_grey_avi(videos / codec / "whole.avi", codec)
        for lost in FFMPEG:
            path = write_grey_avi(videos / codec / f"lost_{'_'.join(map(str, lost))}.avi", codec)
            overwrite_packets(path, list(lost))
    frames = tmp_path_factory.mktemp("frames")
    printed = io.StringIO()
    summary = prepare_frames(videos, frames, OPTIONS, workers=1, progress=False, stream=printed)
    return videos, frames, summary, printed.getvalue()


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
@pytest.mark.parametrize("lost", list(FFMPEG))
def test_lost_frames_are_filled_as_ffmpeg_fills_them(damaged, codec, lost):
    _, frames, _, _ = damaged
    folder = frames / codec / f"lost_{'_'.join(map(str, lost))}"
    assert source_frames(folder) == FFMPEG[lost]
    assert (folder / "n_frames").read_text() == str(len(FFMPEG[lost]))
    assert source_frames(frames / codec / "whole") == list(range(N_FRAMES))


def test_each_damaged_video_is_named_with_its_count(damaged):
    videos, _, summary, printed = damaged
    assert (summary.done, summary.failed) == (14, 0)
    expected = {(str(videos / codec / f"lost_{'_'.join(map(str, lost))}.avi"), len(lost), len(FFMPEG[lost]))
                for codec in ("mjpeg", "mpeg4") for lost in FFMPEG}
    assert set(summary.damaged) == expected
    assert "22 frames of 12 videos lost to corrupt data (named above)" in summary.line()
    line = (f"resnet3d prepare: {videos / 'mpeg4' / 'lost_7_8_9.avi'}: 3 frames could not be decoded (corrupt "
            "data); 30 frames written")
    assert line in printed and len(printed.splitlines()) == 12 and "whole.avi" not in printed


def test_a_frame_the_decoder_drops_without_an_error_is_counted(tmp_path):
    """FFmpeg's MPEG-4 decoder can return no frame for a damaged packet and no error either (it
    does for this one with the FFmpeg of PyAV 18): counting the packets it refused missed it."""
    import av

    path = tmp_path / "textured.avi"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 5
        for index in range(20):
            picture = (rng.integers(0, 40, (48, 64, 3)) + 3 * index).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    overwrite_packets(path, [7])
    with VideoReader(path) as reader:
        gaps = [lost for *_, lost in reader.frames_and_losses()]
    assert reader.stats.lost == 1 and gaps == [0] * 7 + [1] + [0] * 11
    assert reader.stats.bad_packets in (0, 1)  # 0 here: no error was raised for it


def test_a_video_with_too_many_lost_frames_fails_as_corrupt(tmp_path):
    """More than a tenth of the frames lost (the rule a truncated file fails by) is a failed video,
    with the reason; it used to be called truncated, though the file held every frame."""
    videos = tmp_path / "videos"
    overwrite_packets(write_grey_avi(videos / "walk" / "bad.avi", "mjpeg"), [5, 6, 7, 20])
    summary = prepare_frames(videos, tmp_path / "f", OPTIONS, workers=1, progress=False)
    assert summary.failures == [(str(videos / "walk" / "bad.avi"), "corrupt: 4 of its 30 frames could not be decoded")]
    assert not (tmp_path / "f" / "walk" / "bad").exists()


def test_the_command_says_so_and_still_succeeds(tmp_path, capsys):
    videos = tmp_path / "videos"
    overwrite_packets(write_grey_avi(videos / "walk" / "bad.avi", "mjpeg"), [5, 6])
    status = cli.main(["prepare", "frames", str(videos), str(tmp_path / "f"), "--short-side", "0", "--workers", "1",
                       "--no-progress"])
    assert status == 0  # done: every frame has a picture, and the numbering is ffmpeg's
    captured = capsys.readouterr()
    assert f"{videos / 'walk' / 'bad.avi'}: 2 frames could not be decoded (corrupt data)" in captured.err
    assert "1 done, 0 skipped, 0 failed" in captured.out and "2 frames of 1 video lost to corrupt data" in captured.out
    # with --fps each instant takes the nearest decoded frame: counted, no filling needed
    assert cli.main(["prepare", "frames", str(videos), str(tmp_path / "g"), "--short-side", "0", "--workers", "1",
                     "--no-progress", "--fps", "25"]) == 0
    assert "2 frames could not be decoded" in capsys.readouterr().err
    assert source_frames(tmp_path / "g" / "walk" / "bad") == [0, 1, 2, 3, 4, 4, 7] + list(range(7, N_FRAMES))


# -- frames the encoder marked not coded (Xvid's and DivX's dropped frames) -----------------------


def not_coded_vop(packet: bytes, time_increment_bits: int = 5) -> bytes:
    """The packet's MPEG-4 VOP header with vop_coded = 0, as Xvid writes a dropped frame: the
    decoder gives no frame for it, and ffmpeg's extraction fills it as any missing frame."""
    start = packet.rfind(VOP_START) + len(VOP_START)
    bits = "".join(f"{byte:08b}" for byte in packet[start:start + 8])
    end = 2  # vop_coding_type
    while bits[end] == "1":  # modulo_time_base
        end += 1
    end += 1 + 1 + time_increment_bits + 1  # its closing 0, a marker, vop_time_increment, a marker
    header = bits[:end] + "0" + "0"  # vop_coded = 0, then stuffing: a 0 and 1s to the byte's end
    header += "1" * (-len(header) % 8)
    return VOP_START + bytes(int(header[k:k + 8], 2) for k in range(0, len(header), 8))


def write_not_coded_avi(path: Path, indices) -> Path:
    """The 30 grey frames in MPEG-4, every frame intra (so a dropped one leaves the others exact),
    with the frames at ``indices`` replaced by not-coded VOPs (25 fps: 5 time-increment bits)."""
    import av

    source = write_grey_avi(path.with_name("intra_" + path.name), "mpeg4", gop_size=1)
    with av.open(str(source)) as original, av.open(str(path), "w", format="avi") as copy:
        stream = original.streams.video[0]
        target = copy.add_stream_from_template(stream)
        index = 0
        for packet in original.demux(stream):
            if not packet.size:
                continue
            data = not_coded_vop(bytes(packet)) if index in indices else bytes(packet)
            rewritten = av.Packet(data)
            rewritten.pts, rewritten.dts, rewritten.time_base = packet.pts, packet.dts, packet.time_base
            rewritten.stream = target
            rewritten.is_keyframe = index not in indices
            copy.mux(rewritten)
            index += 1
    source.unlink()
    return path


def test_not_coded_frames_are_filled_as_ffmpeg_fills_them_and_are_no_loss(tmp_path):
    """Xvid/DivX AVIs (HMDB-51's and UCF-101's era) mark dropped frames "not coded": ffmpeg's
    extraction fills them exactly as frames lost to corruption (the same sequences, measured with
    ffmpeg 5.1 on these files: a single one takes the frame after it). They are no damage: no warning, and a
    video with many of them does not fail (it failed as "truncated" before)."""
    videos = tmp_path / "videos"
    for lost in FFMPEG:
        write_not_coded_avi(videos / "walk" / f"nvop_{'_'.join(map(str, lost))}.avi", set(lost))
    many = write_not_coded_avi(videos / "walk" / "many.avi", set(range(1, 30, 3)))  # 10 of 30
    printed = io.StringIO()
    summary = prepare_frames(videos, tmp_path / "frames", OPTIONS, workers=1, progress=False, stream=printed)
    assert (summary.done, summary.failed, summary.damaged) == (len(FFMPEG) + 1, 0, [])
    assert printed.getvalue() == ""
    for lost, expected in FFMPEG.items():
        shown = source_frames(tmp_path / "frames" / "walk" / f"nvop_{'_'.join(map(str, lost))}")
        # (a not-coded last frame: the FFmpeg 8 of PyAV 18 gives the frame before once more when
        # it drains, where ffmpeg 5.1 gave nothing)
        assert shown == expected or (lost == (29,) and shown == expected + [28]), (lost, shown)
    shown = source_frames(tmp_path / "frames" / "walk" / "many")
    assert len(shown) == N_FRAMES and set(shown) == set(range(N_FRAMES)) - set(range(1, 30, 3))
    with VideoReader(many) as reader:
        gaps = [missing for *_, missing in reader.frames_and_losses()]
    assert (reader.stats.lost, reader.stats.not_coded, sum(gaps)) == (0, 10, 10)


def test_only_a_bare_mpeg4_vop_header_is_not_coded():
    header = VOP_START + bytes([0b01000101, 0b00111111])  # P, time 2 of 5 bits, vop_coded 0, stuffing
    assert is_not_coded_vop(header, "mpeg4")
    assert is_not_coded_vop(b"\x00\x00\x01\xb0\x01" + header, "mpeg4")  # headers repeated before it
    assert not is_not_coded_vop(header, "h264") and not is_not_coded_vop(b"\x7f" * 6, "mpeg4")
    assert not is_not_coded_vop(header + bytes(5), "mpeg4")  # a coded VOP is longer than its header


class _Packet:
    def __init__(self, pts, size=100, is_discard=False):
        self.pts, self.size, self.is_discard = pts, size, is_discard


def _gaps(packet_times, frame_times):
    """Packets demuxed all at once (as a decoder with delay sees them), then the frames."""
    losses = LostFrames()
    for pts in packet_times:
        losses.demuxed(_Packet(pts))
    return [losses.decoded(pts) for pts in frame_times], losses.total()


def test_lost_frames_are_placed_by_time():
    assert _gaps(range(10), [0, 1, 2, 5, 6, 9]) == ([0, 0, 0, 2, 0, 2], 4)
    assert _gaps(range(10), [2, 3, 4]) == ([0, 0, 0], 2 + 5)  # before the first and after the last: counted only
    # a clock that restarts midway (files joined end to end): nothing is lost
    assert _gaps([0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2]) == ([0] * 6, 0)
    # B-frames: packets in decoding order, frames in presentation order
    assert _gaps([0, 3, 1, 2, 6, 4, 5], [0, 1, 2, 3, 4, 5, 6]) == ([0] * 7, 0)
    # frames without times cannot be placed: the count is the packets less the frames
    assert _gaps(range(5), [None, None, None]) == ([0, 0, 0], 2)


def test_discarded_and_empty_packets_are_no_frames():
    losses = LostFrames()
    for packet in (_Packet(-2, is_discard=True), _Packet(-1, is_discard=True), _Packet(0), _Packet(None, size=0)):
        losses.demuxed(packet)
    assert losses.decoded(0) == 0 and losses.total() == 0


def test_fill_lost_repeats():
    frames = [("a", 0, 0, 0), ("b", 0, 0, 1), ("c", 0, 0, 0), ("d", 0, 0, 3), ("e", 0, 0, 0)]
    assert list(fill_lost(iter(frames))) == [("a", 1), ("b", 2), ("c", 3), ("d", 2), ("e", 1)]
    assert list(fill_lost(iter([]))) == []
