"""torchvision's video ResNets (``torchvision.models.video``) onto our ``resnet``, by names and shapes.

torchvision stays optional: nothing here imports it. Facts about its ``VideoResNet``:

- stem ``stem.0`` Conv3d(3, 64, (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), no bias),
  ``stem.1`` BN, ReLU, and **no max-pool**;
- blocks ``layerN.M.conv1.0`` conv + ``conv1.1`` BN, ``conv2.0`` + ``conv2.1`` (``conv3.*`` in a
  bottleneck), ``downsample.0`` 1x1x1 conv + ``downsample.1`` BN where the shape changes
  (shortcut B); adaptive average pooling; ``fc``.

``r3d_18`` is therefore exactly our ResNet-18 with ``conv1_t_size=3``, ``no_max_pool=True``,
``shortcut_type='B'``: the conv padding (1, 3, 3) is what ``conv1_t_size=3`` gives, the blocks
and pooling are the same. The same holds for any VideoResNet built from ``Conv3DSimple`` and
``BasicStem`` (other depths, bottlenecks).

Not mapped, because no configuration of our models computes the same function:

- ``mc3_18``: layers 2-4 use (1, 3, 3) kernels and never stride in time;
- ``r2plus1d_18``: its stem is (1, 7, 7) -> 45 channels -> (3, 1, 1), where the successor's
  R(2+1)D stem is (1, 7, 7) -> 110 -> (7, 1, 1); and its blocks use one middle width per block,
  where the successor's computes one per convolution (layer2.0.conv2: 230 vs 288 channels).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Tuple

import torch

from resnet3d.checkpoints.infer import BASIC_DEPTHS, BOTTLENECK_DEPTHS
from resnet3d.errors import UserError
from resnet3d.normalization import InputNorm

# torchvision's video presets: values in [0, 1], Kinetics-400 mean and std.
TORCHVISION_KINETICS = InputNorm(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))

_BLOCK_UNIT = re.compile(r"^(layer\d+\.\d+\.)conv(\d)\.(\d+)\.(.+)$")


def is_torchvision_video_resnet(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """torchvision's VideoResNet family: r3d_18 and mc3_18 (``layer1.0.conv1.0`` is a Conv3d) and
    r2plus1d_18 (there a Conv2Plus1D, whose first convolution is ``layer1.0.conv1.0.0``)."""
    return "stem.0.weight" in state_dict and ("layer1.0.conv1.0.weight" in state_dict
                                              or "layer1.0.conv1.0.0.weight" in state_dict)


def _refuse_unmappable(state_dict: Mapping[str, torch.Tensor]) -> None:
    if "stem.3.weight" in state_dict:
        raise UserError(
            "this is torchvision's R(2+1)D (r2plus1d_18): its stem (45 mid channels, temporal "
            "kernel 3) and per-block middle widths differ from the successor's R(2+1)D, so no "
            "resnet3d model computes the same function; only r3d-style weights are mapped"
        )
    for key, value in state_dict.items():
        match = _BLOCK_UNIT.match(key)
        if match and match.group(3) == "0" and value.dim() == 5 and value.shape[2] == 1 and value.shape[3] == 3:
            raise UserError(
                f"this is torchvision's mixed-convolution MC3 ({key} has a (1, 3, 3) kernel): no "
                "resnet3d model has 2D-only stages, so it cannot be mapped; only r3d-style weights are"
            )


def map_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """torchvision VideoResNet (R3D) names -> our resnet names, and the matching model_config."""
    _refuse_unmappable(state_dict)
    mapped: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("stem.0."):
            new = "conv1." + key[len("stem.0.") :]
        elif key.startswith("stem.1."):
            new = "bn1." + key[len("stem.1.") :]
        else:
            match = _BLOCK_UNIT.match(key)
            if match:
                block, tag, position, rest = match.groups()
                if position == "0":
                    new = f"{block}conv{tag}.{rest}"
                elif position == "1":
                    new = f"{block}bn{tag}.{rest}"
                else:
                    raise UserError(f"torchvision key '{key}' has no counterpart in resnet3d's ResNet")
            elif key.startswith(("layer", "fc.")):
                new = key  # downsample.0/1 and fc keep their names
            else:
                raise UserError(f"torchvision key '{key}' has no counterpart in resnet3d's ResNet")
        mapped[new] = value

    stages: Dict[int, set] = {}
    for key in mapped:
        match = re.match(r"^layer(\d+)\.(\d+)\.", key)
        if match:
            stages.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    counts = tuple(len(stages.get(s, ())) for s in (1, 2, 3, 4))
    bottleneck = "layer1.0.conv3.weight" in mapped
    table = BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS
    if counts not in table:
        raise UserError(f"torchvision VideoResNet with {list(counts)} blocks per stage matches no ResNet depth")
    stem = mapped["conv1.weight"].shape
    config = {
        "model": "resnet",
        "model_depth": table[counts],
        "n_classes": int(mapped["fc.weight"].shape[0]),
        "n_input_channels": int(stem[1]),
        "conv1_t_size": int(stem[2]),
        "conv1_t_stride": 1,
        "no_max_pool": True,
        "shortcut_type": "B",
        "widen_factor": 1.0,
    }
    return mapped, config


def torchvision_names_for(our_state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse mapping (our resnet names -> torchvision's), to hand weights to torchvision."""
    inverse: Dict[str, torch.Tensor] = {}
    for key, value in our_state_dict.items():
        if key.startswith("conv1."):
            new = "stem.0." + key[len("conv1.") :]
        elif key.startswith("bn1."):
            new = "stem.1." + key[len("bn1.") :]
        else:
            match = re.match(r"^(layer\d+\.\d+\.)(conv|bn)(\d)\.(.+)$", key)
            if match:
                block, kind, tag, rest = match.groups()
                new = f"{block}conv{tag}.{0 if kind == 'conv' else 1}.{rest}"
            else:
                new = key
        inverse[new] = value
    return inverse


def notes_for_torchvision() -> List[str]:
    return [
        "torchvision VideoResNet (R3D) weights mapped onto resnet with conv1_t_size 3 and no max-pool",
        "input normalisation: torchvision's Kinetics mean/std on [0, 1] values",
    ]
