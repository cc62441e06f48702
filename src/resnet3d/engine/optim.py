"""Which parameters train, and the optimiser that trains them.

Fine-tuning follows both originals:
- ``ft_begin_module`` (successor): parameters from the first one whose top-level module has that
  name (``conv1``, ``layer3``, ``fc``; DenseNet's ``features.`` prefix is skipped, as the
  successor's ``get_module_name`` does) to the last one train; earlier ones are frozen.
- ``ft_begin_index K`` (2018 successor): the same from block K (``layer<K>`` of a ResNet,
  ``denseblock<K>`` of a DenseNet; 5 = the head), read against the model as built: fine-tuning
  builds the pretrained file's architecture, which need not be what ``--model`` said.
- ``freeze_params N`` (seed): only the last N layers that hold parameters train (a conv, a BN
  and a linear layer count one each, as the seed's ``unfreeze_layers`` counts modules with a
  weight or bias, walking from the output back).

Frozen parameters get ``requires_grad=False``, so no gradient is computed for them (the
originals computed and dropped it). BatchNorm layers of frozen modules still update their
running statistics in training mode, as in the originals, unless ``freeze_bn``.

SGD runs torch's fused kernel (one launch for every parameter's update) when all parameters are on
CUDA and this torch's SGD offers ``fused``; elsewhere torch's default (foreach on CUDA, a loop on
the CPU). Which kernel runs is no part of the optimiser's state: ``load_optimizer_state`` keeps
this run's choice when a checkpoint from another machine is loaded.
"""
from __future__ import annotations

import inspect
from typing import Any, Collection, Dict, Iterable, List, Mapping, Optional, Set

import torch
from torch import nn

from resnet3d.config import OptimConfig
from resnet3d.errors import UserError


def top_level_name(parameter_name: str) -> str:
    """The successor's get_module_name: 'layer3.1.conv1.weight' -> 'layer3' (skipping 'module.'
    and DenseNet's 'features.')."""
    parts = parameter_name.split(".")
    i = 1 if parts[0] == "module" and len(parts) > 1 else 0
    if parts[i] == "features" and len(parts) > i + 1:
        i += 1
    return parts[i]


def module_of_block(model: nn.Module, index: int) -> str:
    """The top-level module ``--ft_begin_index index`` names in ``model``."""
    if not 1 <= index <= 5:
        raise UserError(f"--ft_begin_index / ft_begin_index must be 0 (train all) or 1..5 (got {index})")
    modules = list(dict.fromkeys(top_level_name(name) for name, _ in model.named_parameters()))
    # 5: the head; a DenseNet's final BatchNorm with it, as the 2018 successor's fine-tuning list
    # for DenseNets ends with norm5 and classifier
    wanted = ("fc", "norm5", "classifier") if index == 5 else (f"layer{index}", f"denseblock{index}")
    for name in wanted:
        if name in modules:
            return name
    raise UserError(f"--ft_begin_index {index}: this model has no {' or '.join(wanted)} (its modules in order "
                    f"are: {', '.join(modules)}); name the first module to train with --ft_begin_module")


def trainable_names(model: nn.Module, ft_begin_module: str = "", freeze_params: int = 0,
                    ft_begin_index: int = 0) -> Optional[Set[str]]:
    """Names of the parameters to train; None means all of them."""
    names = [name for name, _ in model.named_parameters()]
    if ft_begin_index and not ft_begin_module:
        ft_begin_module = module_of_block(model, ft_begin_index)
    if ft_begin_module:
        for at, name in enumerate(names):
            if top_level_name(name) == ft_begin_module:
                return set(names[at:])
        modules = list(dict.fromkeys(top_level_name(n) for n in names))
        raise UserError(f"--ft_begin_module {ft_begin_module!r} names no module of this model; "
                        f"its modules in order are: {', '.join(modules)}")
    if freeze_params:
        layers = [(prefix, module) for prefix, module in model.named_modules()
                  if any(True for _ in module.parameters(recurse=False))]
        if freeze_params > len(layers):
            raise UserError(f"--freeze_params {freeze_params}: the model has only {len(layers)} layers with parameters")
        chosen: Set[str] = set()
        for prefix, module in layers[-freeze_params:]:
            chosen.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False))
        return chosen
    return None


