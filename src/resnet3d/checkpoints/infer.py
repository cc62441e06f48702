"""Work out which model a state_dict belongs to, from its names and shapes alone.

The successor's checkpoints say little more than ``arch: 'resnet-50'``, and bare state_dicts say
nothing, yet the tensors fix almost everything ``create_model`` needs:

- the family: ``features.denseblock*`` -> densenet; ``conv1_s`` -> resnet2p1d; BN widths that
  follow each conv's *input* -> preresnet; a grouped middle conv -> resnext; a bottleneck that
  widens 2x instead of 4x -> wideresnet; ``conv1a``..``conv5b`` -> c3d; else resnet;
- the depth, from the number of blocks per stage (dense layers per block for DenseNet);
- the shortcut: no ``downsample`` keys -> A, on every block -> C, else B;
- ``n_classes`` and ``n_input_channels`` from the classifier and the first conv, ``conv1_t_size``
  from the first conv's temporal kernel, widths (``widen_factor``, ``k``, ``cardinality``) from
  the layer widths, and the 2018 WRN's 64-wide stem.

``conv1_t_stride`` and ``no_max_pool`` leave no trace in the weights; they keep their defaults
unless the checkpoint records a config (ours) or the source fixes them (torchvision).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from resnet3d.errors import UserError

# blocks per stage -> depth
BASIC_DEPTHS = {(1, 1, 1, 1): 10, (2, 2, 2, 2): 18, (3, 4, 6, 3): 34}
BOTTLENECK_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152, (3, 24, 36, 3): 200}
DENSENET_DEPTHS = {(6, 12, 24, 16): 121, (6, 12, 32, 32): 169, (6, 12, 48, 32): 201, (6, 12, 64, 48): 264}

# First-stage width of each family at widen_factor / k 1, and ResNeXt's fixed stem.
_BASE_PLANES = 64
_RESNEXT_BASE_PLANES = 128
_RESNEXT_STEM = 64

_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")
_DENSE_KEY = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.")


def parse_arch(arch: Optional[str]) -> Tuple[Optional[str], Optional[int]]:
    """'resnet-50' -> ('resnet', 50); anything else -> what can be read of it."""
    if not arch:
        return None, None
    match = re.fullmatch(r"\s*([A-Za-z0-9_]+?)-(\d+)\s*", str(arch))
    if match:
        return match.group(1).lower(), int(match.group(2))
    return str(arch).strip().lower() or None, None


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> Optional[Tuple[int, ...]]:
    value = state_dict.get(key)
    return tuple(value.shape) if value is not None else None


def _stage_blocks(state_dict: Mapping[str, torch.Tensor]) -> Dict[int, List[int]]:
    stages: Dict[int, set] = {}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stages.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return {stage: sorted(blocks) for stage, blocks in sorted(stages.items())}


def _counts(stages: Dict[int, List[int]], what: str) -> Tuple[int, ...]:
    if sorted(stages) != [1, 2, 3, 4]:
        raise UserError(f"expected {what} stages layer1..layer4, found {sorted(stages) or 'none'}")
    for stage, blocks in stages.items():
        if blocks != list(range(len(blocks))):
            raise UserError(f"layer{stage} has blocks {blocks}: some are missing")
    return tuple(len(stages[s]) for s in (1, 2, 3, 4))


def _depth(counts: Tuple[int, ...], table: Dict[Tuple[int, ...], int], what: str) -> int:
    if counts not in table:
        known = ", ".join(f"{depth}: {list(c)}" for c, depth in table.items())
        raise UserError(f"{what} with {list(counts)} blocks per stage matches no known depth ({known})")
    return table[counts]


def _classifier(state_dict: Mapping[str, torch.Tensor], name: str) -> int:
    shape = _shape(state_dict, f"{name}.weight")
    if shape is None or len(shape) != 2:
        raise UserError(f"no 2-D classifier weight '{name}.weight'")
    return shape[0]


def _shortcut(state_dict: Mapping[str, torch.Tensor], stages: Dict[int, List[int]]) -> str:
    blocks = [(s, b) for s, bs in stages.items() for b in bs]
    projected = [f"layer{s}.{b}.downsample.0.weight" in state_dict for s, b in blocks]
    if not any(projected):
        return "A"
    if all(projected):
        return "C"
    return "B"


def _is_preactivation(state_dict: Mapping[str, torch.Tensor], stages: Dict[int, List[int]]) -> bool:
    """Pre-activation blocks put each BN before its conv, so the BN is as wide as the conv's input.

    Decided by the first (bn_i, conv_i) pair whose conv changes the width.
    """
    for stage, blocks in stages.items():
        for block in blocks:
            for tag in ("1", "2", "3"):
                conv = _shape(state_dict, f"layer{stage}.{block}.conv{tag}.weight")
                bn = _shape(state_dict, f"layer{stage}.{block}.bn{tag}.weight")
                if conv is None or bn is None or len(conv) != 5:
                    continue
                out_width, in_width = conv[0], conv[1]
                if out_width == in_width:
                    continue
                if bn[0] == in_width:
                    return True
                if bn[0] == out_width:
                    return False
    return False


def _infer_densenet(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    layers: Dict[int, set] = {}
    for key in state_dict:
        match = _DENSE_KEY.match(key)
        if match:
            layers.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    if sorted(layers) != [1, 2, 3, 4]:
        raise UserError(f"DenseNet with dense blocks {sorted(layers)}; expected denseblock1..4")
    counts = tuple(len(layers[b]) for b in (1, 2, 3, 4))
    stem = _shape(state_dict, "features.conv1.weight")
    if stem is None:
        raise UserError("DenseNet without a stem convolution 'features.conv1.weight'")
    return {
        "model": "densenet",
        "model_depth": _depth(counts, DENSENET_DEPTHS, "DenseNet"),
        "n_classes": _classifier(state_dict, "classifier"),
        "n_input_channels": stem[1],
        "conv1_t_size": stem[2],
    }


def _infer_resnet2p1d(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    stages = _stage_blocks(state_dict)
    counts = _counts(stages, "R(2+1)D")
    bottleneck = "layer1.0.conv3.weight" in state_dict
    spatial = _shape(state_dict, "conv1_s.weight")
    temporal = _shape(state_dict, "conv1_t.weight")
    if spatial is None or temporal is None:
        raise UserError("R(2+1)D without its stem 'conv1_s.weight' / 'conv1_t.weight'")
    if bottleneck:
        planes = _shape(state_dict, "layer1.0.conv1.weight")[0]
    else:
        planes = _shape(state_dict, "layer1.0.conv1_t.weight")[0]
    return {
        "model": "resnet2p1d",
        "model_depth": _depth(counts, BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS, "R(2+1)D"),
        "n_classes": _classifier(state_dict, "fc"),
        "n_input_channels": spatial[1],
        "conv1_t_size": temporal[2],
        "shortcut_type": _shortcut(state_dict, stages),
        "widen_factor": planes / _BASE_PLANES,
        **({"stem_width": temporal[0]} if temporal[0] != planes else {}),
    }


def _infer_residual(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """resnet, preresnet, resnext or wideresnet (3D convs, names conv1/bn1/layerN.M.*)."""
    stages = _stage_blocks(state_dict)
    counts = _counts(stages, "ResNet")
    stem = _shape(state_dict, "conv1.weight")
    if stem is None or len(stem) != 5:
        raise UserError("no 5-D stem convolution 'conv1.weight'")
    bottleneck = "layer1.0.conv3.weight" in state_dict
    config: Dict[str, Any] = {
        "n_classes": _classifier(state_dict, "fc"),
        "n_input_channels": stem[1],
        "conv1_t_size": stem[2],
        "shortcut_type": _shortcut(state_dict, stages),
    }
    table = BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS
    first_width = _shape(state_dict, "layer1.0.conv1.weight")[0]  # a bottleneck's reduced width

    def widths(model: str, depth_name: str, planes: int, base: int, default_stem: int) -> Dict[str, Any]:
        """model, depth, widen_factor (first-stage planes / the family's base) and stem_width."""
        found = {"model": model, "model_depth": _depth(counts, table, depth_name), "widen_factor": planes / base}
        if stem[0] != default_stem:
            found["stem_width"] = stem[0]
        return found

    if _is_preactivation(state_dict, stages):
        config.update(widths("preresnet", "pre-activation ResNet", first_width, _BASE_PLANES, first_width))
        return config
    if not bottleneck:
        config.update(widths("resnet", "ResNet", first_width, _BASE_PLANES, first_width))
        return config

    middle = _shape(state_dict, "layer1.0.conv2.weight")
    out_planes = _shape(state_dict, "layer1.0.conv3.weight")[0]
    groups = first_width // middle[1] if middle[1] and first_width % middle[1] == 0 else 1
    expansion = out_planes / first_width
    if groups > 1:
        # ResNeXt: stage widths 128..1024, conv3 = 2 x planes, a 64-wide stem.
        config.update(widths("resnext", "ResNeXt", out_planes // 2, _RESNEXT_BASE_PLANES, _RESNEXT_STEM))
        config["cardinality"] = groups
        return config
    if expansion == 2:
        # WRN: stage widths 64k..512k with a 64k stem (2020); the 2018 layout keeps a 64 stem.
        k = first_width / _BASE_PLANES
        config.update(widths("wideresnet", "Wide ResNet", first_width, first_width, first_width))
        if k.is_integer():
            config.update(k=int(k), widen_factor=1.0)
        else:
            config.update(k=1, widen_factor=k)
        return config
    if expansion == 4:
        config.update(widths("resnet", "ResNet", first_width, _BASE_PLANES, first_width))
        return config
    raise UserError(f"a bottleneck that widens {expansion:g}x matches no family (ResNet 4x, WRN/ResNeXt 2x)")


def _infer_c3d(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Our C3D's names (conv1a ... conv5b, fc6-fc8, or fc with global pooling)."""
    first = _shape(state_dict, "conv1a.weight")
    config: Dict[str, Any] = {
        "model": "c3d",
        "n_input_channels": first[1],
        "batch_norm": "bn1a.weight" in state_dict,
        "global_pooling": "fc.weight" in state_dict,
    }
    if config["global_pooling"]:
        config["n_classes"] = _classifier(state_dict, "fc")
        return config
    config["n_classes"] = _classifier(state_dict, "fc8")
    # fc6 sees 512 x T' x S' x S' values, T' = ceil(T / 16), S' = ceil(S / 32): take the widest S'.
    cells = _shape(state_dict, "fc6.weight")[1] // 512
    side = max(s for s in range(1, int(cells**0.5) + 1) if cells % (s * s) == 0)
    config.update(sample_size=c3d_clip_side(side, 32, 112), sample_duration=c3d_clip_side(cells // (side * side), 16, 16))
    return config


def c3d_clip_side(cells: int, per_cell: int, usual: int) -> int:
    """A clip side that gives ``cells`` cells after C3D's pooling (any side in
    ``(per_cell * (cells - 1), per_cell * cells]``): the seed's ``usual`` one where it fits (112 px
    and 4 cells: 128 fits too, but the seed trained on 112), else the largest."""
    return usual if per_cell * (cells - 1) < usual <= per_cell * cells else per_cell * cells


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """A quick look at the names: 'densenet', 'resnet2p1d', 'residual', 'c3d' or None."""
    if "conv1a.weight" in state_dict and "conv5b.weight" in state_dict:
        return "c3d"
    if any(key.startswith("features.denseblock") for key in state_dict):
        return "densenet"
    if "conv1_s.weight" in state_dict:
        return "resnet2p1d"
    if "conv1.weight" in state_dict and any(key.startswith("layer1.") for key in state_dict):
        return "residual"
    return None


def infer_model_config(state_dict: Mapping[str, torch.Tensor], arch: Optional[str] = None) -> Tuple[Dict[str, Any], List[str]]:
    """The ``create_model`` arguments that fit ``state_dict`` (our names), and notes.

    Raises UserError when the tensors match no family; ``arch`` is then named in the message.
    Where ``arch`` disagrees with the tensors, the tensors win and a note says so.
    """
    family = detect_family(state_dict)
    arch_family, arch_depth = parse_arch(arch)
    try:
        if family == "c3d":
            config = _infer_c3d(state_dict)
        elif family == "densenet":
            config = _infer_densenet(state_dict)
        elif family == "resnet2p1d":
            config = _infer_resnet2p1d(state_dict)
        elif family == "residual":
            config = _infer_residual(state_dict)
        else:
            sample = ", ".join(list(state_dict)[:4]) or "no keys"
            raise UserError(f"the parameter names ({sample}, ...) match no model family of resnet3d")
    except UserError as error:
        said = f" (its arch says '{arch}')" if arch else ""
        raise UserError(f"cannot tell which model this checkpoint holds{said}: {error}") from None
    # The family and depth first, as create_model and model_config list them.
    config = {"model": config.pop("model"), "model_depth": config.pop("model_depth", None), **config}
    if config["model_depth"] is None:
        del config["model_depth"]
    notes: List[str] = []
    if arch_family and arch_family != config["model"]:
        notes.append(f"arch says '{arch}', but the tensors are a {config['model']}: using the tensors")
    elif arch_depth and arch_depth != config.get("model_depth"):
        notes.append(f"arch says '{arch}', but the tensors have depth {config['model_depth']}: using the tensors")
    return config, notes
