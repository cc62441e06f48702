"""The model config inferred from tensors alone, for every configuration of the originals' manifest."""
from __future__ import annotations

import re

import pytest
import torch

from resnet3d.checkpoints import checkpoint_from_state_dict, load_checkpoint
from resnet3d.checkpoints.infer import infer_model_config
from resnet3d.errors import UserError
from resnet3d.models import create_model, model_options

# What no tensor shows: these keep create_model's defaults unless the checkpoint records them.
NOT_IN_THE_WEIGHTS = {"conv1_t_stride", "no_max_pool", "dropout_ratio"}


def _expanded(shapes):
    """Tensors of the manifest's shapes, one element of storage each, so even ResNet-200 is cheap."""
    return {name: torch.zeros(()).expand(*shape) if shape else torch.zeros((), dtype=torch.long) for name, shape in shapes}


def _original_config(entry):
    """create_model's full arguments for a manifest entry (its defaults filled in)."""
    arguments = dict(entry["create_model"])
    if entry.get("load_only"):
        arguments["stem_width"] = 64  # the 2018 WRN layout, which create_model builds this way
    full = {"model": arguments["model"], "model_depth": arguments.get("model_depth")}
    full.update(model_options(arguments["model"]))
    full.update(arguments)
    return {key: value for key, value in full.items() if value is not None}


def _assert_same_config(inferred, original):
    for key, value in original.items():
        if key not in NOT_IN_THE_WEIGHTS:
            assert inferred.get(key) == value, f"{key}: inferred {inferred.get(key)!r}, built with {value!r}"
    assert set(inferred) <= set(original) | {"stem_width"}, f"unexpected options {set(inferred) - set(original)}"


def _assert_same_model(inferred, original, shapes):
    _assert_same_config(inferred, original)
    with torch.device("meta"):
        rebuilt = create_model(**inferred)
    assert {k: list(v.shape) for k, v in rebuilt.state_dict().items()} == {k: s for k, s in shapes}


@pytest.mark.slow
def test_every_manifest_entry_is_recognised_from_its_shapes(manifest):
    """Inferred from shapes alone, the config equals the one that built the entry and rebuilds it."""
    for name, entry in manifest.items():
        shapes = entry["state_dict"]
        inferred, _ = infer_model_config({k: torch.empty(s, device="meta") for k, s in shapes})
        try:
            _assert_same_model(inferred, _original_config(entry), shapes)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def _to_2018_densenet(key):
    key = re.sub(r"^features\.(conv|norm)1\.", r"features.\g<1>0.", key)
    return re.sub(r"(denselayer\d+)\.(norm|conv)([12])\.", r"\1.\2.\3.", key)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["successor-2018", "bare"])
def test_every_manifest_entry_survives_save_and_reload(tmp_path, manifest, flavour):
    """Saved as the successor's 2018 files (DataParallel names, old DenseNet names) or bare, then reloaded."""
    for name, entry in manifest.items():
        shapes = entry["state_dict"]
        state = _expanded(shapes)
        if flavour == "successor-2018":
            state = {"module." + _to_2018_densenet(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
            model = entry["create_model"]
            obj = {"epoch": 10, "arch": f"{model['model']}-{model['model_depth']}", "state_dict": state}
        else:
            obj = state
        path = tmp_path / f"{name}-{flavour}.pth"
        torch.save(obj, path)
        loaded = load_checkpoint(path)
        try:
            _assert_same_config(loaded.model_config, _original_config(entry))
        except AssertionError as error:
            raise AssertionError(f"{name} ({flavour}): {error}") from None
        assert not any("arch says" in note for note in loaded.notes), (name, loaded.notes)
        path.unlink()


def test_arch_that_disagrees_with_the_tensors_is_noted(manifest):
    loaded = checkpoint_from_state_dict(_expanded(manifest["preresnet-18-B"]["state_dict"]), arch="resnet-18")
    assert loaded.model_config["model"] == "preresnet"
    assert any("arch says 'resnet-18'" in note for note in loaded.notes)


def test_unknown_layouts_are_explained():
    with pytest.raises(UserError, match="match no model family"):
        infer_model_config({"encoder.weight": torch.zeros(3, 3)}, arch="transformer-12")
    blocks = {f"layer{s}.{b}.conv1.weight": torch.zeros(64, 64, 3, 3, 3) for s in (1, 2, 3, 4) for b in range(5)}
    state = {"conv1.weight": torch.zeros(64, 3, 7, 7, 7), "fc.weight": torch.zeros(10, 512), **blocks}
    with pytest.raises(UserError, match=r"\[5, 5, 5, 5\] blocks per stage matches no known depth"):
        infer_model_config(state)


def test_c3d_state_dicts_are_recognised():
    for options in ({"batch_norm": True, "global_pooling": True}, {"batch_norm": False, "sample_size": 64, "sample_duration": 8}):
        with torch.device("meta"):
            model = create_model("c3d", n_classes=11, **options)
        inferred, _ = infer_model_config(model.state_dict())
        for key in ("model", "n_classes", "n_input_channels", "batch_norm", "global_pooling"):
            assert inferred[key] == model.model_config[key], key
        # 8 and 16 frames give the same fc6 width: the weights fix the layer shapes, not the clip.
        with torch.device("meta"):
            rebuilt = create_model(**inferred)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
