"""Pure temporal and spatial transforms: invariants (hypothesis) and the originals' exact rules."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resnet3d.data import spatial, temporal

lengths = st.integers(min_value=1, max_value=300)
sizes = st.integers(min_value=1, max_value=64)


@given(begin=st.integers(1, 50), length=lengths, size=sizes, stride=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_random_crop_returns_size_indices_within_video(begin, length, size, stride, seed):
    frames = temporal.frame_range(begin, begin + length, stride)
    out = temporal.random_crop(frames, size, random.Random(seed))
    assert len(out) == size
    assert all(begin <= i < begin + length for i in out)
    assert set(out) <= set(frames)


@given(length=lengths, size=sizes, seed=st.integers(0, 10**6))
def test_random_crop_is_a_consecutive_window_when_it_fits(length, size, seed):
    frames = list(range(1, length + 1))
    out = temporal.random_crop(frames, size, random.Random(seed))
    if length >= size:
        assert out == list(range(out[0], out[0] + size))
    else:  # loop padding: the whole video, then again from its start
        assert out[:length] == frames and out[length:] == (frames * size)[: size - length]


def test_random_crop_reaches_the_last_window():
    frames = list(range(1, 21))
    starts = {temporal.random_crop(frames, 16, random.Random(s))[0] for s in range(400)}
    assert starts == {1, 2, 3, 4, 5}


@given(length=lengths, size=sizes, n=st.integers(1, 10))
def test_even_crops_are_n_windows_spread_over_the_video(length, size, n):
    frames = list(range(1, length + 1))
    starts = temporal.even_starts(length, size, n)
    assert len(starts) == n and starts == sorted(starts)
    clips = [temporal.even_crop(frames, size, n, j) for j in range(n)]
    assert all(len(c) == size and set(c) <= set(frames) for c in clips)
    if n > 1 and length >= size:
        assert clips[0][0] == 1 and clips[-1][-1] == length  # first and last frames covered


def test_center_crop_matches_the_successor():
    assert temporal.center_crop(list(range(1, 41)), 16) == list(range(13, 29))
    assert temporal.center_crop([1, 2, 3], 5) == [1, 2, 3, 1, 2]


def test_sliding_windows_seed_and_successor_rules():
    # successor: every stride up to the first window past the end, which is loop-padded and the last
    assert temporal.sliding_starts(40, 16, 16) == [0, 16, 32]
    assert temporal.sliding_starts(30, 8, 1) == list(range(0, 24))  # starts 1-24: 24 windows, not 30
    assert temporal.sliding_starts(30, 8, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert temporal.sliding_starts(32, 16, 16) == [0, 16] and temporal.sliding_starts(5, 16, 4) == [0]
    # seed: 1-based starts 1, 17, ... while start <= n - 16
    assert temporal.sliding_starts(40, 16, 16, full_only=True) == [0, 16]
    assert temporal.sliding_starts(32, 16, 16, full_only=True) == [0]
    assert temporal.sliding_starts(10, 16, 16, full_only=True) == [0]


@settings(max_examples=200)
@given(w=st.integers(8, 800), h=st.integers(8, 800), seed=st.integers(0, 10**6),
       min_scale=st.floats(0.05, 1.0), min_ratio=st.floats(0.3, 1.0))
def test_every_training_box_lies_inside_the_frame(w, h, seed, min_scale, min_ratio):
    rng = random.Random(seed)
    scales = [1.0 * 0.84089641525**i for i in range(5)]
    boxes = [
        spatial.random_resized_box(w, h, (min_scale, 1.0), (min_ratio, 1 / min_ratio), rng),
        spatial.random_corner_box(w, h, scales, rng),
        spatial.random_position_box(w, h, scales, rng),
        spatial.center_box(w, h),
    ]
    for box in boxes:
        assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h


def test_corner_boxes_follow_the_seed():
    side = int(240 * 0.84089641525)
    assert spatial.corner_box(320, 240, 0.84089641525, "tl") == spatial.Box(0, 0, side, side, 320, 240)
    assert spatial.corner_box(320, 240, 0.84089641525, "br") == spatial.Box(320 - side, 240 - side, 320, 240, 320, 240)
    c = spatial.corner_box(320, 240, 0.5, "c")
    assert (c.w, c.h) == (120, 120) and (c.x0 + c.x1) // 2 == 160
    assert spatial.center_box(320, 240) == spatial.Box(40, 0, 280, 240, 320, 240)


def test_random_resized_box_statistics():
    rng = random.Random(0)
    boxes = [spatial.random_resized_box(320, 240, (0.25, 1.0), (0.75, 4 / 3), rng) for _ in range(2000)]
    shares = np.array([b.w * b.h / (320 * 240) for b in boxes])
    ratios = np.array([b.w / b.h for b in boxes])
    assert shares.min() >= 0.24 and shares.max() <= 1.0
    assert ratios.min() >= 0.74 and ratios.max() <= 4 / 3 + 0.02
    assert 0.5 < shares.mean() < 0.7  # uniform area share in (0.25, 1), minus rejected draws


def test_box_for_another_frame_size_keeps_relative_place():
    box = spatial.Box(40, 0, 280, 240, 320, 240)
    assert box.for_size(160, 120) == spatial.Box(20, 0, 140, 120, 160, 120)


def test_resize_clip_shapes_and_constants():
    clip = torch.full((4, 30, 50, 3), 77, dtype=torch.uint8)
    out = spatial.resize_clip(clip, (16, 16))
    assert out.shape == (4, 16, 16, 3) and out.dtype == torch.uint8 and out.is_contiguous()
    assert int(out.min()) == int(out.max()) == 77
    flow = torch.full((2, 30, 50, 2), 200, dtype=torch.uint8)
    assert spatial.resize_clip(flow, (8, 8)).shape == (2, 8, 8, 2)


def test_resize_clip_matches_float_reference():
    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))
    ours = spatial.resize_clip(clip, (20, 20)).float()
    reference = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2).float(), size=(20, 20), mode="bilinear", antialias=True, align_corners=False)
    assert (ours - reference.permute(0, 2, 3, 1)).abs().max() <= 1.0


@pytest.mark.parametrize("position", spatial.CORNERS)
def test_corner_box_positions(position):
    box = spatial.corner_box(100, 60, 1.0, position)
    assert (box.w, box.h) == (60, 60)
