"""Every architecture of the registry, on a tiny clip: forward, backward, features, new classifier.

Widths are scaled down (``widen_factor``) where the family has the option, so ResNet-200 keeps its
66 blocks but not its 127 M parameters; DenseNet and C3D run at full width on small clips.
"""
from __future__ import annotations

import pytest
import torch

import resnet3d

N_CLASSES = 3


def tiny_config(arch: str):
    """(create_model kwargs, input shape) small enough for a CPU test, by family."""
    family = arch.split("-")[0]
    if family in ("resnet", "preresnet", "resnet2p1d"):
        return {"widen_factor": 0.125}, (2, 3, 8, 32, 32)
    if family == "wideresnet":
        return {"widen_factor": 0.125, "k": 2}, (2, 3, 8, 32, 32)
    if family == "resnext":
        return {"widen_factor": 0.25, "cardinality": 8}, (2, 3, 8, 32, 32)
    if family == "densenet":  # three 2x2x2 transitions need 16 frames after the stem's max-pool
        return {}, (2, 3, 16, 32, 32)
    if family == "c3d":
        return {"sample_size": 32, "sample_duration": 8}, (2, 3, 8, 32, 32)
    raise AssertionError(f"no tiny configuration for the new family {family!r}: add one here")


@pytest.mark.parametrize("arch", resnet3d.list_models())
def test_forward_backward_features_and_reset(arch):
    torch.manual_seed(0)
    kwargs, shape = tiny_config(arch)
    model = resnet3d.create_model(arch, n_classes=N_CLASSES, **kwargs)
    clip = torch.randn(shape)

    logits = model(clip)
    assert logits.shape == (shape[0], N_CLASSES)
    assert torch.isfinite(logits).all()

    logits.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{arch}: {name} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{arch}: {name} has a non-finite gradient"

    model.eval()
    with torch.no_grad():
        features = model.forward_features(clip)
        assert features.shape == (shape[0], model.num_features)
        assert torch.allclose(model.get_classifier()(features), model(clip), atol=1e-5)

        model.reset_classifier(5)
        assert model(clip).shape == (shape[0], 5)
        assert model.model_config["n_classes"] == 5
        assert torch.equal(model.forward_features(clip), features)  # only the head changed


@pytest.mark.parametrize("arch", ["resnet-18", "resnet2p1d-50", "preresnet-10", "densenet-121", "c3d"])
def test_any_permitted_clip_size(arch):
    """Adaptive pooling: one model takes clips of other lengths and sizes (C3D with global pooling)."""
    kwargs, _ = tiny_config(arch)
    if arch == "c3d":
        kwargs = {"global_pooling": True}
    model = resnet3d.create_model(arch, n_classes=N_CLASSES, **kwargs).eval()
    sizes = [(16, 32, 32), (16, 48, 40)] if arch.startswith("densenet") else [(4, 32, 32), (8, 40, 56), (1, 16, 16)]
    with torch.no_grad():
        for t, h, w in sizes:
            assert model(torch.randn(1, 3, t, h, w)).shape == (1, N_CLASSES), (t, h, w)
