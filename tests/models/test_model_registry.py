"""create_model / list_models: names, errors that list the valid choices, and model_config."""
from __future__ import annotations

import pytest
import torch

import resnet3d
from resnet3d.errors import UserError
from resnet3d.models import MODELS, model_options
from resnet3d.models.registry import ModelFamily, register_family


def meta_model(*args, **kwargs):
    with torch.device("meta"):
        return resnet3d.create_model(*args, **kwargs)


def shapes(model):
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


def test_list_models_covers_every_family_and_depth():
    names = resnet3d.list_models()
    assert len(names) == len(set(names))
    for depth in (10, 18, 34, 50, 101, 152, 200):
        assert f"resnet-{depth}" in names and f"preresnet-{depth}" in names and f"resnet2p1d-{depth}" in names
    for depth in (50, 101, 152, 200):
        assert f"resnext-{depth}" in names
    for depth in (121, 169, 201, 264):
        assert f"densenet-{depth}" in names
    assert "wideresnet-50" in names and "c3d" in names
    assert resnet3d.list_models("densenet") == ["densenet-121", "densenet-169", "densenet-201", "densenet-264"]


def test_registry_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="twice"):
        register_family(ModelFamily("resnet", (18,), build=lambda depth, **kw: None, options={}, summary=""))
    assert MODELS["resnet"].summary  # the original entry is untouched


def test_arch_string_and_family_plus_depth_are_the_same():
    a = meta_model("resnet-50", n_classes=7)
    b = meta_model("resnet", 50, n_classes=7)
    assert a.model_config == b.model_config and shapes(a) == shapes(b)
    assert meta_model("wideresnet").model_config["model_depth"] == 50  # one depth: optional


@pytest.mark.parametrize(
    "call,fragments",
    [
        (lambda: resnet3d.create_model("resnett", 18), ["unknown model 'resnett'", "resnet", "densenet", "c3d"]),
        (lambda: resnet3d.create_model("resnet", 19), ["no depth 19", "10, 18, 34, 50, 101, 152, 200"]),
        (lambda: resnet3d.create_model("densenet"), ["needs model_depth", "121, 169, 201, 264"]),
        (lambda: resnet3d.create_model("c3d", 18), ["no depth option"]),
        (lambda: resnet3d.create_model("resnet", 18, num_classes=10), ["does not take num_classes", "n_classes"]),
        (lambda: resnet3d.create_model("densenet", 121, shortcut_type="A"), ["does not take shortcut_type", "no_max_pool"]),
        (lambda: resnet3d.create_model("resnet", 18, shortcut_type="D"), ["shortcut_type must be one of A, B, C"]),
        (lambda: resnet3d.create_model("resnet", 18, n_classes=0), ["n_classes must be a positive integer"]),
        (lambda: resnet3d.create_model("resnet", 18, no_max_pool="yes"), ["no_max_pool must be True or False"]),
        (lambda: resnet3d.create_model("resnext", 50, widen_factor=0.1), ["at least 32"]),
        (lambda: resnet3d.create_model("resnet", 18, widen_factor=0.001), ["widen_factor"]),
    ],
)
def test_bad_requests_raise_user_errors_naming_the_choices(call, fragments):
    with pytest.raises(UserError) as error:
        call()
    for fragment in fragments:
        assert fragment in str(error.value)


def test_successor_keywords_are_accepted():
    model = meta_model(
        "resnet", 18, n_classes=700, n_input_channels=2, conv1_t_size=3, conv1_t_stride=2,
        no_max_pool=True, shortcut_type="a", widen_factor=2.0,
    )  # fmt: skip
    assert model.conv1.weight.shape == (128, 2, 3, 7, 7) and model.conv1.stride == (2, 2, 2)
    assert model.model_config["shortcut_type"] == "A" and model.no_max_pool
    assert meta_model("wideresnet", 50, k=3).conv1.weight.shape[0] == 192
    assert meta_model("resnext", 101, cardinality=16).layer1[0].conv2.groups == 16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "resnet", "model_depth": 34, "shortcut_type": "C", "widen_factor": 1.5, "n_classes": 11},
        {"model": "wideresnet", "model_depth": 50, "k": 2, "stem_width": 64},  # the 2018 layout
        {"model": "resnext", "model_depth": 50, "cardinality": 8, "widen_factor": 0.5},
        {"model": "resnet2p1d", "model_depth": 18, "n_input_channels": 2, "conv1_t_size": 5},
        {"model": "densenet", "model_depth": 169, "no_max_pool": True, "n_classes": 3},
        {"model": "c3d", "batch_norm": True, "sample_size": 64, "sample_duration": 8, "dropout_ratio": 0.2},
        {"model": "c3d", "global_pooling": True},
    ],
)
def test_model_config_rebuilds_the_same_model(kwargs):
    model = meta_model(**kwargs)
    config = model.model_config
    for key, value in kwargs.items():
        assert config[key] == value
    rebuilt = meta_model(**config)
    assert rebuilt.model_config == config and shapes(rebuilt) == shapes(model)
    config["n_classes"] = -1  # a copy: the model's own record is unchanged
    assert model.model_config["n_classes"] != -1


def test_stem_width_selects_the_2018_wrn_layout():
    wide_2020 = meta_model("wideresnet", 50)
    wide_2018 = meta_model("wideresnet", 50, stem_width=64)
    assert wide_2020.conv1.weight.shape[0] == 128 and wide_2018.conv1.weight.shape[0] == 64
    assert "stem_width" not in wide_2020.model_config and wide_2018.model_config["stem_width"] == 64


def test_model_options_lists_defaults():
    assert model_options("resnet")["shortcut_type"] == "B"
    assert model_options("resnet-50")["n_classes"] == 400
    assert model_options("c3d")["dropout_ratio"] == 0.5 and "shortcut_type" not in model_options("c3d")
    assert model_options("resnext")["cardinality"] == 32 and model_options("wideresnet")["k"] == 2


def test_classifier_interface_is_uniform():
    for arch, name, features in [("resnet-18", "fc", 512), ("resnet-50", "fc", 2048), ("densenet-121", "classifier", 1024), ("c3d", "fc8", 4096)]:
        model = meta_model(arch, n_classes=9)
        assert model.classifier_name == name and model.num_features == features
        assert model.get_classifier() is getattr(model, name) and model.get_classifier().out_features == 9


def test_options_passed_as_none_take_their_defaults():
    model = meta_model("resnet", 18, shortcut_type=None, widen_factor=None, stem_width=None, n_classes=None)
    assert model.model_config == meta_model("resnet", 18).model_config


def test_a_misspelt_model_name_is_named_in_the_error():
    """'resnett' was reported as "unknown model ''"."""
    import pytest

    from resnet3d.errors import UserError
    from resnet3d.models import model_options

    with pytest.raises(UserError, match="unknown model 'resnett'; choose one of: resnet"):
        model_options("resnett")
