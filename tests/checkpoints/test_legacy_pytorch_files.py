"""The successor's 2018 checkpoints as PyTorch 0.3/0.4 wrote them on its GPUs (legacy, non-zip
format; tensors from ``torch.cuda.FloatStorage`` by ``_rebuild_tensor``), and the legacy format of
PyTorch 0.4.1-1.5: both load with ``weights_only=True`` on a machine without CUDA."""
from __future__ import annotations

import collections

import pytest
import torch

from legacy_torch_writer import write_pytorch03_checkpoint
from resnet3d.checkpoints import build_model_from_checkpoint, load_checkpoint
from resnet3d.cli import main
from resnet3d.models import create_model
from resnet3d.normalization import SEED


def _trained_2018_resnet():
    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=5, shortcut_type="A", widen_factor=0.25)
    generator = torch.Generator().manual_seed(1)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm3d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
    return model.eval()


def _as_2018(model):
    """DataParallel names, no num_batches_tracked (PyTorch < 0.4.1), the CVPR2018 branch's keys."""
    state = collections.OrderedDict(("module." + k, v) for k, v in model.state_dict().items()
                                    if not k.endswith("num_batches_tracked"))
    momentum = {i: {"momentum_buffer": torch.full_like(p, 0.5)} for i, p in enumerate(model.parameters())}
    optimizer = {"state": momentum, "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 1e-3,
                                                      "nesterov": False, "params": list(range(len(momentum)))}]}
    return {"epoch": 200, "arch": "resnet-10", "state_dict": state, "optimizer": optimizer}


@pytest.mark.parametrize("writer", ["pytorch-0.3", "legacy-format"])
def test_2018_checkpoint_in_legacy_formats_loads_and_computes_the_same(tmp_path, writer, capsys):
    ours = _trained_2018_resnet()
    path = tmp_path / "resnet-10-kinetics.pth"
    if writer == "pytorch-0.3":
        write_pytorch03_checkpoint(_as_2018(ours), path)
        assert path.read_bytes()[:2] == b"\x80\x02"  # a plain pickle stream, not a zip
    else:
        torch.save(_as_2018(ours), path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path)
    assert loaded.source_format == "successor" and loaded.epoch == 200
    assert loaded.model_config["widen_factor"] == 0.25 and loaded.model_config["shortcut_type"] == "A"
    assert loaded.input_norm == SEED  # the 2018 release's default input
    assert len(loaded.optimizer["state"]) == len(list(ours.parameters()))
    model, _ = build_model_from_checkpoint(loaded)
    clip = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model.eval()(clip), ours(clip))
    assert main(["models", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model        resnet-10" in out and "loads        yes" in out
