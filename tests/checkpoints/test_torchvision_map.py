"""torchvision's video ResNets mapped onto ours by names and shapes; torchvision itself stays optional.

The state_dicts here are made by hand with torchvision's names (VideoResNet: ``stem.0`` conv,
``stem.1`` BN, ``layerN.M.conv1.0`` conv + ``conv1.1`` BN, ``downsample.0/1``, ``fc``), and the
R3D forward pass is written out functionally, so the mapping is checked against torchvision's
structure without torchvision. The last test uses the real torchvision where it is installed.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint
from resnet3d.checkpoints.torchvision_map import TORCHVISION_KINETICS, torchvision_names_for
from resnet3d.errors import UserError

N_CLASSES = 400


def _bn(state, prefix, width, generator):
    state[f"{prefix}.weight"] = torch.rand(width, generator=generator) + 0.5
    state[f"{prefix}.bias"] = torch.randn(width, generator=generator) * 0.1
    state[f"{prefix}.running_mean"] = torch.randn(width, generator=generator) * 0.1
    state[f"{prefix}.running_var"] = torch.rand(width, generator=generator) + 0.5
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)


def torchvision_r3d_state_dict(blocks=(2, 2, 2, 2), n_classes=N_CLASSES, kernel=(3, 3, 3), seed=0):
    """r3d_18's names and shapes (``kernel`` (1, 3, 3) in layers 2-4 gives mc3_18's)."""
    g = torch.Generator().manual_seed(seed)
    state = {"stem.0.weight": torch.randn(64, 3, 3, 7, 7, generator=g) * 0.05}
    _bn(state, "stem.1", 64, g)
    in_planes = 64
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        k = (3, 3, 3) if stage == 1 else kernel
        for index in range(count):
            p = f"layer{stage}.{index}"
            state[f"{p}.conv1.0.weight"] = torch.randn(planes, in_planes, *k, generator=g) * 0.05
            _bn(state, f"{p}.conv1.1", planes, g)
            state[f"{p}.conv2.0.weight"] = torch.randn(planes, planes, *k, generator=g) * 0.05
            _bn(state, f"{p}.conv2.1", planes, g)
            if index == 0 and (stage > 1 or in_planes != planes):
                state[f"{p}.downsample.0.weight"] = torch.randn(planes, in_planes, 1, 1, 1, generator=g) * 0.05
                _bn(state, f"{p}.downsample.1", planes, g)
            in_planes = planes
    state["fc.weight"] = torch.randn(n_classes, 512, generator=g) * 0.05
    state["fc.bias"] = torch.randn(n_classes, generator=g) * 0.05
    return state


def torchvision_r3d_forward(state, x, blocks=(2, 2, 2, 2)):
    """VideoResNet(BasicBlock, Conv3DSimple, BasicStem).forward in eval mode, from its state_dict."""

    def bn(y, prefix):
        return F.batch_norm(y, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False)

    y = F.relu(bn(F.conv3d(x, state["stem.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3)), "stem.1"))
    for stage, count in enumerate(blocks, start=1):
        for index in range(count):
            p = f"layer{stage}.{index}"
            stride = 2 if (stage > 1 and index == 0) else 1
            out = F.relu(bn(F.conv3d(y, state[f"{p}.conv1.0.weight"], stride=stride, padding=1), f"{p}.conv1.1"))
            out = bn(F.conv3d(out, state[f"{p}.conv2.0.weight"], padding=1), f"{p}.conv2.1")
            if f"{p}.downsample.0.weight" in state:
                y = bn(F.conv3d(y, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            y = F.relu(out + y)
    return F.linear(F.adaptive_avg_pool3d(y, 1).flatten(1), state["fc.weight"], state["fc.bias"])


def test_r3d_18_maps_onto_resnet_18_without_max_pool(tmp_path):
    state = torchvision_r3d_state_dict()
    path = tmp_path / "r3d_18-b3b3357e.pth"
    torch.save(state, path)
    loaded = load_checkpoint(path)
    assert loaded.source_format == "torchvision"
    assert loaded.model_config == {
        "model": "resnet", "model_depth": 18, "n_classes": N_CLASSES, "n_input_channels": 3, "conv1_t_size": 3,
        "conv1_t_stride": 1, "no_max_pool": True, "shortcut_type": "B", "widen_factor": 1.0,
    }
    assert loaded.input_norm == TORCHVISION_KINETICS
    model, _ = build_model_from_checkpoint(loaded)
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.eval()(x)
        theirs = torchvision_r3d_forward(state, x)
    assert (ours - theirs).abs().max().item() < 1e-4 * (1 + theirs.abs().max().item())
    # ... and the inverse names give torchvision back its own state_dict.
    back = torchvision_names_for(model.state_dict())
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_mc3_and_r2plus1d_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "mc3_18.pth"
    torch.save(torchvision_r3d_state_dict(kernel=(1, 3, 3)), path)
    with pytest.raises(UserError, match="MC3"):
        load_checkpoint(path)
    # torchvision's own r2plus1d_18 names (its blocks' Conv2Plus1D is a Sequential: conv1.0.0, conv1.0.3)
    r2plus1d = {"stem.0.weight": torch.zeros(45, 3, 1, 7, 7), "stem.3.weight": torch.zeros(64, 45, 3, 1, 1),
                "layer1.0.conv1.0.0.weight": torch.zeros(144, 64, 1, 3, 3),
                "layer1.0.conv1.0.3.weight": torch.zeros(64, 144, 3, 1, 1)}
    torch.save(r2plus1d, path)
    with pytest.raises(UserError, match=r"R\(2\+1\)D"):
        load_checkpoint(path)


def test_against_real_torchvision(tmp_path, monkeypatch):
    """Runs where torchvision is installed (the GPU machine): same weights, same outputs."""
    video = pytest.importorskip("torchvision.models.video")
    torch.manual_seed(0)
    theirs = video.r3d_18(num_classes=N_CLASSES)
    generator = torch.Generator().manual_seed(1)
    for layer in theirs.modules():
        if isinstance(layer, torch.nn.BatchNorm3d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
    theirs.eval()
    path = tmp_path / "r3d_18.pth"
    torch.save(theirs.state_dict(), path)
    model, info = build_model_from_checkpoint(path)
    assert info.source_format == "torchvision"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 on both sides
    x = torch.randn(2, 3, 16, 112, 112, generator=generator).to(device)
    with torch.no_grad():
        expected = theirs.to(device)(x)
        actual = model.eval().to(device)(x)
    assert (actual - expected).abs().max().item() < 1e-3 * (1 + expected.abs().max().item())
    for refused in (video.mc3_18, video.r2plus1d_18):
        torch.save(refused(num_classes=N_CLASSES).state_dict(), path)
        with pytest.raises(UserError):
            load_checkpoint(path)
