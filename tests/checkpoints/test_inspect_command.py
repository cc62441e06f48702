"""`resnet3d models inspect CKPT` through the real command line."""
from __future__ import annotations

import json

import torch

from resnet3d.cli import main
from resnet3d.models import create_model


def _save_successor(path, n_classes=5):
    torch.manual_seed(0)
    model = create_model("resnet", 10, n_classes=n_classes, shortcut_type="A")
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 200, "arch": "resnet-10", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)


def test_inspect_says_what_a_checkpoint_is_and_that_it_loads(tmp_path, capsys):
    path = tmp_path / "save_200.pth"
    _save_successor(path)
    assert main(["models", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for expected in ("successor checkpoint", "resnet-10", "classes      5", "epoch        200", "arch         resnet-10",
                     "shortcut_type=A", "not recorded", "'module.'", "loads        yes"):
        assert expected in out, (expected, out)


def test_inspect_json_and_a_failing_check(tmp_path, capsys):
    path = tmp_path / "save_200.pth"
    _save_successor(path)
    assert main(["models", "inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "resnet" and report["depth"] == 10 and report["n_classes"] == 5
    assert report["epoch"] == 200 and report["source_format"] == "successor" and report["loads"] is True
    assert report["optimizer"] is True and report["scheduler"] is False

    assert main(["models", "inspect", str(path), "--n_classes", "400"]) == 1
    out = capsys.readouterr().out
    assert "loads        NO" in out and "fc.weight" in out and "--n_classes 5" in out


def test_inspect_refuses_an_unsafe_file_with_status_2(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": print}, path)
    assert main(["models", "inspect", str(path)]) == 2
    assert "never unpickles arbitrary code" in capsys.readouterr().err
