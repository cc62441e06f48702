"""DataConfig: validation with clear messages, the multi-scale list, and a lossless dict round trip."""
from __future__ import annotations

import json
import re

import pytest

from resnet3d.data import DataConfig, canonical_subset
from resnet3d.errors import UserError
from resnet3d.normalization import SEED


def test_defaults_follow_the_successor():
    cfg = DataConfig()
    assert (cfg.dataset, cfg.sample_size, cfg.sample_duration, cfg.train_crop) == ("kinetics", 112, 16, "random")
    assert (cfg.train_crop_min_scale, cfg.train_crop_min_ratio, cfg.n_val_samples, cfg.hflip) == (0.25, 0.75, 3, True)
    assert cfg.scales == pytest.approx((1.0, 0.8409, 0.7071, 0.5946, 0.5), abs=1e-4)
    assert cfg.n_channels == 3 and DataConfig(input_type="flow").n_channels == 2


@pytest.mark.parametrize("change, message", [
    ({"dataset": "imagenet"}, "--dataset ([data] dataset) 'imagenet' is not one of"),
    ({"file_type": "png"}, "--file_type ([data] file_type) 'png'"),
    ({"train_crop": "c"}, "--train_crop ([data] train_crop) 'c'"),
    ({"sample_duration": 0}, "--sample_duration ([data] sample_duration) must be at least 1"),
    ({"train_crop_min_scale": 1.5}, "train_crop_min_scale"),
    ({"num_workers": -1}, "--n_threads"),
    ({"sample_size": "big"}, "[data] sample_size: expected an integer, got 'big'"),
    ({"sample_duration": 2.5}, "[data] sample_duration: expected an integer, got 2.5"),
    ({"train_crop_min_scale": "x"}, "[data] train_crop_min_scale: expected a number, got 'x'"),
    ({"decode_tolerance": None}, "[data] decode_tolerance: expected a number, got None"),
    # the multi-scale crop took 0 (crops of no pixels) and 2 (crops beyond the frame) without a word
    ({"scale_step": 0.0}, "--scale_step ([data] scale_step) must be in (0, 1]"),
    ({"initial_scale": 2.0}, "--initial_scale ([data] initial_scale) must be in (0, 1]"),
])
def test_bad_values_are_user_errors(change, message):
    with pytest.raises(UserError, match=re.escape(message)):
        DataConfig(**change)


def test_dict_round_trip_through_json():
    cfg = DataConfig(dataset="activitynet", input_norm=SEED, colorjitter=True, jitter_strength=(0.1, 0.2, 0.3, 0.05), train_crop="corner")
    again = DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert cfg.with_changes(sample_size=64).sample_size == 64 and cfg.sample_size == 112


def test_subset_names():
    assert [canonical_subset(s) for s in ("train", "val", "test", "validation")] == ["training", "validation", "testing", "validation"]
    with pytest.raises(UserError, match="unknown subset 'dev'"):
        canonical_subset("dev")
