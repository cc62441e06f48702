"""Folding conv->BN pairs for inference (resnet3d.models.fold): every family of the registry gives
the same outputs folded and unfolded, folds the number of pairs its architecture has, and leaves
the caller's model exactly as it was."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import resnet3d
from resnet3d.models.backbone import BOTTLENECK_FROM_DEPTH, STAGE_BLOCKS
from resnet3d.models.densenet import BLOCK_CONFIGS
from resnet3d.errors import UserError
from resnet3d.models.fold import find_conv_bn_pairs, fold_batchnorm

from test_model_sweep import tiny_config


def with_random_statistics(model: nn.Module, seed: int = 1) -> nn.Module:
    """BN layers whose running statistics and affine parameters are far from the identity, as
    in a trained model (freshly built ones normalise by mean 0, variance 1: nothing to fold)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.25)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.3)
    return model.eval()


def expected_pairs(arch: str, model: nn.Module) -> int:
    """Conv->BN pairs, counted from the architecture's layout (not from the folding code).

    Post-activation ResNets: every conv of the stem and of every block has its BN right after it
    (a (2+1)D unit is two such pairs), and so has every projection shortcut. Pre-activation
    ResNets: a block's BN comes before its conv, so only the convs followed by the next BN fold
    (all but a block's last conv), plus the stem and the projections. DenseNet: the stem, and the
    1x1x1 conv of every dense layer (followed by norm2); transitions and the 3x3x3 convs feed a
    pool or a concatenation. C3D with batch_norm: each of its 8 convs (1a, 2a, 3a/b, 4a/b, 5a/b);
    its fc6/fc7 BNs follow Linear layers and stay.
    """
    family, _, depth_text = arch.partition("-")
    if family == "c3d":
        return 8
    depth = int(depth_text)
    if family == "densenet":
        return 1 + sum(BLOCK_CONFIGS[depth])
    n_blocks = sum(STAGE_BLOCKS[depth])
    # the zoo builds a projection (conv + BN) where a block changes shape (shortcut B, the default)
    projections = sum(1 for name, m in model.named_modules() if name.endswith("downsample") and len(m) == 2)
    bottleneck = depth >= BOTTLENECK_FROM_DEPTH or family == "resnext"
    convs_per_block = 3 if bottleneck else 2
    if family == "preresnet":
        return 1 + n_blocks * (convs_per_block - 1) + projections
    if family == "resnet2p1d":  # stem and every 3x3x3 conv are two (conv, BN) pairs
        factorised_per_block = 1 if bottleneck else 2
        return 2 + n_blocks * (convs_per_block + factorised_per_block) + projections
    return 1 + n_blocks * convs_per_block + projections


def relative_error(folded: torch.Tensor, reference: torch.Tensor) -> float:
    return float((folded - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("arch", resnet3d.list_models())
def test_every_family_folds_to_the_same_outputs(arch):
    kwargs, shape = tiny_config(arch)
    if arch == "c3d":
        kwargs = {**kwargs, "batch_norm": True}
    torch.manual_seed(0)
    model = with_random_statistics(resnet3d.create_model(arch, n_classes=5, **kwargs))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    clip = torch.randn(shape)

    folded, n_folded = fold_batchnorm(model)

    assert n_folded == expected_pairs(arch, model)
    with torch.no_grad():
        reference = model(clip)
        assert relative_error(folded(clip), reference) < 1e-4
    n_bn = sum(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm3d) for m in folded.modules()) == n_bn - n_folded
    # the caller's model: same keys, same values, its BN layers still there
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], before[name]) for name in before)
    assert (folded is model) == (n_folded == 0)


@pytest.mark.parametrize("arch,kwargs,pairs", [
    ("resnet-18", {}, 20),          # stem + 8 blocks x 2 + projections into layers 2-4
    ("resnet-18", {"shortcut_type": "A"}, 17),  # zero-padding shortcuts: no projection BN
    ("resnet-50", {}, 53),          # stem + 16 bottlenecks x 3 + projections into layers 1-4
    ("preresnet-18", {}, 12),       # stem + 8 blocks x 1 (conv1 -> bn2) + 3 projections
    ("resnet2p1d-18", {}, 37),      # (2+1)D stem 2 + 8 blocks x 2 units x 2 + 3 projections
    ("resnext-50", {}, 53),         # as resnet-50 (the 64-wide stem needs a projection into layer1's 256)
    ("densenet-121", {}, 59),       # stem + 6 + 12 + 24 + 16 dense layers
])
def test_pair_counts_at_full_width(arch, kwargs, pairs):
    """Full-size architectures (only traced, never run), counted by hand from their layout."""
    model = resnet3d.create_model(arch, n_classes=5, **kwargs).eval()
    assert len(find_conv_bn_pairs(model)) == pairs


def test_pre_activation_bns_stay():
    model = resnet3d.create_model("preresnet-10", n_classes=3, widen_factor=0.125).eval()
    folded_bns = {bn for _, bn in find_conv_bn_pairs(model)}
    # bn1 of a pre-activation block normalises the block's input (a sum): nothing to fold into
    assert "layer2.0.bn1" not in folded_bns and "layer2.0.bn2" in folded_bns
    folded, _ = fold_batchnorm(model)
    assert isinstance(folded.layer2[0].bn1, nn.BatchNorm3d) and isinstance(folded.layer2[0].bn2, nn.Identity)


