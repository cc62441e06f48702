"""The one ResNet-style backbone behind resnet, preresnet, wideresnet, resnext and resnet2p1d.

It is parameterised by the block class, the conv unit inside the blocks, the stem and the stage
widths. Module names are those of the successor (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``; ``conv1_s``/``conv1_t`` for the (2+1)D stem), so its checkpoints
load without renaming.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from resnet3d.config import SHORTCUT_TYPES as CONFIG_SHORTCUT_TYPES
from resnet3d.errors import UserError
from resnet3d.models.base import VideoClassifier, init_conv_bn
from resnet3d.models.blocks import (
    ConvUnit,
    NamedLayers,
    ZeroPadShortcut,
    add_layers,
    conv1x1x1,
    mid_planes_2plus1d,
    run_layers,
)

# Blocks per stage for each depth (ResNet-10 is the successor's addition; 200 its deepest).
STAGE_BLOCKS: Dict[int, Tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BOTTLENECK_FROM_DEPTH = 50  # depths 10-34 use basic blocks, 50 and deeper bottlenecks
BASE_WIDTHS = (64, 128, 256, 512)  # the successor's get_inplanes()

# The options every ResNet-style family accepts, with the successor's defaults.
# stem_width=None means "as the family's layout" (the first stage's width, or 64 for ResNeXt).
RESNET_OPTIONS: Dict[str, Any] = {
    "n_input_channels": 3,
    "conv1_t_size": 7,
    "conv1_t_stride": 1,
    "no_max_pool": False,
    "shortcut_type": "B",
    "widen_factor": 1.0,
    "stem_width": None,
}
SHORTCUT_TYPES = CONFIG_SHORTCUT_TYPES  # (one list: config files are checked against it)

# (n_input_channels, width, conv1_t_size, conv1_t_stride) -> the stem's layers, in order
Stem = Callable[[int, int, int, int], NamedLayers]


def scaled_widths(widths: Sequence[int], widen_factor: float) -> Tuple[int, ...]:
    """Stage widths times ``widen_factor``, truncated as the successor does (``int(x * f)``)."""
    return tuple(int(width * widen_factor) for width in widths)


def conv3d_stem(n_input_channels: int, width: int, t_size: int, t_stride: int) -> NamedLayers:
    """conv1: (t_size, 7, 7) kernel, stride (t_stride, 2, 2), then bn1 and ReLU."""
    conv = nn.Conv3d(
        n_input_channels,
        width,
        kernel_size=(t_size, 7, 7),
        stride=(t_stride, 2, 2),
        padding=(t_size // 2, 3, 3),
        bias=False,
    )
    return [("conv1", conv), ("bn1", nn.BatchNorm3d(width)), ("relu", nn.ReLU(inplace=True))]


def conv2plus1d_stem(n_input_channels: int, width: int, t_size: int, t_stride: int) -> NamedLayers:
    """conv1_s (1x7x7, stride 2) and conv1_t (t_size x 1 x 1), each with BN and ReLU.

    The middle width uses 3 input channels whatever ``n_input_channels`` is, as the successor's
    formula does, so that its two-channel (flow) checkpoints keep their shapes.
    """
    mid = mid_planes_2plus1d(3, width, t_size, 7)
    spatial = nn.Conv3d(n_input_channels, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
    temporal = nn.Conv3d(
        mid, width, kernel_size=(t_size, 1, 1), stride=(t_stride, 1, 1), padding=(t_size // 2, 0, 0), bias=False
    )
    return [
        ("conv1_s", spatial),
        ("bn1_s", nn.BatchNorm3d(mid)),
        ("relu", nn.ReLU(inplace=True)),
        ("conv1_t", temporal),
        ("bn1_t", nn.BatchNorm3d(width)),
        ("relu", nn.ReLU(inplace=True)),
    ]


class ResNet3d(VideoClassifier):
    """Stem, optional max-pool, four stages (strides 1, 2, 2, 2), global average pool, ``fc``."""

    classifier_name = "fc"

    def __init__(
        self,
        block: type,
        stage_blocks: Sequence[int],
        stage_widths: Sequence[int],
        *,
        n_classes: int = 400,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        shortcut_type: str = "B",
        stem: Stem = conv3d_stem,
        stem_width: Optional[int] = None,
        block_kwargs: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if shortcut_type not in SHORTCUT_TYPES:
            raise UserError(f"shortcut_type must be one of {', '.join(SHORTCUT_TYPES)}, got {shortcut_type!r}")
        self.block_kwargs = dict(block_kwargs or {})
        self.shortcut_type = shortcut_type
        stem_width = stage_widths[0] if stem_width is None else stem_width
        self.stem_layers = add_layers(self, stem(n_input_channels, stem_width, conv1_t_size, conv1_t_stride))
        self.no_max_pool = no_max_pool
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)

        in_planes = stem_width
        for index, (n_blocks, width) in enumerate(zip(stage_blocks, stage_widths)):
            stride = 1 if index == 0 else 2
            layer, in_planes = self._make_layer(block, in_planes, width, n_blocks, stride)
            self.add_module(f"layer{index + 1}", layer)

        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(in_planes, n_classes)
        init_conv_bn(self.modules())

    def _shortcut(self, in_planes: int, out_planes: int, stride: int) -> Optional[nn.Module]:
        reshapes = stride != 1 or in_planes != out_planes
        if self.shortcut_type == "C" or (self.shortcut_type == "B" and reshapes):
            return nn.Sequential(conv1x1x1(in_planes, out_planes, stride), nn.BatchNorm3d(out_planes))
        if self.shortcut_type == "A" and reshapes:
            if out_planes < in_planes:
                raise UserError(
                    f"shortcut A can only add channels, but a block goes from {in_planes} to {out_planes}; "
                    "use shortcut_type='B' or a stem_width no wider than the first stage"
                )
            return ZeroPadShortcut(out_planes, stride)
        return None

    def _make_layer(self, block: type, in_planes: int, planes: int, n_blocks: int, stride: int) -> Tuple[nn.Sequential, int]:
        out_planes = planes * block.expansion
        blocks = [block(in_planes, planes, stride, self._shortcut(in_planes, out_planes, stride), **self.block_kwargs)]
        for _ in range(1, n_blocks):
            blocks.append(block(out_planes, planes, 1, self._shortcut(out_planes, out_planes, 1), **self.block_kwargs))
        return nn.Sequential(*blocks), out_planes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = run_layers(self, self.stem_layers, x)  # (N, C, T, H, W)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return torch.flatten(self.avgpool(x), 1)  # (N, F)


def build_resnet_like(
    depth: int,
    *,
    basic: type,
    bottleneck: type,
    base_widths: Sequence[int] = BASE_WIDTHS,
    conv_unit: Optional[ConvUnit] = None,
    block_kwargs: Optional[Mapping[str, Any]] = None,
    stem: Stem = conv3d_stem,
    default_stem_width: Optional[int] = None,
    n_classes: int,
    n_input_channels: int,
    conv1_t_size: int,
    conv1_t_stride: int,
    no_max_pool: bool,
    shortcut_type: str,
    widen_factor: float,
    stem_width: Optional[int],
) -> ResNet3d:
    """Shared body of the ResNet-style family builders (the family picks blocks and widths)."""
    block = basic if depth < BOTTLENECK_FROM_DEPTH else bottleneck
    kwargs = dict(block_kwargs or {})
    if conv_unit is not None:
        kwargs["conv_unit"] = conv_unit
    widths = scaled_widths(base_widths, widen_factor)
    if min(widths) < 1:
        raise UserError(f"widen_factor {widen_factor} leaves a stage with no channels; use a larger widen_factor")
    return ResNet3d(
        block,
        STAGE_BLOCKS[depth],
        widths,
        n_classes=n_classes,
        n_input_channels=n_input_channels,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        shortcut_type=shortcut_type,
        stem=stem,
        stem_width=default_stem_width if stem_width is None else stem_width,
        block_kwargs=kwargs,
    )