def freeze(model: nn.Module, trainable: Optional[Set[str]]) -> List[nn.Parameter]:
    """Switch off gradients outside ``trainable``; return the parameters that train."""
    selected = []
    for name, parameter in model.named_parameters():
        train = trainable is None or name in trainable
        parameter.requires_grad_(train)
        if train:
            selected.append(parameter)
    if not selected:
        raise UserError("no parameter is left to train: check --ft_begin_module / --freeze_params")
    return selected


def set_train_mode(model: nn.Module, training: bool, freeze_bn: bool = False) -> None:
    """``model.train(training)``, keeping BatchNorm in eval mode when ``freeze_bn``."""
    model.train(training)
    if training and freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_optimizer(parameters: Iterable[nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    if optim.optimizer != "sgd":
        raise UserError(f"optimizer {optim.optimizer!r}: only sgd is supported")
    for flag, value in (("--learning_rate (--lr, [optim] learning_rate)", optim.learning_rate),
                        ("--momentum ([optim] momentum)", optim.momentum),
                        ("--dampening ([optim] dampening)", optim.dampening),
                        ("--weight_decay ([optim] weight_decay)", optim.weight_decay)):
        if not value >= 0:  # (also NaN)
            raise UserError(f"{flag} {value}: must be 0 or more")
    if optim.nesterov and (optim.momentum <= 0 or optim.dampening != 0):
        raise UserError("nesterov momentum needs --momentum > 0 and --dampening 0")
    parameters = list(parameters)
    return torch.optim.SGD(
        parameters,
        lr=optim.learning_rate,
        momentum=optim.momentum,
        dampening=optim.dampening,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
        **sgd_kernel({p.device.type for p in parameters}),
    )


def sgd_kernel(device_types: Collection[str], sgd_options: Optional[Collection[str]] = None) -> Dict[str, bool]:
    """SGD's implementation keywords for parameters on ``device_types``: ``{"fused": True}`` when
    all are on CUDA and SGD takes ``fused`` (``sgd_options``: its keyword names, read from this
    torch by default); otherwise none, so torch picks foreach on CUDA and a loop on the CPU."""
    if sgd_options is None:
        sgd_options = inspect.signature(torch.optim.SGD).parameters
    if "fused" in sgd_options and set(device_types) == {"cuda"}:
        return {"fused": True}
    return {}


def sgd_kernel_name(optimizer: torch.optim.Optimizer) -> str:
    """"fused", "foreach" or "for-loop": the update kernel an SGD optimiser runs (for reports)."""
    group = optimizer.param_groups[0]
    if group.get("fused"):
        return "fused"
    if group.get("foreach") or (group.get("foreach") is None and group["params"] and group["params"][0].is_cuda):
        return "foreach"  # (torch's default on CUDA)
    return "for-loop"


# param_group keys that choose how the update runs, not what it computes
KERNEL_KEYS = ("foreach", "fused", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict(saved)``, keeping this run's kernel choice. torch's loader takes
    the saved groups' ``fused``/``foreach`` flags too, so a checkpoint of a CUDA run (fused) would
    ask a CPU run for the fused kernel, and one from a CPU run would switch a CUDA run's fused
    kernel off; momentum buffers, learning rates and the rest come from ``saved`` as usual."""
    chosen = [{key: group[key] for key in KERNEL_KEYS if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(dict(saved))
    for group, kernel in zip(optimizer.param_groups, chosen):
        group.update(kernel)
    _lay_out_like_parameters(optimizer)


def _lay_out_like_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded per-parameter state tensor (the momentum buffer) its parameter's strides.

    torch's loader keeps the saved strides: a checkpoint of a CPU run (contiguous weights) read
    by a CUDA run in channels_last_3d, or the reverse, pairs parameters and momentum buffers of
    different layouts. The fused kernel walks all of them as flat memory: on CUDA it refuses them
    (``check_fast_path_restrictions`` in aten/src/ATen/native/cuda/FusedSgdKernel.cu wants the
    same sizes and strides), and on the CPU it silently mixes up elements. ``empty_like`` keeps the
    parameter's strides (tests/engine/test_sgd_kernel.py)."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if (isinstance(value, torch.Tensor) and value.shape == parameter.shape
                        and value.stride() != parameter.stride()):
                    state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = weight_decay
