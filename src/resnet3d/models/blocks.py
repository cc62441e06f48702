"""Residual blocks, the "conv units" they are built from, and the shortcuts between them.

A *conv unit* is a convolution and its BN, registered on the block under the flat names the
originals' checkpoints carry (``conv2``/``bn2``, or ``conv2_s``/``bn2_s``/``conv2_t``/``bn2_t`` for
R(2+1)D). Swapping the unit maker turns a 3D block into a (2+1)D one without another block class,
and without nesting that would rename the state_dict keys.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

NamedLayers = List[Tuple[str, nn.Module]]
# (tag, in_planes, out_planes, stride, groups) -> the unit's layers, in order
ConvUnit = Callable[[str, int, int, int, int], NamedLayers]


def add_layers(owner: nn.Module, layers: NamedLayers) -> Tuple[str, ...]:
    """Register ``layers`` on ``owner`` and return their names in call order.

    A name that is already registered is reused rather than replaced: only stateless modules
    (the shared ReLU) are ever named twice.
    """
    for name, module in layers:
        if name not in owner._modules:
            owner.add_module(name, module)
    return tuple(name for name, _ in layers)


def run_layers(owner: nn.Module, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    for name in names:
        x = owner._modules[name](x)
    return x


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def conv3d_unit(tag: str, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> NamedLayers:
    """A full 3x3x3 convolution (``conv<tag>``) and its BN (``bn<tag>``)."""
    conv = nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)
    return [(f"conv{tag}", conv), (f"bn{tag}", nn.BatchNorm3d(out_planes))]


def mid_planes_2plus1d(in_planes: int, out_planes: int, t_size: int, s_size: int) -> int:
    """Width between the spatial and temporal convs of R(2+1)D, as the successor computes it.

    The factorised pair gets as many parameters as the full (t, s, s) convolution would have:
    in*out*t*s*s // (in*s*s + t*out).
    """
    return (in_planes * out_planes * t_size * s_size * s_size) // (in_planes * s_size * s_size + t_size * out_planes)


def conv2plus1d_unit(tag: str, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> NamedLayers:
    """A 1x3x3 spatial conv, BN, ReLU, then a 3x1x1 temporal conv and BN (R(2+1)D)."""
    if groups != 1:
        raise ValueError("the (2+1)D conv unit has no grouped form")
    mid = mid_planes_2plus1d(in_planes, out_planes, 3, 3)
    spatial = nn.Conv3d(in_planes, mid, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
    temporal = nn.Conv3d(mid, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)
    return [
        (f"conv{tag}_s", spatial),
        (f"bn{tag}_s", nn.BatchNorm3d(mid)),
        ("relu", nn.ReLU(inplace=True)),
        (f"conv{tag}_t", temporal),
        (f"bn{tag}_t", nn.BatchNorm3d(out_planes)),
    ]


class ZeroPadShortcut(nn.Module):
    """Shortcut A: the identity, subsampled by the stride and zero-padded to ``out_planes`` channels.

    No parameters. The padding is made by ``F.pad``, so it has the input's device, dtype (bf16
    under autocast) and gradient; the successor built float32 zeros on the CPU or the default
    CUDA device and cut the gradient with ``.data``. Outputs are the same.
    """

    def __init__(self, out_planes: int, stride: int) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The successor's avg_pool3d(kernel_size=1, stride) is exactly this strided slice, which
        # also works for bf16 on the CPU (avg_pool3d has no CPU bf16 kernel).
        s = self.stride
        out = x[:, :, ::s, ::s, ::s]  # (N, C, T', H', W')
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.out_planes - out.shape[1]))

    def extra_repr(self) -> str:
        return f"out_planes={self.out_planes}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3x3 conv units (ResNet-10/18/34)."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        conv_unit: ConvUnit = conv3d_unit,
    ) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)  # first, so that (2+1)D units share it
        self.unit1 = add_layers(self, conv_unit("1", in_planes, planes, stride, 1))
        self.unit2 = add_layers(self, conv_unit("2", planes, planes, 1, 1))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(run_layers(self, self.unit1, x))
        out = run_layers(self, self.unit2, out)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1x1 reduce, 3x3x3 conv unit (carrying the stride), 1x1x1 expand (ResNet-50 and deeper).

    ``width`` and ``groups`` of the middle conv default to ``planes`` and 1; ResNeXt changes them.
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        conv_unit: ConvUnit = conv3d_unit,
        width: Optional[int] = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        width = planes if width is None else width
        out_planes = planes * self.expansion
        self.relu = nn.ReLU(inplace=True)  # first, so that (2+1)D units share it
        self.conv1 = conv1x1x1(in_planes, width)
        self.bn1 = nn.BatchNorm3d(width)
        self.unit2 = add_layers(self, conv_unit("2", width, width, stride, groups))
        self.conv3 = conv1x1x1(width, out_planes)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(run_layers(self, self.unit2, out))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class WideBottleneck(Bottleneck):
    """The WRN bottleneck: the same layers, output width 2x instead of 4x ``planes``."""

    expansion = 2


class ResNeXtBottleneck(Bottleneck):
    """A bottleneck whose middle conv is grouped into ``cardinality`` paths (2018 layout).

    Its width is ``cardinality * (planes // 32)`` as in the successor's CVPR2018 code, which keeps
    the width a multiple of the cardinality.
    """

    expansion = 2

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        conv_unit: ConvUnit = conv3d_unit,
        cardinality: int = 32,
    ) -> None:
        super().__init__(
            in_planes, planes, stride, downsample, conv_unit, width=cardinality * (planes // 32), groups=cardinality
        )


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv twice; no ReLU after the sum."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = nn.Conv3d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out += x if self.downsample is None else self.downsample(x)
        return out


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU before each of the 1x1x1, 3x3x3 and 1x1x1 convs."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        out += x if self.downsample is None else self.downsample(x)
        return out
