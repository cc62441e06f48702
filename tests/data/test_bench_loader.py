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
