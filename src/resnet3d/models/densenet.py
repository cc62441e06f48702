"""DenseNet-BC (depths 121, 169, 201, 264) in the successor's 2020 layout.

Names are those of its 2020 checkpoints (``features.conv1``, ``features.norm1``,
``features.denseblock1.denselayer1.norm1`` ...). Its 2018 checkpoints say ``conv0``/``norm0`` and
``norm.1``/``conv.1``, which the checkpoint loader renames. The successor's factory passed
``n_classes`` where its class expected ``num_classes``; here the keyword is ``n_classes`` throughout.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from resnet3d.models.base import VideoClassifier, holds_values, init_conv_bn
from resnet3d.models.registry import ModelFamily, register_family

BLOCK_CONFIGS: Dict[int, Tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
GROWTH_RATE = 32
BOTTLENECK_SIZE = 4  # the 1x1x1 conv of a dense layer outputs BOTTLENECK_SIZE * GROWTH_RATE channels
INIT_FEATURES = 64


class DenseLayer(nn.Module):
    """BN-ReLU-1x1x1 conv, BN-ReLU-3x3x3 conv; its ``growth_rate`` new channels join the input."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(in_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(self.relu1(self.norm1(x)))
        new = self.conv2(self.relu2(self.norm2(new)))
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat([x, new], 1)


def transition(in_features: int, out_features: int) -> nn.Sequential:
    """BN-ReLU-1x1x1 conv that halves the channels, then 2x2x2 average pooling."""
    return nn.Sequential(
        OrderedDict(
            [
                ("norm", nn.BatchNorm3d(in_features)),
                ("relu", nn.ReLU(inplace=True)),
                ("conv", nn.Conv3d(in_features, out_features, kernel_size=1, bias=False)),
                ("pool", nn.AvgPool3d(kernel_size=2, stride=2)),
            ]
        )
    )


class DenseNet3d(VideoClassifier):
    classifier_name = "classifier"

    def __init__(
        self,
        block_config: Sequence[int],
        *,
        n_classes: int = 400,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        growth_rate: int = GROWTH_RATE,
        bn_size: int = BOTTLENECK_SIZE,
        init_features: int = INIT_FEATURES,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        stem = [
            (
                "conv1",
                nn.Conv3d(
                    n_input_channels,
                    init_features,
                    kernel_size=(conv1_t_size, 7, 7),
                    stride=(conv1_t_stride, 2, 2),
                    padding=(conv1_t_size // 2, 3, 3),
                    bias=False,
                ),
            ),
            ("norm1", nn.BatchNorm3d(init_features)),
            ("relu1", nn.ReLU(inplace=True)),
        ]
        if not no_max_pool:
            stem.append(("pool1", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))

        n_features = init_features
        for index, n_layers in enumerate(block_config, start=1):
            block = nn.Sequential()
            for layer in range(n_layers):
                block.add_module(
                    f"denselayer{layer + 1}", DenseLayer(n_features + layer * growth_rate, growth_rate, bn_size, drop_rate)
                )
            self.features.add_module(f"denseblock{index}", block)
            n_features += n_layers * growth_rate
            if index != len(block_config):
                self.features.add_module(f"transition{index}", transition(n_features, n_features // 2))
                n_features //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(n_features))

        self.classifier = nn.Linear(n_features, n_classes)
        init_conv_bn(self.modules())
        if holds_values(self.classifier):
            nn.init.constant_(self.classifier.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x), inplace=True)  # (N, F, T', H', W')
        return torch.flatten(F.adaptive_avg_pool3d(x, (1, 1, 1)), 1)  # (N, F)


def build_densenet(depth: int, **options) -> DenseNet3d:
    return DenseNet3d(BLOCK_CONFIGS[depth], **options)


register_family(
    ModelFamily(
        name="densenet",
        depths=tuple(BLOCK_CONFIGS),
        build=build_densenet,
        options={"n_input_channels": 3, "conv1_t_size": 7, "conv1_t_stride": 1, "no_max_pool": False},
        summary="3D DenseNet-BC (successor, 2020 names)",
    )
)
