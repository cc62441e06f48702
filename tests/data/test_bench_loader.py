"""``resnet3d bench loader`` on real JPEG folders: both sides run and report, and the baseline is the
successor's per-frame float pipeline."""
from __future__ import annotations

import argparse
import json

import torch

from resnet3d.bench import loader as bench_loader
from resnet3d.data import DataConfig, build_dataset
from resnet3d.normalization import KINETICS


def _args(motion_set, *extra):
    parser = argparse.ArgumentParser()
    bench_loader.add_arguments(parser)
    return parser.parse_args([
        "--video_path", motion_set.jpg_path, "--annotation_path", motion_set.annotation_path,
        "--sample_size", "16", "--sample_duration", "4", "--batch_size", "4",
        "--n-batches", "2", "--repeat", "1", *extra,
    ])


def test_bench_prints_baseline_then_ours_with_the_ratio(motion_set, capsys):
    assert bench_loader.run(_args(motion_set, "--baseline", "--decode-tolerance", "1.0", "--no-fast-decode")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["baseline"] for line in lines] == [True, False]
    baseline, ours = lines
    for line in lines:
        assert line["what"] == "loader" and line["n_clips"] == 8 and line["clips_per_s_per_core"] > 0
    assert ours["decode_tolerance"] == 1.0 and ours["fast_decode"] is False
    assert abs(ours["speedup_per_core"] - ours["clips_per_s_per_core"] / baseline["clips_per_s_per_core"]) < 0.01


def test_baseline_item_is_the_successors_normalised_float_clip(motion_set):
    cfg = DataConfig(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=16, sample_duration=4)
    baseline = bench_loader.SuccessorBaseline(build_dataset(cfg, "training"), 16)
    clip, target = baseline[(0, 0)]
    assert clip.dtype == torch.float32 and clip.shape == (3, 4, 16, 16)  # (C, T, H, W)
    mean = torch.tensor(KINETICS.mean).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS.std).view(3, 1, 1, 1)
    pixels = (clip * std + mean) * 255  # undo Normalize and ToTensor's / 255
    assert pixels.min() > -0.01 and pixels.max() < 255.01
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)  # from uint8 pixels, as PIL gives them
    assert 0 <= target < 4


def test_both_sides_draw_the_same_window_and_crop_for_an_item(motion_set):
    """The baseline seeded its draws apart from ours: each block compared other crops (other
    DCT scales for ours), noise in a figure that should compare the same work."""
    cfg = DataConfig(video_path=motion_set.jpg_path, annotation_path=motion_set.annotation_path, sample_size=16,
                     sample_duration=4, decode_tolerance=1.0, fast_decode=False)
    ours = build_dataset(cfg, "training")
    baseline = bench_loader.SuccessorBaseline(ours, 16)
    mean = torch.tensor(KINETICS.mean).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS.std).view(3, 1, 1, 1)
    for item in range(4):
        clip, _ = baseline[(item, 1)]
        theirs = ((clip * std + mean) * 255).permute(1, 2, 3, 0)  # (T, H, W, C) in 0-255
        mine = ours[(item, 1)]
        if mine["flip"]:
            mine["clip"] = mine["clip"].flip(2)
        if (mine["clip"].float() - theirs).abs().mean() > 4:  # the baseline's flip is its own draw
            theirs = theirs.flip(2)
        assert (mine["clip"].float() - theirs).abs().mean() < 4  # the same pixels, up to the two resizes


def test_untimed_batches_cover_the_prefetch_queue_and_bad_counts_are_refused(motion_set, capsys):
    """Batches the workers made during the warm-up were timed as if free: 4 timed batches with 6
    workers read 10x. Counts below 1 ended in a traceback."""
    assert bench_loader.run(_args(motion_set, "--n_threads", "2")) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["untimed_batches"] == 1 + 2 * 4  # the warm-up and 2 workers x prefetch 4
    import pytest

    from resnet3d.errors import UserError

    for flag, value in (("--n-batches", "0"), ("--batch_size", "0"), ("--repeat", "0")):
        with pytest.raises(UserError, match=f"{flag} must be 1 or more"):
            bench_loader.run(_args(motion_set, flag, value))
    with pytest.raises(UserError, match="--batch_size 4000 is more than the"):
        bench_loader.run(_args(motion_set, "--batch_size", "4000"))
