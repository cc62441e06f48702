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


def test_inspect_suggests_fixes_it_takes_and_they_work(tmp_path, capsys):
    """Its fixes were spelled for `main` (--conv1_t_size 7, --batch_norm, --input_type flow), flags
    inspect refuses; they are --set OPTION=VALUE, and typing them makes the check pass."""
    cases = [  # checkpoint options, the wrong --set, the fix
        ({"model": "resnet", "model_depth": 10, "n_classes": 5, "conv1_t_size": 3, "widen_factor": 0.25},
         "conv1_t_size=7", "--set conv1_t_size=3"),
        ({"model": "resnet", "model_depth": 10, "n_classes": 5, "n_input_channels": 2, "widen_factor": 0.25},
         "n_input_channels=3", "--set n_input_channels=2"),
        ({"model": "c3d", "n_classes": 5, "batch_norm": True, "global_pooling": True},
         "batch_norm=False", "--set batch_norm=True"),
    ]
    for index, (options, wrong, fix) in enumerate(cases):
        path = tmp_path / f"weights_{index}.pth"
        torch.save(create_model(**options).state_dict(), path)
        assert main(["models", "inspect", str(path), "--set", wrong]) == 1
        out = capsys.readouterr().out
        assert f"fix: {fix}" in out, out
        assert main(["models", "inspect", str(path), *fix.split()]) == 0
        assert "loads        yes" in capsys.readouterr().out
