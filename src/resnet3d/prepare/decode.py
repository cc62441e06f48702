"""Decoding one video with PyAV: frames as display-oriented, resized YUV 4:2:0 planes.

Why YUV planes: libjpeg-turbo encodes them directly (``simplejpeg.encode_jpeg_yuv_planes``), so
a frame goes decoder -> one swscale pass (resize + limited-to-full range) -> JPEG without ever
being expanded to RGB and converted back. The colours are those of ``ffmpeg -i V
image_%05d.jpg``, the originals' extraction, so the frames match what the released models saw.

Also handled here:

- rotation and mirroring from the display matrix (phone videos), as ffmpeg's autorotate does;
- the sample aspect ratio (anamorphic video is resized to its display shape);
- any pixel format swscale reads (10-bit, grey, 4:2:2, 4:4:4, RGB, palette);
- ``--fps`` resampling: each output instant k/F takes the decoded frame nearest to it;
- damaged input: corrupt packets are skipped, the frames lost to them counted (``LostFrames``)
  and, without ``--fps``, filled as ffmpeg fills them (``fill_lost``); a file that ends early is
  reported as truncated.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

# How much of the container's announced length must decode before a video counts as complete.
# Generous on purpose: edit lists, audio-length durations and variable frame rates all make the
# announced length approximate, while a truncated download usually loses far more.
COMPLETE_FRACTION = 0.9
MAX_CONSECUTIVE_BAD_PACKETS = 100


class VideoError(Exception):
    """A video that cannot be turned into frames; the message is the reason written to the
    failure list (``prepare_failures.tsv``)."""


def rescale_round(a: int, b: int, c: int) -> int:
    """``a * b / c`` rounded half up, as FFmpeg's ``av_rescale`` sizes ``scale=-1:H``."""
    return (a * b + c // 2) // c


@dataclass(frozen=True)
class ResizeRule:
    """``short_side``: the successor's rule (short side to this length, default 240);
    ``height``: the seed's rule (height to this length); neither: keep the display size."""

    short_side: Optional[int] = 240
    height: Optional[int] = None

    def target(self, width: int, height: int) -> Tuple[int, int]:
        """Output (width, height) for a display-oriented input, aspect ratio kept."""
        if self.height:
            out_h = self.height
            out_w = rescale_round(out_h, width, height)
        elif self.short_side:
            if width >= height:
                out_h = self.short_side
                out_w = rescale_round(out_h, width, height)
            else:
                out_w = self.short_side
                out_h = rescale_round(out_w, height, width)
        else:
            out_w, out_h = width, height
        return max(1, out_w), max(1, out_h)


@dataclass(frozen=True)
class Orientation:
    """How to turn a decoded (coded-orientation) plane into the displayed one."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, plane: np.ndarray) -> np.ndarray:
        """``plane``: (H, W) or (H, W, channels)."""
        if self.transpose:
            plane = plane.swapaxes(0, 1)
        if self.flip_rows:
            plane = plane[::-1]
        if self.flip_cols:
            plane = plane[:, ::-1]
        return plane

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)


IDENTITY = Orientation()


def orientation_from_display_matrix(matrix: Sequence[int]) -> Orientation:
    """FFmpeg's display matrix (9 int32, ``x' = a*x + c*y``, ``y' = b*x + d*y``) -> the transpose
    and flips that show the frame upright. Angles other than multiples of 90 degrees are ignored."""
    a, b, _, c, d = (float(v) for v in matrix[:5])
    scale = max(abs(a), abs(b), abs(c), abs(d))
    if scale == 0:
        return IDENTITY
    a, b, c, d = (0.0 if abs(v) < 0.1 * scale else v for v in (a, b, c, d))
    if b == 0 and c == 0 and a and d:
        return Orientation(transpose=False, flip_rows=d < 0, flip_cols=a < 0)
    if a == 0 and d == 0 and b and c:
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    return IDENTITY


def frame_orientation(frame) -> Orientation:
    from av.sidedata.sidedata import Type

    try:
        side = frame.side_data.get(Type.DISPLAYMATRIX)
    except (AttributeError, KeyError, TypeError):
        side = None
    if side is None:
        return IDENTITY
    raw = bytes(side)
    if len(raw) < 36:
        return IDENTITY
    return orientation_from_display_matrix(np.frombuffer(raw[:36], dtype="<i4").tolist())


def _seconds(value, time_base) -> Optional[float]:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


@dataclass
class DecodeStats:
    decoded: int = 0
    bad_packets: int = 0  # packets the decoder refused with an error
    lost: int = 0  # frames the file holds that never decoded (LostFrames), known once decoding ended
    not_coded: int = 0  # frames the encoder marked "not coded": filled as ffmpeg fills a missing one (fill_lost)
    covered_s: float = 0.0  # from the first frame's time to the end of the last one
    read_error: Optional[str] = None  # demuxing stopped early with this error


# An MPEG-4 Part 2 VOP start code. A "not coded" VOP (vop_coded = 0: Xvid's and DivX's drop frames,
# VirtualDub's frame-rate padding) is a header of at most 22 bits after it (16 of them
# vop_time_increment; one more per second modulo_time_base counts) and its stuffing to the byte:
# 3 bytes at most, 4 with up to 9 seconds counted. The decoder gives no frame for it. A coded VOP's header can be as short
# (a P-VOP's is 23 bits at 25 fps, whose vop_time_increment is 5 bits; 13 bits at the least), but
# one bit or more per macroblock follows it (a skipped one's not_coded flag; an intra one carries
# far more), then its stuffing: 14 + N bits or more for N macroblocks. So a coded VOP of a picture
# of 19 macroblocks or more (80x64 pixels has 20) is longer than 4 bytes after the start code;
# is_not_coded_vop assumes pictures no smaller (smaller ones pass only while their macroblocks
# carry more than a bit, as intra ones do).
VOP_START = b"\x00\x00\x01\xb6"
NOT_CODED_VOP_MAX_BYTES = 4
NOT_CODED_PACKET_MAX_BYTES = 64  # the VOP, and headers an encoder may repeat before it


def is_not_coded_vop(payload: bytes, codec: str) -> bool:
    """An MPEG-4 packet that only says "nothing changed": no frame comes out of the decoder for
    it, and ffmpeg's extraction fills it as it fills any missing frame (``fill_lost``: a single one
    takes the frame after it, not the one before that the encoder meant), which we match."""
    if codec != "mpeg4" or len(payload) > NOT_CODED_PACKET_MAX_BYTES:
        return False
    start = payload.rfind(VOP_START)
    return start >= 0 and len(payload) - start - len(VOP_START) <= NOT_CODED_VOP_MAX_BYTES


class LostFrames:
    """The frames of a stream that never come out of the decoder: corrupt data, or frames the
    encoder marked not coded (``is_not_coded_vop``), which are no loss but are filled the same way.

    Counting the packets the decoder refuses is not enough: FFmpeg's MPEG-4 Part 2 decoder drops a
    frame whose header is damaged without an error. So losses are found by time instead: every
    packet demuxed is a frame at its own time, and a frame decoded at time t settles the packet
    times pending after the previous frame's: the one equal to t is that frame, the ones before it
    are frames lost between the two (decoders hand frames out in presentation order). Times at or
    before the previous frame's stay pending (a clock that restarts midway, a repeated time) and
    are matched later or counted at the end. A frame without a time ends the placing: the count is
    then the packets less the frames.
    """

    def __init__(self, codec: str = "") -> None:
        self.codec = codec
        self.pending: Optional[List[int]] = []  # packet times not yet settled, sorted; None: not placing
        self.previous: Optional[int] = None  # the last frame's time
        self.packets = 0
        self.frames = 0
        self.placed = 0  # losses found between frames (and before the first), not-coded ones included
        self.not_coded_times: Set[int] = set()  # times of the not-coded packets still pending
        self.not_coded_packets = 0
        self.not_coded_missing = 0  # not-coded packets found among the placed losses

    def demuxed(self, packet) -> None:
        if not packet.size or getattr(packet, "is_discard", False):  # (discarded: an edit list's pre-roll)
            return
        self.packets += 1
        not_coded = (self.codec == "mpeg4" and packet.size <= NOT_CODED_PACKET_MAX_BYTES
                     and is_not_coded_vop(bytes(packet), self.codec))
        self.not_coded_packets += not_coded
        if self.pending is not None and packet.pts is not None:
            bisect.insort(self.pending, packet.pts)
            if not_coded:
                self.not_coded_times.add(packet.pts)

    def decoded(self, pts: Optional[int]) -> int:
        """A frame at ``pts`` came out: how many frames were lost between the previous one and it
        (0 for the first frame: losses before it are counted, not placed)."""
        self.frames += 1
        if pts is None:
            self.pending = None
        if self.pending is None:
            return 0
        start = 0 if self.previous is None else bisect.bisect_right(self.pending, self.previous)
        if self.previous is not None and pts <= self.previous:  # the clock went back: nothing between
            start = bisect.bisect_left(self.pending, pts)
        end = bisect.bisect_left(self.pending, pts)
        lost = end - start
        for missing in self.pending[start:end]:
            if missing in self.not_coded_times:
                self.not_coded_missing += 1
                self.not_coded_times.discard(missing)
        matched = end < len(self.pending) and self.pending[end] == pts
        del self.pending[start:end + 1 if matched else end]
        first = self.previous is None
        self.previous = pts
        self.placed += lost
        return 0 if first else lost

    def missing(self) -> int:
        """Frames that never came out of the decoder, once the stream has been read to its end."""
        if self.pending is None:
            return max(0, self.packets - self.frames)
        return self.placed + len(self.pending)

    def not_coded(self) -> int:
        """The missing frames the encoder marked not coded."""
        if self.pending is None:
            return min(self.not_coded_packets, self.missing())
        return self.not_coded_missing + sum(time in self.not_coded_times for time in self.pending)

    def total(self) -> int:
        """Frames lost to corrupt data in all, once the stream has been read to its end."""
        return self.missing() - self.not_coded()


class VideoReader:
    """One open video stream. Use as a context manager; ``frames()`` decodes it once."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import av

        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError as error:
            raise VideoError(f"unreadable: {error.strerror}") from None
        if size == 0:
            raise VideoError("empty file (0 bytes)")
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as error:
            raise VideoError(f"unreadable or truncated: {_ffmpeg_message(error)}") from None
        streams = [s for s in self.container.streams.video if not _is_cover_art(s)]
        if not streams:
            kinds = sorted({s.type for s in self.container.streams}) or ["none"]
            self.container.close()
            raise VideoError(f"no video stream (streams: {', '.join(kinds)})")
        self.stream = streams[0]
        context = self.stream.codec_context
        if threads > 1:
            context.thread_type = "AUTO"
            context.thread_count = threads
        else:
            context.thread_count = 1
        self.stats = DecodeStats()

    # -- metadata (no decoding) ----------------------------------------------------------------
    @property
    def average_rate(self) -> Optional[float]:
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        return float(rate) if rate else None

    @property
    def duration_s(self) -> Optional[float]:
        """The video stream's duration, else the container's (which may include audio)."""
        stream_seconds = _seconds(self.stream.duration, self.stream.time_base)
        if stream_seconds:
            return stream_seconds
        if self.container.duration:
            return self.container.duration / 1_000_000
        return None

    def expected_frames(self, fps: Optional[float] = None) -> Optional[int]:
        """About how many frames the video holds (at ``fps`` if given), from the container alone.

        Without ``fps`` it is the smaller of the frame count in the index and duration x rate (an
        edit list hides pre-roll frames that the index still counts).
        """
        duration = self.duration_s
        if fps:
            return int(fps * duration) if duration else None
        candidates = []
        if self.stream.frames:
            candidates.append(int(self.stream.frames))
        if duration and self.average_rate:
            candidates.append(int(duration * self.average_rate))
        return min(candidates) if candidates else None

    def sample_aspect_ratio(self) -> Fraction:
        for sar in (self.stream.sample_aspect_ratio, self.stream.codec_context.sample_aspect_ratio):
            if sar and sar.numerator > 0 and sar.denominator > 0:
                return Fraction(sar.numerator, sar.denominator)
        return Fraction(1)

    # -- decoding -------------------------------------------------------------------------------
    def frames(self) -> Iterator[Tuple[object, float, float]]:
        """(frame, time in seconds from the first frame, frame duration in seconds).

        Corrupt packets are skipped (and counted); a read error ends the stream and is kept in
        ``stats.read_error`` for ``check_complete``.
        """
        for frame, seconds, duration, _ in self.frames_and_losses():
            yield frame, seconds, duration

    def frames_and_losses(self) -> Iterator[Tuple[object, float, float, int]]:
        """``frames()``, each with how many frames are missing between the frame before it and
        this one (``LostFrames``: lost to corrupt data, or not coded); once the stream has been
        read, ``stats.lost`` counts those lost to corrupt data and ``stats.not_coded`` the others
        (those before the first frame and after the last too)."""
        import av

        stream = self.stream
        time_base = stream.time_base
        rate = self.average_rate or 25.0
        default_duration = 1.0 / rate
        first_time: Optional[float] = None
        consecutive_bad = 0
        index = 0
        losses = LostFrames(stream.codec_context.name)
        try:
            for packet in self.container.demux(stream):
                losses.demuxed(packet)
                try:
                    decoded = packet.decode()
                except av.FFmpegError as error:
                    self.stats.bad_packets += 1
                    consecutive_bad += 1
                    if consecutive_bad > MAX_CONSECUTIVE_BAD_PACKETS:
                        raise VideoError(
                            f"undecodable: {consecutive_bad} packets in a row failed ({_ffmpeg_message(error)})"
                        ) from None
                    continue
                consecutive_bad = 0
                for frame in decoded:
                    seconds = _seconds(frame.pts, time_base)
                    if seconds is None:
                        seconds = index * default_duration
                    if first_time is None:
                        first_time = seconds
                    duration = _seconds(frame.duration, time_base) or default_duration
                    index += 1
                    self.stats.decoded = index
                    self.stats.covered_s = seconds - first_time + duration
                    yield frame, seconds - first_time, duration, losses.decoded(frame.pts)
        except av.FFmpegError as error:
            self.stats.read_error = _ffmpeg_message(error)
        self.stats.lost = losses.total()
        self.stats.not_coded = losses.not_coded()

    def check_complete(self) -> None:
        """Raise ``VideoError`` if decoding produced nothing, stopped well short of the length the
        container announces, or lost more than a tenth of the frames the file holds to corrupt
        data (the same 90% rule: a file that holds them all is not truncated, but is not whole)."""
        stats = self.stats
        if stats.decoded == 0:
            detail = stats.read_error or (f"{stats.bad_packets} corrupt packets" if stats.bad_packets else "")
            raise VideoError("no frame could be decoded" + (f" ({detail})" if detail else ""))
        expected = self.expected_frames()
        held = stats.decoded + stats.lost + stats.not_coded  # frames whose data was read
        if expected and held < COMPLETE_FRACTION * expected and not self._reaches_the_end():
            cause = f"; {stats.read_error}" if stats.read_error else ""
            raise VideoError(f"truncated: decoded {stats.decoded} of the ~{expected} frames the file announces{cause}")
        if stats.decoded + stats.not_coded < COMPLETE_FRACTION * held:
            raise VideoError(f"corrupt: {stats.lost} of its {held} frames could not be decoded")

    def _reaches_the_end(self) -> bool:
        """Without a frame count in the container's index (Matroska, WebM), the expected count
        is duration x average rate, which a variable frame rate overstates: a video whose
        frames reach its announced end is complete however few they are."""
        duration = self.duration_s
        return not self.stream.frames and bool(duration) and self.stats.covered_s >= COMPLETE_FRACTION * duration

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_cover_art(stream) -> bool:
    import av

    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except AttributeError:  # pragma: no cover - older PyAV
        return False


