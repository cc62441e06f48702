"""Recognition with BatchNorm folded into the convs (the default) against the model as it is:
the same top-1 for every video and window, scores within float rounding, the caller's model left
alone, and --resume indifferent to the switch."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from predict_helpers import DURATION, SIZE, recognition_config

from resnet3d.cli import main
from resnet3d.engine.predict import run_recognition
from resnet3d.engine.results import read_state, weights_digest

CPU = torch.device("cpu")
# Largest score difference seen between folded and unfolded runs of the decisive ResNet-10 below
# on the motion set (top-1 probabilities 0.81-0.87): 1.2e-7 (fp32 on the CPU); the bound leaves
# two orders of magnitude of room.
SCORE_TOLERANCE = 1e-5


def decisive_resnet10() -> nn.Module:
    """A ResNet-10 whose BN layers hold trained-looking statistics (far from mean 0, variance 1)
    and whose probabilities are far from uniform, so a folding error would show in the scores."""
    from resnet3d.models import create_model

    torch.manual_seed(3)
    model = create_model("resnet", 10, n_classes=4, widen_factor=0.25)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.25)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.3)
        model.fc.weight.mul_(3)
    return model.eval()


@pytest.fixture(scope="module")
def decisive_checkpoint(tmp_path_factory, motion):
    from resnet3d.engine.checkpoint import save_checkpoint
    from resnet3d.normalization import KINETICS

    model = decisive_resnet10()
    path = tmp_path_factory.mktemp("fold-ckpt") / "model_best.pth"
    save_checkpoint(path, {
        "epoch": 1, "arch": "resnet-10", "model_config": model.model_config, "state_dict": model.state_dict(),
        "optimizer": None, "scheduler": None, "class_names": list(motion.class_names),
        "input_norm": KINETICS.to_dict(), "sample_size": SIZE, "sample_duration": DURATION,
    })
    return path


def _test(motion, checkpoint, out, *flags):
    return main(["test", "--weights", str(checkpoint), "--video-path", motion.jpg_path,
                 "--annotation-path", motion.annotation_path, "--subset", "val", "--output", str(out),
                 "--no-average", "--workers", "0", "--batch-size", "4", "--device", "cpu", "--quiet", *flags])


def _windows(path):
    """(video, segment) -> [(label, score)] of a per-window results file."""
    results = json.loads(path.read_text())["results"]
    return {(video, tuple(window["segment"])): [(e["label"], e["score"]) for e in window["result"]]
            for video, windows in results.items() for window in windows}


@pytest.mark.slow
def test_test_command_folded_and_unfolded_agree(motion, decisive_checkpoint, tmp_path):
    assert _test(motion, decisive_checkpoint, tmp_path / "folded.json") == 0
    assert _test(motion, decisive_checkpoint, tmp_path / "plain.json", "--no-fold-bn") == 0
    folded, plain = _windows(tmp_path / "folded.json"), _windows(tmp_path / "plain.json")
    assert set(folded) == set(plain) and len(folded) == 4 * 3  # 4 videos x 3 windows
    top1 = [entries[0][1] for entries in plain.values()]
    # far from uniform (0.25) and from saturation (1.0): a wrong fold would move these scores
    assert 0.4 < min(top1) and max(top1) < 0.99
    for key, entries in plain.items():
        assert folded[key][0][0] == entries[0][0], key  # the same top-1 label
        scores = dict(folded[key])
        worst = max(abs(scores[label] - score) for label, score in entries)
        assert worst < SCORE_TOLERANCE, key
    # the switch is not a setting --resume checks: results of either kind continue with the other
    state = read_state(tmp_path / "plain.json")
    assert not any("fold" in key for key in state)
    assert _test(motion, decisive_checkpoint, tmp_path / "plain.json", "--resume") == 0
    assert _windows(tmp_path / "plain.json") == plain  # every video kept, none scored again


def test_recognition_runs_a_folded_copy_and_leaves_the_model_alone(motion, tmp_path):
    model = decisive_resnet10()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    digest = weights_digest(model)
    config = recognition_config(motion, tmp_path)
    folded = run_recognition(config, model=model, device=CPU, show_progress=False, announce=False)
    assert folded["folded_bn"] == 12  # stem + 4 blocks x 2 + projections into layers 2-4
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert isinstance(model.bn1, nn.BatchNorm3d)
    # the results' record names the weights the caller gave, not the folded copy's
    assert read_state(tmp_path / "val.json")["weights"] == digest

    # InferenceConfig.fold_bn (a config file's [inference] fold_bn = false) turns it off
    plain_config = replace(config, inference=replace(config.inference, fold_bn=False))
    plain = run_recognition(plain_config, model=model, device=CPU, output=tmp_path / "plain.json",
                            show_progress=False, announce=False)
    assert plain["folded_bn"] == 0
    a = json.loads((tmp_path / "val.json").read_text())["results"]
    b = json.loads((tmp_path / "plain.json").read_text())["results"]
    assert {k: v[0]["label"] for k, v in a.items()} == {k: v[0]["label"] for k, v in b.items()}


@pytest.mark.slow
def test_bench_test_compares_folded_and_unfolded(tmp_path, capsys):
    status = main(["bench", "test", "--synthetic-dir", str(tmp_path / "data"), "--videos", "4", "--frames", "12",
                   "--height", "32", "--width", "40", "--model_depth", "10", "--resnet_widen_factor", "0.5",
                   "--n_classes", "8", "--sample_size", "32", "--sample_duration", "8", "--n_threads", "0",
                   "--batch_size", "8", "--device", "cpu", "--no-baseline", "--compare-fold"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(line["fold_bn"], line["folded_bn"]) for line in lines] == [(True, 12), (False, 0)]
    assert "folded_vs_unfolded" in lines[1] and "folded_vs_unfolded" not in lines[0]
    assert "BN folded" in lines[0]["scheme"] and "BN folded" not in lines[1]["scheme"]
