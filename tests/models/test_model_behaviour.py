"""Shortcuts, precision, memory format, initialisation, C3D clip sizes, published parameter counts,
and the forward pass against a functional re-statement of the successor's ResNet."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import resnet3d
from resnet3d.errors import UserError
from resnet3d.models.blocks import ZeroPadShortcut

SMALL = {"widen_factor": 0.125}


def small(arch: str, **kwargs):
    torch.manual_seed(0)
    return resnet3d.create_model(arch, n_classes=4, **{**SMALL, **kwargs})


# --- shortcuts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet-18", "resnet-50", "preresnet-34", "resnet2p1d-10"])
@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
def test_every_shortcut_trains(arch, shortcut):
    model = small(arch, shortcut_type=shortcut)
    out = model(torch.randn(2, 3, 4, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    projections = [name for name, _ in model.named_modules() if name.endswith("downsample")]
    blocks = [name for name, m in model.named_modules() if name.count(".") == 1 and name.startswith("layer")]
    state = model.state_dict()
    has_conv = [f"{name}.0.weight" in state for name in projections]
    if shortcut == "A":
        assert not any(has_conv)  # zero-padded identity, no parameters
    elif shortcut == "B":
        assert 0 < sum(has_conv) < len(blocks)  # only where the shape changes
    else:
        assert sum(has_conv) == len(blocks)  # the seed's C: a projection on every block


def test_shortcut_a_pads_zeros_in_the_input_dtype_and_device():
    shortcut = ZeroPadShortcut(out_planes=8, stride=2)
    x = torch.randn(2, 3, 4, 6, 6, dtype=torch.bfloat16)
    out = shortcut(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 8, 2, 3, 3)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2, ::2])
    assert not out[:, 3:].any()
    # A tensor on another device keeps its device (the successor made CPU zeros unless CUDA):
    assert shortcut(torch.empty(1, 3, 4, 6, 6, device="meta")).device.type == "meta"
    with torch.device("meta"):
        meta_model = resnet3d.create_model("resnet", 18, shortcut_type="A")
    assert meta_model.eval()(torch.empty(1, 3, 8, 32, 32, device="meta")).device.type == "meta"


def test_shortcut_a_under_bf16_autocast_keeps_bf16():
    model = small("resnet-18", shortcut_type="A")
    seen = []
    for module in model.modules():
        if isinstance(module, ZeroPadShortcut):
            module.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 8, 32, 32))
    assert seen and all(o == i == torch.bfloat16 for i, o in seen)
    assert torch.isfinite(out.float()).all()


def test_shortcut_a_cannot_drop_channels():
    with pytest.raises(UserError, match="shortcut A"):
        resnet3d.create_model("resnet", 18, shortcut_type="A", stem_width=128)


# --- precision and memory format ----------------------------------------------------------------

# Clips of 8 frames: with a 7-frame stem kernel, oneDNN's bf16 Conv3d backward on the CPU corrupts
# the heap for 4-frame clips (torch 2.13; fine with 5 or more frames, or with mkldnn disabled).
FAMILY_SAMPLES = {
    "resnet-10": ({"shortcut_type": "A", **SMALL}, (2, 3, 8, 32, 32)),
    "preresnet-50": (SMALL, (2, 3, 8, 32, 32)),
    "wideresnet-50": (SMALL, (2, 3, 8, 32, 32)),
    "resnext-50": ({"widen_factor": 0.25, "cardinality": 8}, (2, 3, 8, 32, 32)),
    "resnet2p1d-18": (SMALL, (2, 3, 8, 32, 32)),
    "densenet-121": ({}, (2, 3, 16, 32, 32)),
    "c3d": ({"batch_norm": True, "sample_size": 32, "sample_duration": 8}, (2, 3, 8, 32, 32)),
}


@pytest.mark.parametrize("arch", sorted(FAMILY_SAMPLES))
def test_bf16_autocast_forward_and_backward(arch):
    kwargs, shape = FAMILY_SAMPLES[arch]
    torch.manual_seed(0)
    model = resnet3d.create_model(arch, n_classes=4, **kwargs)
    clip = torch.randn(shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(clip).float()
    with torch.no_grad():
        full = model(clip)
    assert torch.allclose(low, full, rtol=0.1, atol=0.1 * full.abs().max().item())


@pytest.mark.parametrize("arch", sorted(FAMILY_SAMPLES))
def test_channels_last_3d_gives_the_same_outputs(arch):
    kwargs, shape = FAMILY_SAMPLES[arch]
    torch.manual_seed(0)
    model = resnet3d.create_model(arch, n_classes=4, **kwargs).eval()
    clip = torch.randn(shape)
    with torch.no_grad():
        expected = model(clip)
        model = model.to(memory_format=torch.channels_last_3d)
        # the loader's (N, T, H, W, C) uint8 batch permuted to (N, C, T, H, W) is channels-last
        got = model(clip.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


# --- initialisation -----------------------------------------------------------------------------


def test_resnet_family_initialisation_is_the_successors():
    model = resnet3d.create_model("resnet", 18, n_classes=10)
    conv = model.layer3[0].conv1  # 256 x 128 x 3 x 3 x 3
    fan_out = conv.out_channels * math.prod(conv.kernel_size)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    dense = resnet3d.create_model("densenet", 121, n_classes=10)
    assert torch.all(dense.classifier.bias == 0)


def test_c3d_initialisation_is_torch7s():
    model = resnet3d.create_model("c3d", batch_norm=True, sample_size=32, sample_duration=8)
    bound = 1 / math.sqrt(3 * 27)
    assert model.conv1a.weight.abs().max().item() <= bound and model.conv1a.weight.std().item() > bound / 3
    weights = torch.cat([model.bn1a.weight, model.bn6.weight])
    assert weights.min() >= 0 and weights.max() < 1 and weights.std() > 0.2  # uniform [0, 1)
    assert torch.all(model.bn6.bias == 0)


# --- C3D ----------------------------------------------------------------------------------------


def test_c3d_default_is_the_seeds_layout():
    with torch.device("meta"):
        model = resnet3d.create_model("c3d", n_classes=101)
    assert model.fc6.in_features == 512 * 1 * 4 * 4 and model.fc7.in_features == 4096
    assert model.classifier_name == "fc8" and model.num_features == 4096
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert len(pools) == 5 and all(p.ceil_mode for p in pools) and pools[0].kernel_size == (1, 2, 2)
    with torch.device("meta"):
        pooled = resnet3d.create_model("c3d", n_classes=101, global_pooling=True)
    assert pooled.classifier_name == "fc" and pooled.fc.in_features == 512


def test_c3d_says_which_clip_sizes_it_accepts():
    model = resnet3d.create_model("c3d", sample_size=32, sample_duration=8).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 5, 20, 30)).shape == (1, 400)  # same map before fc6: accepted
        with pytest.raises(UserError) as error:
            model(torch.randn(1, 3, 8, 64, 64))
    message = str(error.value)
    assert "T in 1-16, H in 1-32, W in 1-32" in message and "8x32x32" in message and "got 8x64x64" in message
    assert "global_pooling=True" in message


def test_c3d_rejects_a_bad_dropout_ratio():
    with pytest.raises(UserError, match="dropout_ratio"):
        resnet3d.create_model("c3d", dropout_ratio=1.5)


# --- published parameter counts (REFERENCE.md section 6, 400 classes) ---------------------------

PUBLISHED_M_PARAMS = [
    ("resnet", 18, {"shortcut_type": "A"}, 33.2),
    ("resnet", 34, {"shortcut_type": "A"}, 63.5),
    ("resnet", 50, {}, 47.0),
    ("resnet", 101, {}, 86.1),
    ("resnet", 152, {}, 118.2),
    ("resnet", 200, {}, 127.4),
    ("resnext", 101, {}, 48.3),
]


@pytest.mark.parametrize("model,depth,kwargs,millions", PUBLISHED_M_PARAMS)
def test_published_parameter_counts(model, depth, kwargs, millions):
    with torch.device("meta"):
        net = resnet3d.create_model(model, depth, n_classes=400, **kwargs)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == millions


# --- forward pass, restated with functional ops from REFERENCE.md section 5 ---------------------


def _bn(x, state, prefix):
    return F.batch_norm(
        x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"], state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    )


def reference_resnet_basic(state, x, shortcut, t_size=7, t_stride=1, max_pool=True):
    """ResNet-10/18/34 as the successor computes it, from its state_dict alone."""
    x = F.relu(_bn(F.conv3d(x, state["conv1.weight"], stride=(t_stride, 2, 2), padding=(t_size // 2, 3, 3)), state, "bn1"))
    if max_pool:
        x = F.max_pool3d(x, kernel_size=3, stride=2, padding=1)
    for stage in range(1, 5):
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in state:
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.relu(_bn(F.conv3d(x, state[f"{p}.conv1.weight"], stride=stride, padding=1), state, f"{p}.bn1"))
            out = _bn(F.conv3d(out, state[f"{p}.conv2.weight"], padding=1), state, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                residual = _bn(F.conv3d(x, state[f"{p}.downsample.0.weight"], stride=stride), state, f"{p}.downsample.1")
            elif out.shape[1] != x.shape[1]:
                assert shortcut == "A"
                sub = x[:, :, ::stride, ::stride, ::stride]
                residual = torch.cat([sub, torch.zeros_like(sub)[:, : out.shape[1] - x.shape[1]].expand(-1, out.shape[1] - x.shape[1], -1, -1, -1)], 1)
            else:
                residual = x
            x = F.relu(out + residual)
            block += 1
    x = x.mean(dim=(2, 3, 4))
    return F.linear(x, state["fc.weight"], state["fc.bias"])


def _randomise_bn_statistics(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.1, generator=generator)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shortcut_type": "A"},
        {"shortcut_type": "B"},
        {"shortcut_type": "B", "conv1_t_size": 3, "conv1_t_stride": 2, "no_max_pool": True},
    ],
)
def test_resnet_forward_matches_the_successors_computation(kwargs):
    model = resnet3d.create_model("resnet", 10, n_classes=5, widen_factor=0.25, **kwargs).eval()
    _randomise_bn_statistics(model)
    clip = torch.randn(2, 3, 8, 40, 40)
    with torch.no_grad():
        expected = reference_resnet_basic(
            model.state_dict(),
            clip,
            kwargs["shortcut_type"],
            t_size=kwargs.get("conv1_t_size", 7),
            t_stride=kwargs.get("conv1_t_stride", 1),
            max_pool=not kwargs.get("no_max_pool", False),
        )
        assert torch.allclose(model(clip), expected, rtol=1e-4, atol=1e-5)



# --- DenseNet clip size -------------------------------------------------------------------------


@pytest.mark.parametrize("options, smallest", [({}, (15, 29, 29)), ({"no_max_pool": True}, (8, 15, 15))])
def test_densenet_smallest_clip_is_the_documented_one(options, smallest):
    """docs/models.md: its stem and three transitions halve the clip, so it needs at least these
    (the commands turn torch's error into one line: engine.model_start.clip_too_small)."""
    with torch.device("meta"):
        model = resnet3d.create_model("densenet", 121, n_classes=3, **options).eval()
    t, h, w = smallest
    assert model(torch.zeros(1, 3, t, h, w, device="meta")).shape == (1, 3)
    for clip in ((t - 1, h, w), (t, h - 1, w), (t, h, w - 1)):
        with pytest.raises(RuntimeError, match="smaller than kernel size|Output size is too small"):
            model(torch.zeros(1, 3, *clip, device="meta"))


def test_a_shape_only_copy_skips_initialisation_and_a_real_model_keeps_it():
    """On the meta device there are no values to initialise (and torch's meta normal_/fill_ pull in
    its compiler stack); a real model still gets the successor's He-normal convs and unit BN."""
    import torch

    from resnet3d.models import create_model

    with torch.device("meta"):
        shapes = create_model("resnet", 10, n_classes=3, widen_factor=0.25)
    assert shapes.conv1.weight.is_meta
    real = create_model("resnet", 10, n_classes=3, widen_factor=0.25)
    fan_out = real.conv1.weight.shape[0] * real.conv1.weight[0, 0].numel()
    assert abs(real.conv1.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.2 * (2.0 / fan_out) ** 0.5
    assert torch.equal(real.bn1.weight, torch.ones_like(real.bn1.weight))
