"""Checkpoints: the one loader for every flavour users hold, and inspection.

``load_checkpoint(path)`` reads our checkpoints, the successor's (2018 and 2020), bare
state_dicts, torchvision's R3D weights and the seed's Lua Torch ``.t7`` models;
``build_model_from_checkpoint(path)`` builds the matching model and loads it strictly;
``load_weights(model, state_dict)`` explains any mismatch with a table and the fixing flag.
"""
from __future__ import annotations

from resnet3d.checkpoints.load import (
    LoadedCheckpoint,
    build_model_from_checkpoint,
    checkpoint_from_state_dict,
    load_checkpoint,
    load_weights,
    torch_load_safely,
)

__all__ = [
    "LoadedCheckpoint",
    "build_model_from_checkpoint",
    "checkpoint_from_state_dict",
    "load_checkpoint",
    "load_weights",
    "torch_load_safely",
]
