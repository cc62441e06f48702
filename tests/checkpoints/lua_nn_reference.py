"""A tiny evaluator of Lua Torch nn module trees, in eval mode, following Torch7's semantics.

It runs the seed's model as Lua would (conv biases kept, shortcut A as a Concat with
MulConstant(0), the fixed average-pooling window, LogSoftMax at the end), straight from the
records the .t7 reader returns, so the converter's output can be compared with the original.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from resnet3d.checkpoints.torch7 import TorchObject


def _triple(m: TorchObject, t: str, h: str, w: str, default: int = 0):
    return tuple(int(m.get(name, default) or default) for name in (t, h, w))


def lua_forward(m: TorchObject, x):
    kind = m.short_type
    if kind == "Sequential":
        for child in m.children():
            x = lua_forward(child, x)
        return x
    if kind == "ConcatTable":
        return [lua_forward(child, x) for child in m.children()]
    if kind == "CAddTable":
        total = x[0]
        for other in x[1:]:
            total = total + other
        return total
    if kind == "Concat":
        return torch.cat([lua_forward(child, x) for child in m.children()], dim=int(m["dimension"]) - 1)
    if kind == "Identity":
        return x
    if kind == "MulConstant":
        return x * float(m["constant_scalar"])
    if kind == "VolumetricConvolution":
        bias = m.get("bias")
        bias = bias if isinstance(bias, torch.Tensor) and bias.numel() else None
        return F.conv3d(x, m["weight"], bias, stride=_triple(m, "dT", "dH", "dW", 1), padding=_triple(m, "padT", "padH", "padW"))
    if kind in ("VolumetricBatchNormalization", "BatchNormalization"):
        return F.batch_norm(x, m["running_mean"], m["running_var"], m["weight"], m["bias"], training=False, eps=float(m["eps"]))
    if kind == "ReLU":
        return F.relu(x)
    if kind == "VolumetricMaxPooling":
        return F.max_pool3d(x, _triple(m, "kT", "kH", "kW"), _triple(m, "dT", "dH", "dW"),
                            _triple(m, "padT", "padH", "padW"), ceil_mode=bool(m.get("ceil_mode", False)))
    if kind == "VolumetricAveragePooling":
        return F.avg_pool3d(x, _triple(m, "kT", "kH", "kW"), _triple(m, "dT", "dH", "dW"))
    if kind == "View":
        return x.reshape(x.shape[0], int(m["numElements"]))
    if kind == "Linear":
        return F.linear(x, m["weight"], m["bias"])
    if kind == "Dropout":
        return x  # eval mode (nn.Dropout v2 scales while training only)
    if kind == "LogSoftMax":
        return F.log_softmax(x, dim=1)
    raise NotImplementedError(m.typename)
