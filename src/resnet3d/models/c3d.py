"""C3D, the seed's other model: eight 3x3x3 convs and five ceil-mode max-pools.

Layers follow the seed's ``models/c3d.lua``; names follow the C3D paper (``conv1a`` ... ``conv5b``,
``fc6``-``fc8``), with ``bn<name>`` after each conv and after fc6/fc7 when ``batch_norm`` is set.
- Default head: pool5, flatten, fc6 -> fc7 (ReLU, dropout each) -> ``fc8``. The flatten width
  depends on the clip size, so the model is built for ``sample_duration`` x ``sample_size``
  (16x112x112 gives the seed's 512*1*4*4 = 8192) and says which clip sizes it accepts.
- ``global_pooling=True``: average pooling over the whole map, then ``fc`` 512 -> n_classes; any
  clip size works.

Initialisation is the seed's, which was Torch7's default: convs and linears uniform in
+-1/sqrt(fan_in) (PyTorch's default is the same), BN weights uniform in [0, 1) and biases 0.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from resnet3d.errors import UserError
from resnet3d.models.base import VideoClassifier, holds_values
from resnet3d.models.registry import ModelFamily, register_family

# (conv name, output channels) and ("pool<i>", None), in order; pool1 keeps the time axis.
LAYOUT: Tuple[Tuple[str, Optional[int]], ...] = (
    ("1a", 64), ("pool1", None),
    ("2a", 128), ("pool2", None),
    ("3a", 256), ("3b", 256), ("pool3", None),
    ("4a", 512), ("4b", 512), ("pool4", None),
    ("5a", 512), ("5b", 512),
)  # fmt: skip
N_TEMPORAL_HALVINGS = 4  # pool2-pool5
N_SPATIAL_HALVINGS = 5  # pool1-pool5
FC_WIDTH = 4096
CONV_OUT = 512


def _pool(name: str) -> nn.MaxPool3d:
    kernel = (1, 2, 2) if name == "pool1" else (2, 2, 2)
    return nn.MaxPool3d(kernel_size=kernel, stride=kernel, ceil_mode=True)


def _accepted(final: int, halvings: int) -> Tuple[int, int]:
    """The input lengths that ``halvings`` ceil-mode halvings turn into ``final``."""
    return (final - 1) * 2**halvings + 1, final * 2**halvings


class C3D(VideoClassifier):
    def __init__(
        self,
        *,
        n_classes: int = 400,
        n_input_channels: int = 3,
        batch_norm: bool = False,
        global_pooling: bool = False,
        dropout_ratio: float = 0.5,
        sample_size: int = 112,
        sample_duration: int = 16,
    ) -> None:
        super().__init__()
        self.global_pooling = global_pooling
        self.conv_layers: List[str] = []
        in_channels = n_input_channels
        for name, channels in LAYOUT:
            if channels is None:
                self.add_module(name, _pool(name))
                self.conv_layers.append(name)
                continue
            self.add_module(f"conv{name}", nn.Conv3d(in_channels, channels, kernel_size=3, padding=1))
            self.conv_layers.append(f"conv{name}")
            if batch_norm:
                self.add_module(f"bn{name}", nn.BatchNorm3d(channels))
                self.conv_layers.append(f"bn{name}")
            self.conv_layers.append("relu")
            in_channels = channels
        self.relu = nn.ReLU(inplace=True)

        if global_pooling:
            self.classifier_name = "fc"
            self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
            self.fc = nn.Linear(CONV_OUT, n_classes)
        else:
            self.classifier_name = "fc8"
            self.pool5 = _pool("pool5")
            self.built_for = f"{sample_duration}x{sample_size}x{sample_size}"
            self.final_shape = (
                math.ceil(sample_duration / 2**N_TEMPORAL_HALVINGS),
                math.ceil(sample_size / 2**N_SPATIAL_HALVINGS),
                math.ceil(sample_size / 2**N_SPATIAL_HALVINGS),
            )
            self.fc6 = nn.Linear(CONV_OUT * math.prod(self.final_shape), FC_WIDTH)
            self.bn6 = nn.BatchNorm1d(FC_WIDTH) if batch_norm else nn.Identity()
            self.fc7 = nn.Linear(FC_WIDTH, FC_WIDTH)
            self.bn7 = nn.BatchNorm1d(FC_WIDTH) if batch_norm else nn.Identity()
            self.dropout = nn.Dropout(dropout_ratio)
            self.fc8 = nn.Linear(FC_WIDTH, n_classes)

        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and holds_values(module):
                nn.init.uniform_(module.weight, 0.0, 1.0)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        clip = x
        for name in self.conv_layers:
            x = self._modules[name](x)  # (N, C, T, H, W)
        if self.global_pooling:
            return torch.flatten(self.avgpool(x), 1)  # (N, 512)
        x = _fitting_fc6(self.pool5(x), clip, self.final_shape, self.built_for)
        x = torch.flatten(x, 1)  # (N, 512*T'*H'*W')
        x = self.dropout(self.relu(self.bn6(self.fc6(x))))
        return self.dropout(self.relu(self.bn7(self.fc7(x))))  # (N, 4096)


@torch.fx.wrap  # one opaque call when traced (models/fold.py): the check reads shapes as numbers
def _fitting_fc6(x: torch.Tensor, clip: torch.Tensor, final_shape: Tuple[int, int, int], built_for: str) -> torch.Tensor:
    """``x``, the map before fc6, if its size is the one fc6 was built for; else a UserError that
    says which clips fit."""
    if tuple(x.shape[2:]) != tuple(final_shape):
        t_range, h_range, w_range = (_accepted(n, halvings) for n, halvings in
                                     zip(final_shape, (N_TEMPORAL_HALVINGS, N_SPATIAL_HALVINGS, N_SPATIAL_HALVINGS)))
        accepted = (f"T in {t_range[0]}-{t_range[1]}, H in {h_range[0]}-{h_range[1]}, W in {w_range[0]}-{w_range[1]} "
                    f"(e.g. {built_for})")
        clip_size = "x".join(str(s) for s in clip.shape[2:])
        raise UserError(
            f"C3D without global pooling was built for a {CONV_OUT}x{'x'.join(map(str, final_shape))} map "
            f"before fc6 and accepts clips of {accepted}; got {clip_size}. Build it "
            "with sample_duration and sample_size equal to the clip's, or with global_pooling=True for any size."
        )
    return x


def build_c3d(depth: Optional[int], **options) -> C3D:
    if not 0.0 <= options["dropout_ratio"] < 1.0:
        raise UserError(f"c3d option dropout_ratio must be in [0, 1), got {options['dropout_ratio']}")
    return C3D(**options)


register_family(
    ModelFamily(
        name="c3d",
        depths=(),
        build=build_c3d,
        options={
            "n_input_channels": 3,
            "batch_norm": False,
            "global_pooling": False,
            "dropout_ratio": 0.5,
            "sample_size": 112,
            "sample_duration": 16,
        },
        summary="C3D (seed): 8 convs; batch_norm, global_pooling, dropout_ratio",
    )
)
