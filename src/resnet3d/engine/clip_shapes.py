"""A model's forward pass on a clip's shape alone, each layer's output size found by arithmetic.

Recognition checks that a clip fits the model before the first video (``model_start.check_clip_fits``).
A forward pass on PyTorch's meta device answers that, but any meta operation that computes (a
convolution, even ``relu`` or ``x + x``) makes torch import its compiler stack, torch._dynamo and
sympy: about 800 modules and 1.1 s of CPU in every ``test`` and ``classify`` process. Here the
model's own ``forward`` runs under a ``TorchFunctionMode`` that answers each operation with an
empty meta tensor of the size the operation would give: convolutions and pools by torch's output
size formulas, element-wise operations, batch norm, concatenation, padding and linear layers by
their shapes. Creating, viewing and slicing meta tensors computes nothing and imports nothing.

The model's structure is its own (branches, shortcuts, concatenations, a C3D's check of its map
before fc6), only the numbers are missing. An operation without a rule here, a layer the clip is
too small for, or any other error gives None: the caller then runs the meta forward, which decides
and says why in torch's own words (or the model's). So the arithmetic only ever answers "it fits"
by itself, and a model it does not know costs what it cost before.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


class _CannotTell(Exception):
    """An operation without a rule, arguments a rule does not cover, or a layer the clip is too
    small for: the meta forward decides."""


def _empty(shape: Sequence[int], like: Tensor) -> Tensor:
    return torch.empty(tuple(shape), dtype=like.dtype, device="meta")


def _triple(value: Any, name: str) -> Tuple[int, int, int]:
    if isinstance(value, int):
        return (value,) * 3
    if isinstance(value, (tuple, list)) and len(value) == 1:
        return (int(value[0]),) * 3
    if isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, int) for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise _CannotTell(f"{name} {value!r}")


def _clip_sizes(input: Tensor) -> List[int]:
    if input.dim() != 5 or any(size < 1 for size in input.shape[2:]):
        raise _CannotTell(f"input of shape {tuple(input.shape)}")
    return list(input.shape[2:])


def _conv3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: Any = 1, padding: Any = 0,
            dilation: Any = 1, groups: int = 1) -> Tensor:
    sizes = _clip_sizes(input)
    if weight.dim() != 5 or input.shape[1] != weight.shape[1] * groups:
        raise _CannotTell("convolution channels")
    out = []
    for size, kernel, s, p, d in zip(sizes, weight.shape[2:], _triple(stride, "stride"), _triple(padding, "padding"),
                                     _triple(dilation, "dilation")):
        span = d * (kernel - 1) + 1
        if s < 1 or p < 0 or size + 2 * p < span:  # torch: "Kernel size can't be greater than actual input size"
            raise _CannotTell("convolution window")
        out.append((size + 2 * p - span) // s + 1)
    return _empty((input.shape[0], weight.shape[0], *out), input)


def _pooled_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """ATen's pooling_output_shape (floor division, as its div_rtn)."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # the last window starts inside the input
        out -= 1
    return out


def _pool3d(input: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
            whole_kernel: bool = False) -> Tensor:
    """``whole_kernel``: the input, padding left out, must hold a whole window (avg_pool3d: "input
    image smaller than kernel size", whatever the padding)."""
    sizes = _clip_sizes(input)
    kernels = _triple(kernel_size, "kernel_size")
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)  # torch: the kernel's
    strides = kernels if no_stride else _triple(stride, "stride")
    out = []
    for size, k, s, p, d in zip(sizes, kernels, strides, _triple(padding, "padding"), _triple(dilation, "dilation")):
        if k < 1 or s < 1 or d < 1 or p < 0 or p > k // 2:  # torch's own error, not a size one
            raise _CannotTell("pooling arguments")
        pooled = _pooled_size(size, k, s, p, d, bool(ceil_mode))
        if pooled < 1 or (whole_kernel and size < k):  # torch: "Output size is too small" / "smaller than kernel"
            raise _CannotTell("pooling window")
        out.append(pooled)
    return _empty((*input.shape[:2], *out), input)


