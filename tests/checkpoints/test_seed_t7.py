"""The seed's Lua Torch models (.t7): written here in its layout, loaded, and run against Lua's semantics."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lua_nn_reference import lua_forward
from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint
from resnet3d.checkpoints.seed_t7 import convert_seed_model
from resnet3d.checkpoints.torch7 import write_t7
from resnet3d.errors import UserError
from resnet3d.models import create_model
from resnet3d.normalization import SEED
from t7_seed_fixtures import SeedTreeBuilder, container, module, seed_c3d, seed_resnet

N_CLASSES = 400
# (torch.testing.assert_close imports torch.distributed, which costs seconds; a max difference is enough.)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4, msg: str = "") -> None:
    assert actual.shape == expected.shape, msg
    difference = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    assert difference <= tol * (1 + expected.double().abs().max().item()), f"{msg}: max difference {difference}"
CLIP = (1, 3, 16, 112, 112)  # the seed's clip: its (1, 4, 4) average pooling is sized for it


def _trained_like(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every BN non-trivial statistics and affine values, so that a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            n = layer.num_features
            layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _resnet10(shortcut: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _trained_like(create_model("resnet", 10, n_classes=N_CLASSES, shortcut_type=shortcut), 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "shortcut, pkg, cuda, conv_bias, flatten",
    [
        ("A", "cudnn", True, True, True),  # as trained on GPU by the seed: cudnn modules, CudaTensors, biases, getParameters()
        ("B", "nn", False, False, False),  # after the seed's convert_model_from_gpu_to_cpu.lua
    ],
    ids=["A-cudnn-cuda-bias", "B-nn-float"],
)
def test_seed_resnet_t7_computes_what_the_seed_computed(tmp_path, shortcut, pkg, cuda, conv_bias, flatten):
    ours = _resnet10(shortcut)
    builder = SeedTreeBuilder(pkg=pkg, conv_bias=conv_bias)
    tree = seed_resnet(ours.state_dict(), (1, 1, 1, 1), bottleneck=False, shortcut=shortcut, builder=builder)
    if flatten:
        builder.flatten_parameters()
    path = tmp_path / "model_100.t7"
    write_t7(path, tree, cuda=cuda)

    loaded = load_checkpoint(path)
    assert loaded.source_format == "torch7"
    assert loaded.model_config == {
        "model": "resnet", "model_depth": 10, "n_classes": N_CLASSES, "n_input_channels": 3, "conv1_t_size": 7,
        "conv1_t_stride": 1, "no_max_pool": False, "shortcut_type": shortcut, "widen_factor": 1.0,
    }
    assert loaded.epoch == 100 and loaded.arch == "resnet-10"
    assert loaded.input_norm == SEED
    assert any("folded the biases" in note for note in loaded.notes) == conv_bias

    model, info = build_model_from_checkpoint(loaded)
    model.eval()
    x = torch.randn(*CLIP, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(x)
        seed_output = lua_forward(tree, x)  # what th main.lua computed: log-probabilities
        direct = ours(x)
    assert_close(logits, direct)
    assert_close(seed_output, F.log_softmax(logits, dim=1))
    assert info.model_config["shortcut_type"] == shortcut


@pytest.mark.slow
def test_shortcut_c_and_double_tensors(tmp_path):
    ours = _resnet10("C")
    state = {k: v.double() if v.is_floating_point() else v for k, v in ours.state_dict().items()}
    tree = seed_resnet(state, (1, 1, 1, 1), bottleneck=False, shortcut="C", builder=SeedTreeBuilder("nn"), wrap=False)
    path = tmp_path / "resnet-10-C.t7"
    write_t7(path, tree)
    model, info = build_model_from_checkpoint(path)
    assert info.model_config["shortcut_type"] == "C"
    for name, tensor in model.state_dict().items():  # float -> double -> float is exact
        assert torch.equal(tensor, ours.state_dict()[name]), name


@pytest.mark.parametrize("shortcut", ["B", "C"])
def test_bottleneck_layout_maps_onto_our_names(shortcut):
    """ResNet-50 in the seed's layout, on the meta device: names and shapes only."""
    with torch.device("meta"):
        ours = create_model("resnet", 50, n_classes=N_CLASSES, shortcut_type=shortcut)
    tree = seed_resnet(ours.state_dict(), (3, 4, 6, 3), bottleneck=True, shortcut=shortcut, builder=SeedTreeBuilder("cudnn"))
    seed = convert_seed_model(tree)
    assert seed.model_config["model_depth"] == 50 and seed.model_config["shortcut_type"] == shortcut
    expected = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in seed.state_dict.items()} == expected


