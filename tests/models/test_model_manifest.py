"""Every configuration of the originals' state_dict manifest builds with exactly its names and shapes.

The manifest (tests/data/state_dicts.json, a copy of the shared reference) lists, per entry, the
create_model arguments, every state_dict name with its shape in order, and the parameter count.
Models are built on the meta device: no memory, no initialisation cost.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import resnet3d

MANIFEST = json.loads((Path(__file__).parents[1] / "data" / "state_dicts.json").read_text())
BUILDABLE = {name: entry for name, entry in MANIFEST.items() if "load_only" not in entry}


def meta_model(**kwargs):
    with torch.device("meta"):
        return resnet3d.create_model(**kwargs)


def names_and_shapes(model):
    return [(name, list(tensor.shape)) for name, tensor in model.state_dict().items()]


@pytest.mark.parametrize("entry_name", sorted(BUILDABLE))
def test_state_dict_names_shapes_and_order(entry_name):
    entry = BUILDABLE[entry_name]
    model = meta_model(**entry["create_model"])
    expected = [(name, shape) for name, shape in entry["state_dict"]]
    got = names_and_shapes(model)
    assert sorted(got) == sorted(expected), entry_name  # names and shapes
    assert got == expected, entry_name  # and the same order
    assert sum(p.numel() for p in model.parameters()) == entry["n_params"]
