"""``resnet3d models``: the table, JSON lines, FLOPs against the published figures, inspect dispatch."""
from __future__ import annotations

import json
import sys
import types

from torch import nn

from resnet3d import cli
from resnet3d.commands import models as models_command
from resnet3d.models.flops import count_macs


def run_cli(capsys, *argv):
    status = cli.main(["models", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_lines_give_params_and_published_flops(capsys):
    status, out, _ = run_cli(capsys, "--json", "--model", "resnet-18", "--model", "resnet-50")
    assert status == 0
    rows = {row["model"]: row for row in map(json.loads, out.splitlines())}
    assert set(rows) == {"resnet-18", "resnet-50"}
    # REFERENCE.md section 6: 16.6 GFLOPs (8.3 GMACs) and 20.1 GFLOPs at 16x112x112
    assert round(rows["resnet-18"]["gmacs"], 1) == 8.3 and round(rows["resnet-18"]["gflops"], 1) == 16.6
    assert round(rows["resnet-50"]["gflops"], 1) == 20.1
    assert rows["resnet-18"]["params"] == 33409104 and rows["resnet-18"]["num_features"] == 512
    assert rows["resnet-50"]["input"] == [16, 112, 112]


def test_table_lists_every_model(capsys):
    status, out, _ = run_cli(capsys, "--input", "16x112x112", "--n-classes", "400")
    assert status == 0
    lines = out.splitlines()
    assert any(line.startswith("model") and "GFLOPs" in line for line in lines)
    import resnet3d

    for arch in resnet3d.list_models():
        assert any(line.split()[:1] == [arch] for line in lines), arch
    resnet18 = next(line for line in lines if line.startswith("resnet-18 "))
    assert resnet18.split()[1:4] == ["33.4", "8.31", "16.62"]


def test_set_options_and_an_input_a_model_cannot_take(capsys):
    status, out, _ = run_cli(capsys, "--json", "--model", "resnet-18", "--set", "shortcut_type=A", "--model", "densenet-121", "--input", "8x64x64")
    rows = {row["model"]: row for row in map(json.loads, out.splitlines())}
    assert rows["resnet-18"]["model_config"]["shortcut_type"] == "A" and rows["resnet-18"]["params"] == 33235280
    assert "error" in rows["densenet-121"]  # three transitions cannot halve 2 frames


def test_bad_arguments_are_one_line_errors(capsys):
    for argv, fragment in [
        (("--input", "16x112"), "TxHxW"),
        (("--set", "nonsense=1"), "no model takes"),
        (("--model", "resnet-19"), "no depth 19"),
    ]:
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and fragment in err


def test_c3d_is_counted_at_the_requested_clip_size(capsys):
    _, out, _ = run_cli(capsys, "--json", "--model", "c3d", "--input", "8x64x64")
    row = json.loads(out)
    assert row["model_config"]["sample_size"] == 64 and row["model_config"]["sample_duration"] == 8


def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(4 * 64, 5))
    counts = count_macs(model, (1, 2, 4, 4, 4))
    assert counts["conv"] == 4 * 64 * 2 * 27 and counts["linear"] == 5 * 256 and counts["bn"] == 256
    assert counts["total"] == counts["conv"] + counts["linear"]
    assert model[0].weight.device.type == "cpu"  # counted on a meta copy
    grouped = nn.Conv3d(8, 8, 3, padding=1, groups=4)
    assert count_macs(grouped, (1, 8, 2, 2, 2))["conv"] == 8 * 8 * 2 * 27


def test_inspect_dispatches_to_the_checkpoint_module(capsys, monkeypatch):
    calls = []
    fake = types.ModuleType("fake_inspect")

    def add_arguments(parser):
        parser.add_argument("checkpoint")
        parser.add_argument("--json", action="store_true")

    fake.add_arguments = add_arguments
    fake.run_inspect = lambda args: calls.append(args) or 0
    monkeypatch.setitem(sys.modules, "fake_inspect", fake)
    monkeypatch.setattr(models_command, "INSPECT_MODULE", "fake_inspect")
    status, _, _ = run_cli(capsys, "inspect", "save_200.pth", "--json")
    assert status == 0 and calls[0].checkpoint == "save_200.pth" and calls[0].json


def test_inspect_without_the_checkpoint_module_says_so(capsys, monkeypatch):
    monkeypatch.setattr(models_command, "INSPECT_MODULE", "resnet3d.no_such_module")
    status, _, err = run_cli(capsys, "inspect", "x.pth")
    assert status == 2 and "unavailable" in err and "resnet3d.no_such_module" in err