def _max_pool3d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False, return_indices: bool = False) -> Tensor:
    if return_indices:
        raise _CannotTell("max_pool3d with indices")
    return _pool3d(input, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool3d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    return _pool3d(input, kernel_size, stride, padding, 1, ceil_mode, whole_kernel=True)


def _adaptive_pool3d(input: Tensor, output_size: Any, *rest: Any, **kwargs: Any) -> Tensor:
    sizes = _clip_sizes(input)
    wanted = [output_size] * 3 if isinstance(output_size, int) else list(output_size)
    if len(wanted) != 3:
        raise _CannotTell(f"output_size {output_size!r}")
    out = [size if w is None else int(w) for size, w in zip(sizes, wanted)]
    if kwargs.get("return_indices") or (rest and rest[0]):
        raise _CannotTell("adaptive pooling with indices")
    return _empty((*input.shape[:2], *out), input)


def _batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor], weight: Any = None,
                bias: Any = None, training: bool = False, *rest: Any, **kwargs: Any) -> Tensor:
    # in training mode batch statistics can fail on a single value per channel: torch decides
    if training or running_mean is None or input.dim() < 2 or running_mean.numel() != input.shape[1]:
        raise _CannotTell("batch norm")
    return _empty(input.shape, input)


def _relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input if inplace else _empty(input.shape, input)


def _dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return input if inplace else _empty(input.shape, input)


def _elementwise(in_place: bool) -> Callable[..., Tensor]:
    def rule(input: Tensor, other: Any, *rest: Any, **kwargs: Any) -> Tensor:
        if not isinstance(input, Tensor) or (isinstance(other, Tensor) and other.shape != input.shape):
            raise _CannotTell("element-wise operands")  # (broadcasting is torch's to decide)
        return input if in_place else _empty(input.shape, input)

    return rule


def _cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    if not tensors or len({t.dim() for t in tensors}) != 1:
        raise _CannotTell("cat operands")
    dim = dim % tensors[0].dim()
    rest = {tuple(s for i, s in enumerate(t.shape) if i != dim) for t in tensors}
    if len(rest) != 1:
        raise _CannotTell("cat operands")
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _empty(shape, tensors[0])


def _pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: Optional[float] = None) -> Tensor:
    if mode != "constant" or len(pad) % 2 or len(pad) // 2 > input.dim():
        raise _CannotTell("padding")
    shape = list(input.shape)
    for i in range(len(pad) // 2):  # (left, right) pairs from the last dimension backwards
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    if any(size < 1 for size in shape):
        raise _CannotTell("padding")
    return _empty(shape, input)


def _linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    if input.dim() < 1 or weight.dim() != 2 or input.shape[-1] != weight.shape[1]:
        raise _CannotTell("linear operands")
    return _empty((*input.shape[:-1], weight.shape[0]), input)


_RULES: Dict[Any, Callable[..., Any]] = {
    torch.conv3d: _conv3d,
    F.max_pool3d: _max_pool3d,
    F.avg_pool3d: _avg_pool3d,
    F.adaptive_avg_pool3d: _adaptive_pool3d,
    F.adaptive_max_pool3d: _adaptive_pool3d,
    F.batch_norm: _batch_norm,
    F.relu: _relu,
    torch.relu: _relu,
    Tensor.relu: _relu,
    F.dropout: _dropout,
    F.pad: _pad,
    F.linear: _linear,
    torch.cat: _cat,
    torch.add: _elementwise(False),
    Tensor.add: _elementwise(False),
    Tensor.__add__: _elementwise(False),
    Tensor.add_: _elementwise(True),
    Tensor.__iadd__: _elementwise(True),
}
# (F.relu_ and torch.relu_ modify in place)
_RULES.update({F.relu_: lambda input: input, torch.relu_: lambda input: input, Tensor.relu_: lambda input: input})

# on meta tensors these compute nothing (shapes, views, slices) and import nothing
_AS_THEY_ARE = {Tensor.dim, Tensor.size, Tensor.numel, Tensor.__getitem__, Tensor.view, Tensor.reshape,
                Tensor.flatten, torch.flatten, Tensor.is_contiguous}


class _ShapeArithmetic(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is not None:
            return rule(*args, **kwargs)
        if func in _AS_THEY_ARE or getattr(func, "__name__", "") == "__get__":  # (a property: x.shape)
            return func(*args, **kwargs)
        raise _CannotTell(f"no rule for {getattr(func, '__qualname__', func)}")


def shape_forward(model: torch.nn.Module, clip: Tensor) -> Optional[Tensor]:
    """``model(clip)`` as an empty meta tensor of the output's shape, every layer's size found by
    arithmetic; None wherever the arithmetic does not show that the clip fits: an operation
    without a rule here, a layer's window the clip is too small for, or any error the forward
    raises (a C3D's check of its fc6 size, say). The meta forward decides those, and gives the
    error. ``clip`` is a meta tensor; ``model`` runs its own forward (its hooks included), so it is
    best a meta copy (``model_start.shape_only_copy``) in eval mode."""
    try:
        with torch.no_grad(), _ShapeArithmetic():
            return model(clip)
    except Exception:  # noqa: BLE001 - never an answer of its own: the meta forward gives it
        return None


__all__ = ["shape_forward"]