def _ffmpeg_message(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


class PlaneConverter:
    """Decoded frame -> resized, upright, full-range YUV 4:2:0 planes (Y, U, V uint8 arrays).

    The output size is fixed from the first frame (display orientation and aspect ratio), so a
    stream that changes resolution midway still yields frames of one size.
    """

    def __init__(self, rule: ResizeRule, sample_aspect_ratio: Fraction = Fraction(1)) -> None:
        from av.video.reformatter import VideoReformatter

        self.rule = rule
        self.sar = sample_aspect_ratio
        self.reformatter = VideoReformatter()  # keeps one swscale context for the whole video
        self.orientation: Optional[Orientation] = None
        self.coded_size: Tuple[int, int] = (0, 0)
        self.output_size: Tuple[int, int] = (0, 0)

    def _setup(self, frame) -> None:
        self.orientation = frame_orientation(frame)
        width = max(1, int(round(frame.width * self.sar))) if self.sar != 1 else frame.width
        height = frame.height
        if self.orientation.transpose:
            width, height = height, width
        out_w, out_h = self.rule.target(width, height)
        self.output_size = (out_w, out_h)
        self.coded_size = (out_h, out_w) if self.orientation.transpose else (out_w, out_h)

    def planes(self, frame) -> List[np.ndarray]:
        if self.orientation is None:
            self._setup(frame)
        width, height = self.coded_size
        try:
            small = self.reformatter.reformat(frame, width, height, format="yuvj420p", interpolation="BICUBIC")
        except Exception:  # noqa: BLE001 - an input format swscale cannot read directly
            small = self._via_rgb(frame, width, height)
        planes = [
            np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
            for plane in small.planes[:3]
        ]
        if self.orientation is not None and not self.orientation.identity:
            planes = [np.ascontiguousarray(self.orientation.apply(p)) for p in planes]
        return planes

    def _via_rgb(self, frame, width: int, height: int):
        import av

        try:
            rgb = frame.to_ndarray(format="rgb24")
        except Exception as error:  # noqa: BLE001
            raise VideoError(f"unsupported pixel format {frame.format.name} ({error})") from None
        return self.reformatter.reformat(
            av.VideoFrame.from_ndarray(rgb, format="rgb24"), width, height, format="yuvj420p", interpolation="BICUBIC"
        )


def fill_lost(frames: Iterator[Tuple[object, float, float, int]]) -> Iterator[Tuple[object, int]]:
    """(frame, how many output frames it fills) for ``VideoReader.frames_and_losses()`` without
    ``--fps``: one per decoded frame, and the frames missing between two decoded ones (lost to
    corrupt data, or not coded) filled as ``ffmpeg -i V image_%05d.jpg``, the originals'
    extraction, fills them (its output is constant-rate): of k missing frames, the frame before
    fills k - 1 and the frame after 1. Every frame after a gap so keeps the number ffmpeg gives
    it. Frames missing before the first decoded one or after the last are not filled, as ffmpeg
    does not fill them either (checked with Debian's ffmpeg 5.1 on MJPEG and MPEG-4 AVIs with
    packets overwritten, and on MPEG-4 AVIs with not-coded VOPs)."""
    previous = None
    repeats = 0
    for frame, _, _, lost in frames:
        if previous is not None:
            yield previous, repeats + max(0, lost - 1)
        previous, repeats = frame, 2 if lost else 1  # (the first frame's lost is 0)
    if previous is not None:
        yield previous, repeats


def resample(
    frames: Iterator[Tuple[object, float, float]], fps: Optional[float]
) -> Iterator[Tuple[object, int]]:
    """(frame, how many output frames it fills). Without ``fps`` every frame fills one.

    With ``fps`` F, output frame k shows the instant k/F and takes the decoded frame nearest to
    it: a frame owns the instants up to halfway to the next frame; the last one those up to its
    own end. Frames are dropped or repeated as needed, like ffmpeg's ``fps`` filter.
    """
    if not fps:
        for frame, _, _ in frames:
            yield frame, 1
        return
    next_slot = 0
    previous = None
    previous_time = 0.0
    previous_duration = 0.0
    for frame, seconds, duration in frames:
        if previous is not None:
            boundary = (previous_time + seconds) / 2
            end_slot = math.ceil(boundary * fps - 1e-9)
            if end_slot > next_slot:
                yield previous, end_slot - next_slot
                next_slot = end_slot
        previous, previous_time, previous_duration = frame, seconds, duration
    if previous is not None:
        end_slot = math.ceil((previous_time + previous_duration) * fps - 1e-9)
        if end_slot > next_slot:
            yield previous, end_slot - next_slot
