"""Folding each BatchNorm3d that directly follows a Conv3d into that convolution, for inference.

In eval mode a BN is a per-channel affine map with fixed numbers (its running statistics), so
``bn(conv(x))`` equals one convolution with scaled weights and a bias:

    s  = gamma / sqrt(running_var + eps)
    W' = W * s            (per output channel; the same for grouped and (2+1)D convs)
    b' = (b - running_mean) * s + beta

The BN's pass over the activations disappears; outputs agree up to float rounding.

Pairs are found on a ``torch.fx`` trace of the model, so only a conv whose output feeds nothing
but one BN is folded. A pre-activation BN (BN before its conv, PreAct-ResNet and DenseNet layers)
is left alone; so is a BN whose input is a sum or a concatenation. A model that does not trace
(C3D checks its clip size with Python control flow) is returned unfolded, with a debug log line:
folding is an optimisation and never a reason to fail.

``fold_batchnorm`` works on a copy by default: the caller's model (and so anything that saves or
reads it later) keeps its weights, its BN layers and its state_dict keys. The copy keeps the
caller's forward hooks (they see the copy's modules). A folded model is for eval mode only: its
BN layers are gone, so ``train()`` on it would not bring batch statistics back.

Cost: the copy copies only what folding keeps. A folded conv's weight is never copied (its folded
weight is computed from the caller's, read only) and a folded BN becomes an ``nn.Identity`` in the
copy without being copied; the other tensors (the head, unfolded convs and BNs) are cloned, so
nothing of the copy aliases the caller's model. The per-channel numbers (``s``, ``b'``) are
computed in float64, the weight product ``W * s`` in the weight's dtype (float32 at least): one
rounding of ``s`` more than a float64 product, far below the tolerance of the outputs, at a
fraction of the cost (a deep copy and float64 products over every weight took 0.8 s of CPU for
ResNet-18 on 2 cores).
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, List, Tuple

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

log = logging.getLogger("resnet3d.models.fold")


class _ConvBnTracer(fx.Tracer):
    """Traces down to the convs and BNs only: a module holding neither is one opaque call, so
    custom layers (a zero-padding shortcut, anything users add) need not be traceable."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, (nn.Conv3d, _BatchNorm)):
            return True
        return not any(isinstance(sub, (nn.Conv3d, _BatchNorm)) for sub in module.modules())


def find_conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    """(conv name, BN name) of every Conv3d whose output feeds only a BatchNorm3d that can be
    folded into it; [] when the model does not trace."""
    try:
        graph = _ConvBnTracer().trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure means "do not fold"
        log.debug("%s does not trace with torch.fx (%s: %s): its BatchNorm layers are not folded",
                  type(model).__name__, type(error).__name__, error)
        return []
    modules = dict(model.named_modules())
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    uses = _parameter_uses(model)
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv3d):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        bn_node = users[0]
        conv, bn = modules[node.target], modules.get(bn_node.target)
        # the conv's output is the BN's only input, and each module runs once (a conv or BN called
        # twice would be changed for its other call too)
        if (bn_node.args[:1] != (node,) or len(bn_node.args) != 1 or bn_node.kwargs
                or calls[node.target] != 1 or calls[bn_node.target] != 1):
            continue
        if _foldable(conv, bn, uses):
            pairs.append((node.target, bn_node.target))
    return pairs


def _parameter_uses(model: nn.Module) -> Dict[int, int]:
    """How many module attributes hold each parameter (a weight shared by two convs is not folded)."""
    uses: Dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    return uses


def _foldable(conv: nn.Module, bn: nn.Module, uses: Dict[int, int]) -> bool:
    if not isinstance(bn, nn.BatchNorm3d) and not isinstance(bn, nn.SyncBatchNorm):
        return False
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return False  # it normalises with the batch's own statistics, even in eval mode
    if bn.num_features != conv.out_channels or isinstance(conv.weight, nn.parameter.UninitializedParameter):
        return False
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    return all(uses.get(id(p), 0) == 1 for p in params)


def _copy_for_folding(model: nn.Module, pairs: List[Tuple[str, str]]) -> nn.Module:
    """A deep copy of ``model`` in which each folded BN already is an ``nn.Identity`` and each
    folded conv's weight and bias are still the caller's tensors (``fold_batchnorm`` replaces them
    with new ones): neither is copied only to be thrown away. The copy's modules keep the
    original's hook callables (not copies of them: a deep-copied bound method would copy the
    object it is bound to, e.g. a caller's counter)."""
    memo: Dict[int, object] = {}
    for module in model.modules():
        for name, value in vars(module).items():
            if "hook" in name and isinstance(value, dict) and value:
                memo[id(value)] = value.copy()
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        for param in (conv.weight, conv.bias):
            if param is not None:
                memo[id(param)] = param
        memo[id(model.get_submodule(bn_name))] = nn.Identity().eval()
    return copy.deepcopy(model, memo)


def _set_module(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[child] = replacement  # keeps the name, so callers looking it up by name still find it


@torch.no_grad()
def _folded_weights(conv: nn.Conv3d, bn: nn.Module) -> Tuple[nn.Parameter, nn.Parameter]:
    """(W', b') of ``conv`` followed by ``bn``; both modules are only read."""
    dtype = conv.weight.dtype
    # per output channel, few numbers: float64 costs nothing there
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    # every weight: one product in float32 (or the weight's wider dtype), rounded once to its dtype
    product = torch.promote_types(dtype, torch.float32)
    # weight: (out, in / groups, kT, kH, kW); one scale per output channel
    weight = conv.weight.to(product) * scale.to(product).view(-1, 1, 1, 1, 1)
    return (nn.Parameter(weight.to(dtype), requires_grad=False),
            nn.Parameter(bias.to(dtype), requires_grad=False))


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> Tuple[nn.Module, int]:
    """(model with every foldable conv->BN pair folded, number of pairs folded).

    ``inplace`` False (default) folds a copy and leaves ``model`` exactly as it was; with no pair
    to fold, ``model`` itself is returned. The model must be in eval mode: folding uses the BN's
    running statistics, which a model in training mode does not use (ValueError)."""
    training = [name for name, module in model.named_modules() if module.training]
    if training:
        raise ValueError(f"fold_batchnorm needs a model in eval mode (call .eval() first): "
                         f"{training[0] or type(model).__name__} is in training mode")
    pairs = find_conv_bn_pairs(model)
    if not pairs:
        return model, 0
    target = model if inplace else _copy_for_folding(model, pairs)
    for conv_name, bn_name in pairs:
        # read from the caller's modules (the copy has an Identity where the BN was)
        weight, bias = _folded_weights(model.get_submodule(conv_name), model.get_submodule(bn_name))
        conv = target.get_submodule(conv_name)
        conv.weight, conv.bias = weight, bias
        if inplace:
            _set_module(target, bn_name, nn.Identity().eval())
    log.debug("folded %d BatchNorm layers into their convolutions", len(pairs))
    return target, len(pairs)


__all__ = ["find_conv_bn_pairs", "fold_batchnorm"]
