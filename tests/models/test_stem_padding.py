"""models.stem.pad_stem_channels: the padded stem computes the same function and gradient, in
both memory formats, and leaves the parameters (names, shapes, checkpoints) as they were."""
import torch

from resnet3d.models import create_model
from resnet3d.models.stem import ChannelPaddedConv3d, pad_stem_channels


def _pair():
    torch.manual_seed(0)
    plain = create_model("resnet", 10, n_classes=5, widen_factor=0.25)
    padded = create_model("resnet", 10, n_classes=5, widen_factor=0.25)
    padded.load_state_dict(plain.state_dict())
    return plain, padded


def test_same_outputs_and_gradients_and_parameters():
    plain, padded = _pair()
    assert pad_stem_channels(padded, 8) == "conv1"
    assert isinstance(padded.conv1, ChannelPaddedConv3d) and padded.conv1.padded_in_channels == 8
    assert {k: v.shape for k, v in padded.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert pad_stem_channels(padded, 8) is None  # already done: no other 3-channel convolution
    x = torch.randn(2, 3, 4, 32, 32)
    for model in (plain, padded):
        model.train()
        model(x).square().sum().backward()
    assert torch.allclose(plain(x), padded(x), atol=1e-5)
    assert torch.allclose(plain.conv1.weight.grad, padded.conv1.weight.grad, atol=1e-4)
    assert torch.allclose(plain.fc.weight.grad, padded.fc.weight.grad, atol=1e-4)


def test_channels_last_input_stays_channels_last_through_the_stem():
    plain, padded = _pair()
    pad_stem_channels(padded, 8)
    plain.eval().to(memory_format=torch.channels_last_3d)
    padded.eval().to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 4, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    seen = {}
    padded.conv1.register_forward_hook(lambda m, i, out: seen.setdefault("out", out))
    with torch.no_grad():
        assert torch.allclose(plain(x), padded(x), atol=1e-5)
    assert seen["out"].is_contiguous(memory_format=torch.channels_last_3d)
