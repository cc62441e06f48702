"""Real-bytes fixtures for recognition, evaluation and classification: a generated motion data set
(JPEG folders and MP4s), a tiny ResNet-10 saved in our checkpoint format, and one saved the
successor's way."""
from __future__ import annotations

import pytest
import torch

from predict_helpers import DURATION, SIZE

from resnet3d.synthetic import make_action_dataset

@pytest.fixture(scope="session")
def motion(tmp_path_factory):
    """4 classes x 2 videos of 20 frames at 32x48 (one validation video per class), JPEG and MP4."""
    root = tmp_path_factory.mktemp("predict-motion")
    return make_action_dataset(str(root), n_classes=4, videos_per_class=2, n_frames=20, size=(32, 48), fmt="both", seed=5)


@pytest.fixture(scope="session")
def tiny_model():
    from resnet3d.models import create_model

    torch.manual_seed(0)
    return create_model("resnet", 10, n_classes=4).eval()


@pytest.fixture(scope="session")
def our_checkpoint(tmp_path_factory, tiny_model, motion):
    from resnet3d.engine.checkpoint import save_checkpoint
    from resnet3d.normalization import KINETICS

    path = tmp_path_factory.mktemp("predict-ckpt") / "model_best.pth"
    save_checkpoint(path, {
        "epoch": 2, "arch": "resnet-10", "model_config": tiny_model.model_config,
        "state_dict": tiny_model.state_dict(), "optimizer": None, "scheduler": None,
        "class_names": list(motion.class_names), "input_norm": KINETICS.to_dict(),
        "sample_size": SIZE, "sample_duration": DURATION,
    })
    return path


@pytest.fixture(scope="session")
def successor_checkpoint(tmp_path_factory, tiny_model):
    """The successor's save_<epoch>.pth layout: no class names, no clip size, no normalisation."""
    path = tmp_path_factory.mktemp("predict-ckpt-successor") / "save_2.pth"
    torch.save({"epoch": 2, "arch": "resnet-10", "state_dict": tiny_model.state_dict()}, path)
    return path