class Tiny(nn.Module):
    """Cases the zoo lacks: a conv with a bias, a grouped conv, a BN without affine parameters,
    a conv whose output also feeds a sum, a BN that always uses batch statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.biased = nn.Conv3d(3, 8, 3, padding=1, bias=True)
        self.bn_biased = nn.BatchNorm3d(8)
        self.grouped = nn.Conv3d(8, 8, 3, padding=1, groups=4, bias=False)
        self.bn_grouped = nn.BatchNorm3d(8, affine=False)
        self.shared = nn.Conv3d(8, 8, 1, bias=False)
        self.bn_shared = nn.BatchNorm3d(8)
        self.batch_stats = nn.Conv3d(8, 8, 1, bias=False)
        self.bn_batch_stats = nn.BatchNorm3d(8, track_running_stats=False)

    def forward(self, x):
        x = torch.relu(self.bn_grouped(self.grouped(self.bn_biased(self.biased(x)))))
        y = self.shared(x)
        x = self.bn_shared(y) + y  # y is used twice: folding would change the sum's other term
        return self.bn_batch_stats(self.batch_stats(x))


def test_bias_groups_and_what_must_not_fold():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.biased.bias.uniform_(-1, 1)
        for bn in (model.bn_biased, model.bn_grouped, model.bn_shared):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.3, 3)
    model.eval()
    assert find_conv_bn_pairs(model) == [("biased", "bn_biased"), ("grouped", "bn_grouped")]
    folded, n = fold_batchnorm(model)
    clip = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        assert n == 2 and relative_error(folded(clip), model(clip)) < 1e-5


def test_training_mode_is_refused():
    model = resnet3d.create_model("resnet-10", n_classes=3, widen_factor=0.125)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    model.eval()
    model.layer1.train()  # one block left in training mode is enough to refuse
    with pytest.raises(ValueError, match="layer1"):
        fold_batchnorm(model)


class _DataDependent(nn.Module):
    """A conv and BN that could fold, behind Python control flow on the data (fx cannot trace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3)
        self.bn = nn.BatchNorm3d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) if bool(x.sum() > 0) else x


def test_untraceable_model_is_returned_unfolded_with_a_debug_line(caplog):
    model = _DataDependent().eval()
    with caplog.at_level(logging.DEBUG, logger="resnet3d.models.fold"):
        folded, n = fold_batchnorm(model)
    assert folded is model and n == 0
    assert "does not trace" in caplog.text


def test_c3d_folds_and_still_refuses_clips_its_fc6_does_not_fit():
    model = with_random_statistics(resnet3d.create_model("c3d", n_classes=3, batch_norm=True, sample_size=32,
                                                         sample_duration=8)).eval()
    folded, n = fold_batchnorm(model)
    assert n == 8
    for candidate in (model, folded):
        with pytest.raises(UserError, match="accepts clips of T in 1-16, H in 1-32, W in 1-32 .e.g. 8x32x32.; got 8x48x48"):
            candidate(torch.randn(1, 3, 8, 48, 48))


def test_in_place_and_hooks():
    model = with_random_statistics(resnet3d.create_model("resnet-10", n_classes=3, widen_factor=0.125))
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    folded, n = fold_batchnorm(model)
    with torch.no_grad():
        folded(torch.randn(2, 3, 4, 32, 32))
    assert seen == [2]  # the copy keeps the caller's hook (the same callable, not a copy)
    same, n_again = fold_batchnorm(model, inplace=True)
    assert same is model and n_again == n and isinstance(model.bn1, nn.Identity)
    assert fold_batchnorm(model)[1] == 0  # nothing left to fold


def test_the_copy_shares_no_tensor_with_the_callers_model():
    """The copy copies only what folding keeps (folded convs' weights and folded BNs are never
    copied), yet nothing of it aliases the caller's model: moving the copy, or writing into every
    tensor it holds, leaves the caller's weights and statistics as they were."""
    model = with_random_statistics(resnet3d.create_model("preresnet-10", n_classes=3, widen_factor=0.125))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folded, n = fold_batchnorm(model)
    # pre-activation: unfolded BNs and convs (and the head) are in the copy beside the folded ones
    assert n > 0 and any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    theirs = {tensor.data_ptr() for tensor in model.state_dict().values()}
    assert not theirs & {tensor.data_ptr() for tensor in folded.state_dict().values()}
    folded.to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        for tensor in folded.state_dict().values():
            tensor.fill_(7)
    after = model.state_dict()
    assert all(torch.equal(after[name], before[name]) for name in before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_folded_weights_are_the_float64_formula_rounded_once(dtype):
    """Per-channel numbers in float64, the weight product in float32: within one rounding of the
    float64 product, in the weight's own dtype."""
    model = with_random_statistics(resnet3d.create_model("resnet-10", n_classes=3, widen_factor=0.125)).to(dtype)
    folded, _ = fold_batchnorm(model)
    for conv, bn, done in ((model.conv1, model.bn1, folded.conv1), (model.layer1[0].conv2, model.layer1[0].bn2,
                                                                    folded.layer1[0].conv2)):
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = conv.weight.double() * scale.view(-1, 1, 1, 1, 1)
        bias = bn.bias.double() - bn.running_mean.double() * scale
        eps = torch.finfo(dtype).eps
        assert done.weight.dtype == dtype and done.bias.dtype == dtype
        assert ((done.weight.double() - weight).abs() <= eps * weight.abs()).all()
        assert ((done.bias.double() - bias).abs() <= eps * bias.abs() + 1e-12).all()
