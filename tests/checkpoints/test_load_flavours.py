"""Every PyTorch checkpoint flavour users hold, written here and loaded back into a working model."""
from __future__ import annotations

import re
import warnings

import pytest
import torch

from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint, load_weights
from resnet3d.models import create_model
from resnet3d.normalization import KINETICS, SEED, InputNorm

N_CLASSES = 7
CLIP = (2, 3, 8, 32, 32)


@pytest.fixture(scope="module")
def resnet10():
    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=N_CLASSES, shortcut_type="A")
    generator = torch.Generator().manual_seed(1)
    for layer in model.modules():  # non-trivial running statistics, so a wrong mapping shows
        if isinstance(layer, torch.nn.BatchNorm3d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def clip():
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(2))


def _optimizer_and_scheduler(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [50, 100, 150])
    model(torch.randn(2, 3, 8, 32, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    model.zero_grad(set_to_none=True)
    return optimizer.state_dict(), scheduler.state_dict()


def _old_pytorch(state_dict):
    """As PyTorch < 0.4.1 saved it: no num_batches_tracked buffers."""
    return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def flavours(resnet10):
    model = resnet10
    state = model.state_dict()
    optimizer, scheduler = _optimizer_and_scheduler(create_model("resnet", 10, n_classes=N_CLASSES, shortcut_type="A"))
    return {
        "resnet3d": {
            "format": "resnet3d", "format_version": 1, "epoch": 12, "arch": "resnet-10",
            "model_config": model.model_config, "state_dict": state, "optimizer": optimizer, "scheduler": scheduler,
            "scaler": None, "config": {"lr": 0.1}, "class_names": [f"class {i}" for i in range(N_CLASSES)],
            "input_norm": KINETICS.to_dict(), "sample_size": 112, "sample_duration": 16,
            "rng_state": torch.get_rng_state(), "best_metric": 0.5,
        },
        "successor": {"epoch": 200, "arch": "resnet-10", "state_dict": state, "optimizer": optimizer, "scheduler": scheduler},
        "successor-2018": {
            "epoch": 100, "arch": "resnet-10", "state_dict": {"module." + k: v for k, v in _old_pytorch(state).items()},
            "optimizer": optimizer,
        },
        "bare": dict(state),
        "bare-dataparallel": {"module." + k: v for k, v in state.items()},
        # a compiled model's state_dict (torch.compile's wrapper), inside DataParallel's
        "bare-compiled": {"module._orig_mod." + k: v for k, v in state.items()},
    }


@pytest.mark.parametrize("flavour", ["resnet3d", "successor", "successor-2018", "bare", "bare-dataparallel",
                                     "bare-compiled"])
def test_every_flavour_round_trips(tmp_path, resnet10, flavours, clip, flavour):
    path = tmp_path / f"{flavour}.pth"
    torch.save(flavours[flavour], path)

    loaded = load_checkpoint(path)
    expected_format = {"resnet3d": "resnet3d", "successor": "successor", "successor-2018": "successor"}.get(flavour, "state_dict")
    assert loaded.source_format == expected_format
    assert loaded.model_config["model"] == "resnet" and loaded.model_config["model_depth"] == 10
    assert loaded.model_config["shortcut_type"] == "A" and loaded.n_classes == N_CLASSES
    assert loaded.epoch == {"resnet3d": 12, "successor": 200, "successor-2018": 100}.get(flavour)
    assert set(loaded.state_dict) == set(resnet10.state_dict())

    model, info = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        assert torch.equal(model.eval()(clip), resnet10(clip))
    assert info.model_config == resnet10.model_config

    if flavour == "resnet3d":
        assert loaded.class_names == [f"class {i}" for i in range(N_CLASSES)]
        assert loaded.input_norm == KINETICS
        assert loaded.extra["best_metric"] == 0.5 and loaded.extra["config"] == {"lr": 0.1}
    elif flavour == "successor-2018":
        # its release's default input, the seed's (0-255 minus the ActivityNet mean)
        assert loaded.input_norm == SEED and loaded.class_names is None
        assert any("2018 release" in note and "ActivityNet mean" in note for note in loaded.notes)
    else:
        assert loaded.input_norm is None and loaded.class_names is None
    if flavour in ("resnet3d", "successor"):
        # The raw states resume training: they load into a fresh optimiser and scheduler.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        optimizer.load_state_dict(loaded.optimizer)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1])
        scheduler.load_state_dict(loaded.scheduler)
        assert scheduler.last_epoch == 1 and len(optimizer.state) > 0
    if flavour == "successor-2018":
        assert any("module." in note for note in loaded.notes)
        assert any("num_batches_tracked" in note for note in loaded.notes)


def _densenet_2018_names(state_dict):
    """Our (2020) DenseNet names -> the successor's 2018 ones, as its checkpoints carry them."""
    renamed = {}
    for key, value in state_dict.items():
        key = re.sub(r"^features\.conv1\.", "features.conv0.", key)
        key = re.sub(r"^features\.norm1\.", "features.norm0.", key)
        key = re.sub(r"(denselayer\d+)\.(norm|conv)([12])\.", r"\1.\2.\3.", key)
        renamed["module." + key] = value
    return _old_pytorch(renamed)


def test_densenet_2018_names_are_renamed(tmp_path):
    torch.manual_seed(0)
    ours = create_model("densenet", 121, n_classes=N_CLASSES).eval()
    old = _densenet_2018_names(ours.state_dict())
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in old and "module.features.conv0.weight" in old
    path = tmp_path / "densenet-121.pth"
    torch.save({"epoch": 30, "arch": "densenet-121", "state_dict": old}, path)

    model, info = build_model_from_checkpoint(path)
    assert info.model_config["model"] == "densenet" and info.model_config["model_depth"] == 121
    # Every tensor is random, so equal values under equal names prove the renaming.
    expected = ours.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert any("2018 DenseNet" in note for note in info.notes)


def _expanded(shapes):
    """Tensors of the right shapes that cost one element each (stride 0), for big layouts."""
    return {name: torch.zeros(()).expand(*shape) if shape else torch.zeros((), dtype=torch.long) for name, shape in shapes}


@pytest.mark.parametrize("entry, stem", [("wideresnet-50-k2-B", 128), ("cvpr2018-wideresnet-50-k2-B", 64)])
def test_both_wide_resnet_stem_layouts(tmp_path, manifest, entry, stem):
    path = tmp_path / "wrn.pth"
    torch.save({"epoch": 1, "arch": "wideresnet-50", "state_dict": _expanded(manifest[entry]["state_dict"])}, path)
    loaded = load_checkpoint(path)
    assert loaded.model_config["model"] == "wideresnet" and loaded.model_config["k"] == 2
    assert loaded.model_config.get("stem_width", 128) == stem
    with torch.device("meta"):
        model = create_model(**loaded.model_config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta tensors is a no-op; names and shapes are the test
        load_weights(model, loaded.state_dict, strict=True)


def test_fine_tuning_replaces_only_the_classifier(tmp_path, resnet10):
    path = tmp_path / "save_200.pth"
    torch.save({"epoch": 200, "arch": "resnet-10", "state_dict": resnet10.state_dict()}, path)
    model, info = build_model_from_checkpoint(path, new_n_classes=3)
    assert model.fc.out_features == 3 and info.model_config["n_classes"] == 3
    assert torch.equal(model.layer4[0].conv2.weight, resnet10.layer4[0].conv2.weight)


def test_options_the_weights_cannot_show_are_overridable(tmp_path, resnet10):
    path = tmp_path / "save_1.pth"
    torch.save({"epoch": 1, "arch": "resnet-10", "state_dict": resnet10.state_dict()}, path)
    model, info = build_model_from_checkpoint(path, no_max_pool=True, conv1_t_stride=2)
    assert info.model_config["no_max_pool"] is True and info.model_config["conv1_t_stride"] == 2
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, N_CLASSES)


def test_our_checkpoint_keeps_a_custom_input_norm(tmp_path, resnet10):
    norm = InputNorm(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), value_scale=1.0)
    path = tmp_path / "model_best.pth"
    torch.save({"format": "resnet3d", "format_version": 1, "model_config": resnet10.model_config,
                "state_dict": resnet10.state_dict(), "input_norm": norm.to_dict()}, path)
    assert load_checkpoint(path).input_norm == norm
