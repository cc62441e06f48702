"""The seed's Lua Torch models (``.t7``) converted onto our models' names.

The seed (``th main.lua``) saves ``nn.Sequential`` trees, as ``cudnn.*`` modules holding
``torch.CudaTensor``s when trained on GPU, or as ``nn.*`` modules with float tensors after its
``convert_model_from_gpu_to_cpu.lua``. Both are read here; only the module's short class name
counts (``cudnn.VolumetricConvolution`` and ``nn.VolumetricConvolution`` are the same layer).

**ResNet** (``models/resnet.lua``): conv, BN, ReLU, max-pool; four stages, each an
``nn.Sequential`` of blocks ``Sequential(ConcatTable(residual, shortcut), CAddTable, ReLU)``,
the residual a Sequential of conv/BN/ReLU; then ``VolumetricAveragePooling(1, 4, 4)``, View,
Linear, LogSoftMax. The shortcut is read from the modules present, not assumed:

- A: ``Sequential(VolumetricAveragePooling(1,1,1, s,s,s), Concat(Identity, MulConstant(0)))``
  where the width changes, ``Identity`` elsewhere: no parameters;
- B: ``Sequential(conv 1x1x1, BN)`` only where the width changes;
- C: ``Sequential(conv 1x1x1, BN)`` on every block.

Every conv feeds a BN, so a conv bias (present unless the seed's ``--weight_init`` removed it)
folds exactly into that BN: ``running_mean -= bias`` (in eval mode BN subtracts the running mean
from conv + bias; in training mode the batch mean absorbs the bias either way).

The seed's ``(1, 4, 4)`` average pooling is a fixed window, sized for 16x112x112 clips, where
layer4 is 1x4x4; our adaptive pooling equals it there and also accepts other clip sizes.

**C3D** (``models/c3d.lua``): ``Sequential(features, classifier)`` of convs (with BN under
``--batch_norm``), ceil-mode max-pools, then either pool/View/fc 8192->4096/fc 4096->4096/fc->n
with ReLU and dropout, or (``--global_pooling``) average pooling (2, 7, 7), View, fc 512->n.
Its parameterised layers are matched *in order* onto our C3D's, checking kinds and shapes.

Both end in LogSoftMax: the seed's outputs are ``log_softmax`` of our logits, so the argmax and
the ranking of classes are the same.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from resnet3d.checkpoints.infer import BASIC_DEPTHS, BOTTLENECK_DEPTHS
from resnet3d.checkpoints.torch7 import TorchObject
from resnet3d.errors import UserError

CONV = "VolumetricConvolution"
BATCH_NORMS = ("VolumetricBatchNormalization", "BatchNormalization", "SpatialBatchNormalization")
LINEAR = "Linear"
CONTAINERS = ("Sequential", "DataParallelTable")
_NO_PARAMETERS = (
    "ReLU", "VolumetricMaxPooling", "VolumetricAveragePooling", "View", "Reshape", "Dropout",
    "VolumetricDropout", "LogSoftMax", "SoftMax", "Identity", "CAddTable", "MulConstant",
)


@dataclass
class SeedLayer:
    """One parameterised layer of a seed model, in forward order."""

    kind: str  # 'conv', 'bn' or 'linear'
    tensors: Dict[str, torch.Tensor]  # our parameter names: weight, bias, running_mean, ...
    where: str  # its position in the Lua tree, for messages ('3.2.1.1.4')
    eps: float = 1e-5
    module: Optional[TorchObject] = None


@dataclass
class SeedModel:
    """A converted seed model: a ready state_dict (ResNet) or ordered layers (C3D)."""

    family: str
    model_config: Dict[str, Any]
    state_dict: Optional[Dict[str, torch.Tensor]] = None
    layers: List[SeedLayer] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def _kind(module: Any) -> str:
    return module.short_type if isinstance(module, TorchObject) else type(module).__name__


def _float(value: Any, where: str, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() == 0:
        raise UserError(f"module {where}: '{name}' holds no weights")
    return value.detach().to(torch.float32).clone().contiguous()


def _number(module: TorchObject, name: str, default: float) -> float:
    value = module.get(name, default)
    return float(value) if value is not None else default


def _conv_layer(module: TorchObject, where: str) -> SeedLayer:
    tensors = {"weight": _float(module.get("weight"), where, "weight")}
    if tensors["weight"].dim() != 5:
        raise UserError(f"module {where} ({module.typename}): weight of shape {list(tensors['weight'].shape)}, expected 5-D")
    bias = module.get("bias")
    if isinstance(bias, torch.Tensor) and bias.numel():
        tensors["bias"] = _float(bias, where, "bias")
    return SeedLayer("conv", tensors, where, module=module)


def _bn_layer(module: TorchObject, where: str) -> SeedLayer:
    eps = _number(module, "eps", 1e-5)
    mean = _float(module.get("running_mean"), where, "running_mean")
    if isinstance(module.get("running_var"), torch.Tensor) and module.get("running_var").numel():
        var = _float(module.get("running_var"), where, "running_var")
    elif isinstance(module.get("running_std"), torch.Tensor) and module.get("running_std").numel():
        # nn before mid-2016 stored 1 / sqrt(var + eps) as running_std.
        var = 1.0 / _float(module.get("running_std"), where, "running_std") ** 2 - eps
    else:
        raise UserError(f"module {where} ({module.typename}) has no running_var or running_std")
    weight = module.get("weight")
    bias = module.get("bias")
    width = mean.numel()
    tensors = {
        "weight": _float(weight, where, "weight") if isinstance(weight, torch.Tensor) and weight.numel() else torch.ones(width),
        "bias": _float(bias, where, "bias") if isinstance(bias, torch.Tensor) and bias.numel() else torch.zeros(width),
        "running_mean": mean,
        "running_var": var,
        "num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }
    return SeedLayer("bn", tensors, where, eps=eps, module=module)


def _linear_layer(module: TorchObject, where: str) -> SeedLayer:
    tensors = {"weight": _float(module.get("weight"), where, "weight")}
    bias = module.get("bias")
    if isinstance(bias, torch.Tensor) and bias.numel():
        tensors["bias"] = _float(bias, where, "bias")
    return SeedLayer("linear", tensors, where, module=module)


def _unwrap(root: Any) -> Tuple[Any, str]:
    """Drop one-child wrappers (the seed's outer Sequential, a DataParallelTable)."""
    where = ""
    while isinstance(root, TorchObject) and _kind(root) in CONTAINERS and len(root.children()) == 1:
        child = root.children()[0]
        if not (isinstance(child, TorchObject) and _kind(child) in CONTAINERS):
            break
        root, where = child, f"{where}1."
    return root, where


def _contains(module: Any, kind: str) -> bool:
    if not isinstance(module, TorchObject):
        return False
    return _kind(module) == kind or any(_contains(child, kind) for child in module.children())


def _fold_bias_into_bn(conv: SeedLayer, bn: SeedLayer) -> bool:
    bias = conv.tensors.pop("bias", None)
    if bias is None:
        return False
    if bias.shape != bn.tensors["running_mean"].shape:
        raise UserError(f"modules {conv.where} and {bn.where}: conv bias and BN widths differ")
    bn.tensors["running_mean"] = bn.tensors["running_mean"] - bias
    return True


# -- ResNet ---------------------------------------------------------------------------------


@dataclass
class _Block:
    units: List[Tuple[SeedLayer, SeedLayer]]  # (conv, bn) of the residual path, in order
    shortcut: str  # 'identity', 'zeropad' or 'projection'
    projection: Optional[Tuple[SeedLayer, SeedLayer]]


def _conv_bn_pairs(modules: List[Any], where: str) -> List[Tuple[SeedLayer, SeedLayer]]:
    pairs: List[Tuple[SeedLayer, SeedLayer]] = []
    pending: Optional[SeedLayer] = None
    for index, module in enumerate(modules, start=1):
        kind = _kind(module)
        position = f"{where}.{index}"
        if kind == CONV:
            if pending is not None:
                raise UserError(f"module {position}: two convolutions without a BN between them")
            pending = _conv_layer(module, position)
        elif kind in BATCH_NORMS:
            if pending is None:
                raise UserError(f"module {position}: a BN that follows no convolution")
            pairs.append((pending, _bn_layer(module, position)))
            pending = None
        elif kind not in _NO_PARAMETERS:
            raise UserError(f"module {position}: unexpected {module.typename} in a residual branch")
    if pending is not None:
        raise UserError(f"module {where}: a convolution that feeds no BN")
    return pairs


def _parse_block(block: Any, where: str) -> _Block:
    children = block.children() if isinstance(block, TorchObject) else []
    if len(children) < 2 or _kind(children[0]) != "ConcatTable" or _kind(children[1]) != "CAddTable":
        kinds = [getattr(c, "typename", type(c).__name__) for c in children]
        raise UserError(f"module {where}: expected a residual block Sequential(ConcatTable, CAddTable, ReLU), found {kinds}")
    branches = children[0].children()
    if len(branches) != 2:
        raise UserError(f"module {where}.1: a ConcatTable with {len(branches)} branches, expected 2")
    residual, shortcut = branches
    units = _conv_bn_pairs(residual.children(), f"{where}.1.1")
    if len(units) not in (2, 3):
        raise UserError(f"module {where}.1.1: {len(units)} conv/BN pairs, expected 2 (basic) or 3 (bottleneck)")
    kind = _kind(shortcut)
    if kind == "Identity":
        return _Block(units, "identity", None)
    parts = shortcut.children() if kind == "Sequential" else []
    if parts and _kind(parts[0]) == CONV:
        pairs = _conv_bn_pairs(parts, f"{where}.1.2")
        if len(pairs) == 1:
            return _Block(units, "projection", pairs[0])
    if len(parts) == 2 and _kind(parts[0]) == "VolumetricAveragePooling" and _kind(parts[1]) == "Concat":
        inner = [_kind(m) for m in parts[1].children()]
        if inner == ["Identity", "MulConstant"]:
            return _Block(units, "zeropad", None)
    raise UserError(f"module {where}.1.2: a shortcut of an unknown form ({getattr(shortcut, 'typename', kind)})")


def _shortcut_type(blocks: List[List[_Block]]) -> str:
    kinds = {block.shortcut for stage in blocks for block in stage}
    if "zeropad" in kinds and "projection" in kinds:
        raise UserError("the model mixes zero-padding (A) and projection (B/C) shortcuts")
    if "projection" not in kinds:
        return "A"
    return "C" if kinds == {"projection"} else "B"


def _expect(modules: List[Any], index: int, kinds: Tuple[str, ...], where: str) -> Any:
    if index >= len(modules):
        raise UserError(f"the model ends after module {where}{index}; expected {' or '.join(kinds)}")
    module = modules[index]
    if _kind(module) not in kinds:
        raise UserError(f"module {where}{index + 1}: expected {' or '.join(kinds)}, found {getattr(module, 'typename', _kind(module))}")
    return module


def convert_seed_resnet(root: Any) -> SeedModel:
    """The seed's ResNet tree -> state_dict in our ``resnet`` names + model_config."""
    body, prefix = _unwrap(root)
    modules = body.children()
    notes: List[str] = []
    stem_conv = _conv_layer(_expect(modules, 0, (CONV,), prefix), f"{prefix}1")
    stem_bn = _bn_layer(_expect(modules, 1, BATCH_NORMS, prefix), f"{prefix}2")
    _expect(modules, 2, ("ReLU",), prefix)
    conv_module = stem_conv.module
    k_t, k_h, k_w = (int(_number(conv_module, name, 0)) for name in ("kT", "kH", "kW"))
    weight_shape = tuple(stem_conv.tensors["weight"].shape)
    k_t, k_h, k_w = k_t or weight_shape[2], k_h or weight_shape[3], k_w or weight_shape[4]
    d_t, d_h = int(_number(conv_module, "dT", 1)), int(_number(conv_module, "dH", 2))
    if (k_h, k_w, d_h) != (7, 7, 2):
        raise UserError(f"module {prefix}1: a {k_t}x{k_h}x{k_w} stem with spatial stride {d_h}; ours is Tx7x7 with stride 2")
    cursor = 3
    no_max_pool = _kind(modules[cursor]) != "VolumetricMaxPooling" if cursor < len(modules) else True
    if not no_max_pool:
        pool = modules[cursor]
        dims = tuple(int(_number(pool, n, 0)) for n in ("kT", "kH", "kW", "dT", "dH", "dW"))
        if dims != (3, 3, 3, 2, 2, 2):
            raise UserError(f"module {prefix}{cursor + 1}: a max-pool {dims}; ours is 3x3x3 with stride 2")
        cursor += 1

    stages: List[List[_Block]] = []
    for stage_index in range(4):
        stage = _expect(modules, cursor, ("Sequential",), prefix)
        where = f"{prefix}{cursor + 1}"
        stages.append([_parse_block(block, f"{where}.{i}") for i, block in enumerate(stage.children(), start=1)])
        cursor += 1
    pool = _expect(modules, cursor, ("VolumetricAveragePooling",), prefix)
    window = tuple(int(_number(pool, n, 0)) for n in ("kT", "kH", "kW"))
    notes.append(
        f"the seed's average pooling {window} is a fixed window; resnet3d pools adaptively, which is "
        "the same at the seed's 16x112x112 input"
    )
    cursor += 1
    while cursor < len(modules) and _kind(modules[cursor]) in ("View", "Reshape", "Dropout"):
        cursor += 1
    fc = _linear_layer(_expect(modules, cursor, (LINEAR,), prefix), f"{prefix}{cursor + 1}")
    for module in modules[cursor + 1 :]:
        if _kind(module) not in ("LogSoftMax", "SoftMax"):
            raise UserError(f"unexpected {getattr(module, 'typename', module)} after the classifier")

    bottleneck = len(stages[0][0].units) == 3
    if any(len(block.units) != len(stages[0][0].units) for stage in stages for block in stage):
        raise UserError("the model mixes basic and bottleneck blocks")
    counts = tuple(len(stage) for stage in stages)
    table = BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS
    if counts not in table:
        raise UserError(f"{'bottleneck' if bottleneck else 'basic'} blocks {list(counts)} per stage match no ResNet depth")
    shortcut = _shortcut_type(stages)

    folded = 0
    state: Dict[str, torch.Tensor] = {}

    def put(names: Tuple[str, str], conv: SeedLayer, bn: SeedLayer) -> None:
        nonlocal folded
        folded += _fold_bias_into_bn(conv, bn)
        conv_name, bn_name = names
        state[f"{conv_name}.weight"] = conv.tensors["weight"]
        for key, value in bn.tensors.items():
            state[f"{bn_name}.{key}"] = value

    put(("conv1", "bn1"), stem_conv, stem_bn)
    for s, stage in enumerate(stages, start=1):
        for b, block in enumerate(stage):
            for i, (conv, bn) in enumerate(block.units, start=1):
                put((f"layer{s}.{b}.conv{i}", f"layer{s}.{b}.bn{i}"), conv, bn)
            if block.projection is not None:
                put((f"layer{s}.{b}.downsample.0", f"layer{s}.{b}.downsample.1"), *block.projection)
    state["fc.weight"] = fc.tensors["weight"]
    if "bias" in fc.tensors:
        state["fc.bias"] = fc.tensors["bias"]
    if folded:
        notes.append(f"folded the biases of {folded} convolutions into their BatchNorms (running_mean -= bias)")
    eps_values = {layer.eps for layer in [stem_bn] + [bn for st in stages for bl in st for _, bn in bl.units]}
    if eps_values != {1e-5}:
        notes.append(f"the seed's BatchNorm eps is {sorted(eps_values)}; resnet3d uses 1e-5")

    config = {
        "model": "resnet",
        "model_depth": table[counts],
        "n_classes": int(fc.tensors["weight"].shape[0]),
        "n_input_channels": int(weight_shape[1]),
        "conv1_t_size": k_t,
        "conv1_t_stride": d_t,
        "no_max_pool": no_max_pool,
        "shortcut_type": shortcut,
        "widen_factor": stem_conv.tensors["weight"].shape[0] / 64,
    }
    return SeedModel("resnet", config, state_dict=state, notes=notes)


# -- C3D ------------------------------------------------------------------------------------


def _flatten(module: Any, where: str, out: List[Tuple[Any, str]]) -> None:
    kind = _kind(module)
    if kind in CONTAINERS:
        for index, child in enumerate(module.children(), start=1):
            _flatten(child, f"{where}.{index}" if where else str(index), out)
    else:
        out.append((module, where))


def convert_seed_c3d(root: Any) -> SeedModel:
    """The seed's C3D -> its parameterised layers in order, and the model_config they imply."""
    leaves: List[Tuple[Any, str]] = []
    _flatten(root, "", leaves)
    layers: List[SeedLayer] = []
    dropout: Optional[float] = None
    global_pooling = False
    for module, where in leaves:
        kind = _kind(module)
        if kind == CONV:
            layers.append(_conv_layer(module, where))
        elif kind in BATCH_NORMS:
            layers.append(_bn_layer(module, where))
        elif kind == LINEAR:
            layers.append(_linear_layer(module, where))
        elif kind == "VolumetricAveragePooling":
            global_pooling = True
        elif kind == "Dropout" and dropout is None:
            dropout = _number(module, "p", 0.5)
        elif kind not in _NO_PARAMETERS:
            raise UserError(f"module {where}: unexpected {getattr(module, 'typename', kind)} in the seed's C3D")
    convs = [layer for layer in layers if layer.kind == "conv"]
    linears = [layer for layer in layers if layer.kind == "linear"]
    if len(convs) != 8 or not linears:
        raise UserError(f"{len(convs)} convolutions and {len(linears)} linear layers: not the seed's C3D (8 convs)")
    config: Dict[str, Any] = {
        "model": "c3d",
        "n_classes": int(linears[-1].tensors["weight"].shape[0]),
        "batch_norm": any(layer.kind == "bn" for layer in layers),
        "global_pooling": global_pooling,
        "sample_size": 112,
        "sample_duration": 16,
    }
    if dropout is not None:
        config["dropout_ratio"] = dropout
    return SeedModel("c3d", config, layers=layers)


def _parameterised_modules(model: nn.Module) -> List[Tuple[str, str, nn.Module]]:
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv3d):
            found.append(("conv", name, module))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            found.append(("bn", name, module))
        elif isinstance(module, nn.Linear):
            found.append(("linear", name, module))
    return found


