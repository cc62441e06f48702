"""What recognition checks about a loaded model before its first batch: a C3D's clip size, the
input channels a model takes, clips too small for it. Each was a traceback from the first batch,
or a flag silently passed over."""
from __future__ import annotations

import argparse

import pytest
import torch

from resnet3d.cli import main
from resnet3d.engine.predict_model import load_inference_model
from resnet3d.errors import UserError
from resnet3d.models import create_model


def _args(**given):
    return argparse.Namespace(**{"sample_size": None, "sample_duration": None, **given})


def _bare(tmp_path, name, model):
    path = tmp_path / name
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, path)
    return path


def test_c3d_clip_size_comes_from_the_flag_else_from_its_fc6(tmp_path):
    """A bare C3D read as 128 px (the widest side its fc6 fits; the seed trained it on 112), and
    --sample-size was passed over for every C3D."""
    plain = _bare(tmp_path, "c3d.pth", create_model("c3d", n_classes=3))
    loaded = load_inference_model(str(plain), _args())
    assert (loaded.sample_size, loaded.sample_duration) == (112, 16)
    assert load_inference_model(str(plain), _args(sample_size=120)).sample_size == 120  # 4 cells too
    with pytest.raises(UserError, match=r"fc6 was trained on clips of 1 x 4 x 4 pooled cells \(1-16 frames of "
                                        r"97-128 px\); --sample-duration 16 --sample-size 64 does not give them"):
        load_inference_model(str(plain), _args(sample_size=64))
    pooled = _bare(tmp_path, "c3d-gp.pth", create_model("c3d", n_classes=3, global_pooling=True))
    assert load_inference_model(str(pooled), _args(sample_size=64)).sample_size == 64


def test_test_refuses_a_flow_model_on_rgb_frames(motion, tmp_path, capsys):
    flow = _bare(tmp_path, "flow.pth", create_model("resnet", 10, n_classes=4, n_input_channels=2))
    assert main(["test", "--weights", str(flow), "--video-path", motion.jpg_path, "--annotation-path",
                 motion.annotation_path, "--result-path", str(tmp_path / "out"), "--device", "cpu",
                 "--n-threads", "0", "--sample-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "2 input channels" in err and "--input-type flow" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["test", "classify"])
def test_clips_too_small_for_the_model_name_the_flags_in_recognition(motion, tmp_path, capsys, command):
    densenet = _bare(tmp_path, "densenet.pth", create_model("densenet", 121, n_classes=4))
    if command == "test":
        argv = ["test", "--weights", str(densenet), "--video-path", motion.jpg_path, "--annotation-path",
                motion.annotation_path, "--result-path", str(tmp_path / "out"), "--device", "cpu", "--n-threads", "0"]
    else:
        argv = ["classify", motion.video_path, "--model", str(densenet), "--output", str(tmp_path / "l.json")]
    assert main([*argv, "--sample-size", "32", "--sample-duration", "4"]) == 2
    err = capsys.readouterr().err
    assert "too small for densenet-121" in err and "raise --sample_duration and/or --sample_size" in err, err
    assert "Traceback" not in err
