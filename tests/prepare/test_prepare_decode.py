"""Pure parts of extraction: output size, display-matrix orientation, frame-rate resampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet3d.prepare.decode import (
    IDENTITY,
    ResizeRule,
    orientation_from_display_matrix,
    rescale_round,
    resample,
)

ONE = 65536  # 1.0 in the display matrix's 16.16 fixed point
W = 1 << 30  # its 2.30 corner element


@pytest.mark.parametrize(
    "rule, size, expected",
    [
        (ResizeRule(short_side=240), (640, 360), (427, 240)),  # ffmpeg scale=-1:240 gives 427
        (ResizeRule(short_side=240), (360, 640), (240, 427)),  # portrait: the width is the short side
        (ResizeRule(short_side=240), (300, 300), (240, 240)),
        (ResizeRule(short_side=32), (33, 47), (32, 46)),  # odd sizes stay odd where the ratio says so
        (ResizeRule(short_side=None, height=360), (640, 480), (480, 360)),  # the seed's ActivityNet rule
        (ResizeRule(short_side=None, height=240), (360, 640), (135, 240)),  # height rule even for portrait
        (ResizeRule(short_side=None), (33, 47), (33, 47)),  # --short-side 0 keeps the size
    ],
)
def test_resize_rule(rule, size, expected):
    assert rule.target(*size) == expected


def test_rescale_rounds_half_up_like_av_rescale():
    assert rescale_round(240, 640, 360) == 427
    assert rescale_round(1, 3, 2) == 2  # 1.5 -> 2 (Python's round() would give 2 as well)
    assert rescale_round(5, 1, 2) == 3  # 2.5 -> 3 (Python's round() gives 2)


# Matrices as PyAV's set_display_rotation writes them, and what ffmpeg's autorotate shows.
@pytest.mark.parametrize(
    "matrix, shown",
    [
        ([0, -ONE, 0, ONE, 0, 0, 0, 0, W], lambda a: np.rot90(a, 1)),  # 90 degrees counter-clockwise
        ([0, ONE, 0, -ONE, 0, 0, 0, 0, W], lambda a: np.rot90(a, -1)),  # -90
        ([-ONE, 0, 0, 0, -ONE, 0, 0, 0, W], lambda a: np.rot90(a, 2)),  # 180
        ([-ONE, 0, 0, 0, ONE, 0, 0, 0, W], lambda a: a[:, ::-1]),  # mirrored
        ([0, -ONE, 0, -ONE, 0, 0, 0, 0, W], lambda a: np.rot90(a, 1)[:, ::-1]),  # 90 then mirrored
        ([ONE, 0, 0, 0, ONE, 0, 0, 0, W], lambda a: a),
    ],
)
def test_display_matrix_orientation(matrix, shown):
    plane = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(orientation_from_display_matrix(matrix).apply(plane), shown(plane))


def test_odd_angles_are_ignored():
    c = int(ONE * math.cos(math.pi / 4))
    assert orientation_from_display_matrix([c, -c, 0, c, c, 0, 0, 0, W]) == IDENTITY


def _slots(times, durations, fps):
    frames = [(i, t, d) for i, (t, d) in enumerate(zip(times, durations))]
    out = []
    for index, repeat in resample(iter(frames), fps):
        out.extend([index] * repeat)
    return out


def test_resample_keeps_every_frame_without_fps():
    assert _slots([0, 0.1, 0.2], [0.1] * 3, None) == [0, 1, 2]


def test_resample_halves_and_doubles():
    times = [i / 30 for i in range(300)]
    assert _slots(times, [1 / 30] * 300, 15) == list(range(0, 300, 2))
    doubled = _slots(times, [1 / 30] * 300, 60)
    assert len(doubled) == 600 and doubled[::2] == list(range(300))


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.005, max_value=0.2), min_size=1, max_size=40),
    fps=st.floats(min_value=1.0, max_value=120.0),
)
def test_resample_picks_the_nearest_frame(gaps, fps):
    """Output frame k shows instant k/F with the decoded frame nearest to it (variable rates too),
    and the output covers the video up to the end of its last frame."""
    times = [0.0]
    for gap in gaps[:-1]:
        times.append(times[-1] + gap)
    durations = gaps
    slots = _slots(times, durations, fps)
    end = times[-1] + durations[-1]
    assert len(slots) == math.ceil(end * fps - 1e-9)
    assert slots == sorted(slots)
    for k, chosen in enumerate(slots):
        instant = k / fps
        if instant <= times[-1]:
            best = min(abs(t - instant) for t in times)
            assert abs(times[chosen] - instant) <= best + 1e-9
        else:
            assert chosen == len(times) - 1
