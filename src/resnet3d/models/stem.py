"""Running the stem convolution as if its input had 8 channels instead of 3 (an experiment).

cuDNN's tensor-core kernels for bf16/fp16 convolutions in channels_last_3d want channel counts
that are multiples of 8; an RGB stem (3 input channels, a 7x7x7 kernel, about 13% of ResNet-18's
forward FLOPs) may fall back to slower kernels. ``pad_stem_channels`` makes the first such
convolution add zero channels to its input and zero weights for them at run time. The result is
the same convolution (the extra products are 0 x 0), the gradient reaches only the real weights,
and the parameter keeps its name and shape, so checkpoints are unaffected.

Whether it is faster is for the GPU to say: ``resnet3d bench train --sweep --stem-pad 8``
measures it beside the plain stem.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


class ChannelPaddedConv3d(nn.Conv3d):
    """A ``Conv3d`` that computes over ``padded_in_channels`` input channels, the extra ones zero."""

    padded_in_channels: int

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        extra = self.padded_in_channels - input.shape[1]
        if extra > 0:
            input = _pad_channels(input, extra)
            weight = _pad_channels(weight, extra)
        return super()._conv_forward(input, weight, bias)


def _pad_channels(x: torch.Tensor, extra: int) -> torch.Tensor:
    """``extra`` zero channels after dim 1's, in the memory format ``x`` has (F.pad alone would
    return a contiguous tensor and undo channels_last_3d)."""
    channels_last = x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    padded = F.pad(x, (0, 0) * (x.dim() - 2) + (0, extra))
    return padded.contiguous(memory_format=torch.channels_last_3d) if channels_last else padded


def pad_stem_channels(model: nn.Module, multiple: int = 8) -> Optional[str]:
    """Make the model's first ``Conv3d`` whose input channels are not a multiple of ``multiple``
    compute as if they were (rounded up). Returns that convolution's name, or None when there is
    none. The model's parameters, their names and shapes do not change."""
    if multiple < 2:
        return None
    for name, module in model.named_modules():
        if type(module) is nn.Conv3d and module.in_channels % multiple:
            module.__class__ = ChannelPaddedConv3d
            module.padded_in_channels = -(-module.in_channels // multiple) * multiple
            return name
    return None