def test_bgr_premodel_swaps_the_first_conv_channels(tmp_path):
    ours = _resnet10("A")
    path = tmp_path / "resnet.t7"
    write_t7(path, seed_resnet(ours.state_dict(), (1, 1, 1, 1), False, "A", SeedTreeBuilder("nn")))
    plain = load_checkpoint(path).state_dict["conv1.weight"]
    swapped = load_checkpoint(path, bgr_premodel=True).state_dict["conv1.weight"]
    assert torch.equal(swapped[:, 0], plain[:, 2]) and torch.equal(swapped[:, 2], plain[:, 0])
    assert torch.equal(swapped[:, 1], plain[:, 1])


def _c3d(batch_norm: bool, global_pooling: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return _trained_like(create_model("c3d", n_classes=N_CLASSES, batch_norm=batch_norm, global_pooling=global_pooling), 3)


@pytest.mark.slow
def test_seed_c3d_with_bn_and_global_pooling(tmp_path):
    ours = _c3d(batch_norm=True, global_pooling=True)
    path = tmp_path / "c3d.t7"
    tree = seed_c3d(ours.state_dict(), batch_norm=True, global_pooling=True, builder=SeedTreeBuilder("cudnn"))
    write_t7(path, tree, cuda=True)
    model, info = build_model_from_checkpoint(path)
    assert info.model_config["batch_norm"] is True and info.model_config["global_pooling"] is True
    assert info.input_norm == SEED
    x = torch.randn(*CLIP, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model.eval()(x)
        seed_output = lua_forward(tree, x)
    assert_close(logits, ours(x))
    assert_close(seed_output, F.log_softmax(logits, dim=1))


@pytest.mark.slow
def test_seed_c3d_without_bn_keeps_every_weight(tmp_path):
    """The 8192-wide fc6 head; weights are strided views of a small storage to keep the file small."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in create_model("c3d", n_classes=101, dropout_ratio=0.3).state_dict().items()}
    base = torch.randn(100_000, generator=torch.Generator().manual_seed(5))
    ours = {}
    for index, (name, shape) in enumerate(shapes.items()):
        strides = tuple((index + d + 1) % 7 for d in range(len(shape)))  # varied, overlapping reads of `base`
        ours[name] = base[index:].as_strided(shape, strides)
    path = tmp_path / "model_30.t7"
    write_t7(path, seed_c3d(ours, batch_norm=False, global_pooling=False, builder=SeedTreeBuilder("nn"), dropout=0.3))
    loaded = load_checkpoint(path)
    assert loaded.model_config == {
        "model": "c3d", "n_classes": 101, "batch_norm": False, "global_pooling": False,
        "sample_size": 112, "sample_duration": 16, "dropout_ratio": pytest.approx(0.3),
    }
    assert loaded.epoch == 30
    assert list(loaded.state_dict) == list(shapes)
    for name, tensor in ours.items():
        assert torch.equal(loaded.state_dict[name], tensor), name


def test_unknown_layouts_are_refused_with_the_module_named(tmp_path):
    tree = container("nn.Sequential", [module("nn.VolumetricConvolution", weight=torch.randn(64, 3, 7, 7, 7),
                                                kT=7, kH=7, kW=7, dT=1, dH=2, dW=2),
                                       module("nn.ReLU")])
    path = tmp_path / "odd.t7"
    write_t7(path, tree)
    with pytest.raises(UserError, match=r"odd.t7: .*(C3D|module 2)"):
        load_checkpoint(path)
    write_t7(path, {"not": "a model"})
    with pytest.raises(UserError, match="not the seed's model"):
        load_checkpoint(path)