def map_layers_in_order(seed: SeedModel, model: nn.Module) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Give the seed's layers, in order, our model's names; check kinds and shapes on the way."""
    ours = _parameterised_modules(model)
    if [kind for kind, _, _ in ours] != [layer.kind for layer in seed.layers]:
        raise UserError(
            "the seed model's layers "
            f"({', '.join(layer.kind for layer in seed.layers)}) do not line up with resnet3d's "
            f"{seed.family} ({', '.join(kind for kind, _, _ in ours)})"
        )
    state: Dict[str, torch.Tensor] = {}
    folded = 0
    for index, ((kind, name, module), layer) in enumerate(zip(ours, seed.layers)):
        if kind == "conv" and "bias" in layer.tensors and module.bias is None:
            following = seed.layers[index + 1] if index + 1 < len(seed.layers) else None
            if following is None or following.kind != "bn":
                raise UserError(f"module {layer.where}: a conv bias with no BN to fold it into")
            folded += _fold_bias_into_bn(layer, following)
        for key, value in layer.tensors.items():
            target = f"{name}.{key}"
            expected = module.state_dict().get(key)
            if expected is None:
                raise UserError(f"module {layer.where}: resnet3d's '{name}' has no '{key}'")
            if tuple(expected.shape) != tuple(value.shape):
                raise UserError(
                    f"module {layer.where}: '{key}' has shape {list(value.shape)}, resnet3d's '{target}' "
                    f"expects {list(expected.shape)}"
                )
            state[target] = value
    notes = [f"matched {len(ours)} layers of the seed's {seed.family} in order onto resnet3d's"]
    if folded:
        notes.append(f"folded the biases of {folded} convolutions into their BatchNorms (running_mean -= bias)")
    return state, notes


def convert_seed_model(root: Any, path: Optional[Path] = None) -> SeedModel:
    """Recognise a seed model tree (ResNet or C3D) and convert it."""
    if not isinstance(root, TorchObject) or _kind(root) not in CONTAINERS:
        got = getattr(root, "typename", type(root).__name__)
        raise UserError(f"holds a {got}, not the seed's model (an nn.Sequential)")
    if _contains(root, "ConcatTable"):
        seed = convert_seed_resnet(root)
    else:
        seed = convert_seed_c3d(root)
    cuda = _contains_cuda(root)
    seed.notes.insert(0, f"Lua Torch7 {seed.family} ({'cudnn/CUDA' if cuda else 'nn/CPU'} modules) of the seed")
    return seed


def _contains_cuda(module: Any) -> bool:
    if isinstance(module, TorchObject):
        if module.typename.startswith("cudnn."):
            return True
        return any(_contains_cuda(child) for child in module.children())
    return False


def epoch_from_filename(path: Path) -> Optional[int]:
    """The seed names its checkpoints model_<epoch>.t7."""
    match = re.fullmatch(r"model_(\d+)\.t7", path.name)
    return int(match.group(1)) if match else None
