"""Key renames that turn the originals' state_dict names into today's.

Each rename is exact and reported, so ``resnet3d models inspect`` can say what was changed:

- ``module.`` prefixes: 2018-era checkpoints were saved through ``nn.DataParallel``;
- the successor's 2018 DenseNet: its dense layers named their modules ``norm.1``, ``conv.1``,
  ``norm.2``, ``conv.2`` (PyTorch no longer allows dots in module names) and its stem
  ``conv0``/``norm0``; today's layout, which the 2020 successor uses, says ``norm1``, ``conv1``,
  ``norm2``, ``conv2`` and ``conv1``/``norm1``;
- BatchNorm's ``num_batches_tracked`` buffer, which PyTorch < 0.4.1 did not have: a missing one is
  filled with 0 (it only matters for BN with ``momentum=None``, which no model here uses).
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Tuple

import torch

StateDict = Dict[str, torch.Tensor]

_DATAPARALLEL_PREFIX = "module."
# torch.compile's wrapper, saved with the model (``torch.save(compiled.state_dict())``): "_orig_mod."
# in front of every key, also inside DataParallel's "module." ("module._orig_mod.conv1.weight")
_WRAPPER_PREFIXES = (_DATAPARALLEL_PREFIX, "_orig_mod.")
_DENSE_LAYER_2018 = re.compile(r"(\.denselayer\d+\.)(norm|conv|relu)\.(\d+)\.")
_DENSENET_STEM_2018 = {"features.conv0.": "features.conv1.", "features.norm0.": "features.norm1."}


def strip_dataparallel_prefix(state_dict: Mapping[str, torch.Tensor]) -> Tuple[StateDict, int]:
    """Remove the wrappers' prefixes, DataParallel's ``module.`` and torch.compile's ``_orig_mod.``
    (repeatedly, for nested wrappers) when every key carries one."""
    renamed = dict(state_dict)
    stripped = 0
    while True:
        prefix = next((p for p in _WRAPPER_PREFIXES if renamed and all(key.startswith(p) for key in renamed)), None)
        if prefix is None:
            return renamed, (len(renamed) if stripped else 0)
        renamed = {key[len(prefix) :]: value for key, value in renamed.items()}
        stripped += 1


def rename_densenet_2018(state_dict: Mapping[str, torch.Tensor]) -> Tuple[StateDict, int]:
    """``...denselayer1.norm.1.weight`` -> ``...denselayer1.norm1.weight``; stem ``conv0`` -> ``conv1``."""
    renamed: StateDict = {}
    count = 0
    is_2018_densenet = any(_DENSE_LAYER_2018.search(key) for key in state_dict) or any(
        key.startswith(old) for key in state_dict for old in _DENSENET_STEM_2018
    )
    for key, value in state_dict.items():
        new = key
        if is_2018_densenet:
            new = _DENSE_LAYER_2018.sub(r"\1\2\3.", new)
            for old, replacement in _DENSENET_STEM_2018.items():
                if new.startswith(old):
                    new = replacement + new[len(old) :]
        count += new != key
        renamed[new] = value
    return renamed, count


def fill_num_batches_tracked(state_dict: Mapping[str, torch.Tensor]) -> Tuple[StateDict, int]:
    """Add a zero ``num_batches_tracked`` to every BatchNorm that has running stats but lacks it."""
    filled = dict(state_dict)
    added = 0
    for key in state_dict:
        if key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            if counter not in filled:
                filled[counter] = torch.tensor(0, dtype=torch.long)
                added += 1
    return filled, added


def saved_before_pytorch_041(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """BatchNorms with running statistics and no ``num_batches_tracked``: saved by PyTorch < 0.4.1
    (before July 2018), so, for these models, by the successor's 2018 release."""
    keys = list(state_dict)
    return any(k.endswith(".running_mean") for k in keys) and not any(k.endswith(".num_batches_tracked") for k in keys)


def canonical_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Tuple[StateDict, List[str]]:
    """Apply every rename above; return the new state_dict and one note per rename applied."""
    notes: List[str] = []
    result, count = strip_dataparallel_prefix(state_dict)
    if count:
        notes.append(f"removed the wrappers' prefix ('module.' of DataParallel, '_orig_mod.' of torch.compile) "
                     f"from {count} keys")
    result, count = rename_densenet_2018(result)
    if count:
        notes.append(f"renamed {count} keys of the 2018 DenseNet layout (norm.1 -> norm1, conv0 -> conv1, ...)")
    result, count = fill_num_batches_tracked(result)
    if count:
        notes.append(f"added num_batches_tracked = 0 to {count} BatchNorm layers (saved by PyTorch < 0.4.1)")
    return result, notes
