"""Multiply-accumulate counts of a model's forward pass, measured on the meta device.

Forward hooks see every convolution, linear layer and batch norm of a meta-device copy of the
model (shapes only, no arithmetic), so even ResNet-200 at 16x112x112 is counted in a fraction of
a second and the caller's model is left untouched.

Counted: a conv's output elements x (input channels / groups) x kernel volume and a linear
layer's outputs x inputs; their sum is ``total``, the convention of the published figures
(ResNet-18: 8.3 GMACs = 16.6 GFLOPs, ResNet-50: 20.1 GFLOPs at 16x112x112). Batch norms are
reported apart (``bn``, one MAC per element) because at inference they fold into the conv before
them; pooling, ReLU and additions are not counted. GFLOPs are 2 x GMACs.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, Sequence

import torch
from torch import nn


class _ShapeOnlyNorm(nn.Identity):
    """Stands in for a batch norm in the meta copy: same shape, and far cheaper to trace on meta."""


def _shape_only(model: nn.Module, inplace: bool) -> nn.Module:
    clone = (model if inplace else copy.deepcopy(model)).to("meta")
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _ShapeOnlyNorm())
    return clone


def count_macs(model: nn.Module, input_shape: Sequence[int], *, inplace: bool = False) -> Dict[str, int]:
    """MACs of one forward pass of ``model`` on an input of ``input_shape`` (N, C, T, H, W).

    Returns ``{"conv": ..., "linear": ..., "bn": ..., "total": conv + linear}``. With
    ``inplace=True`` a throwaway model is measured without a copy, and is left on the meta device
    with its batch norms replaced.
    """
    meta = _shape_only(model, inplace).eval()
    counts = {"conv": 0, "linear": 0, "bn": 0}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv3d):
            counts["conv"] += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        elif isinstance(module, nn.Linear):
            counts["linear"] += output.numel() * module.in_features
        else:
            counts["bn"] += output.numel()

    handles = [
        m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (nn.Conv3d, nn.Linear, _ShapeOnlyNorm))
    ]
    try:
        with torch.no_grad():
            meta(torch.empty(*input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    counts["total"] = counts["conv"] + counts["linear"]
    return counts
