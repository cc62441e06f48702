"""Shared real-bytes fixtures for the data tests: small generated data sets, made once per session."""
from __future__ import annotations

import pytest

from resnet3d.synthetic import make_action_dataset


@pytest.fixture(scope="session")
def motion_set(tmp_path_factory):
    """4 classes x 3 videos of 12 frames at 40x48, as JPEG folders and MP4 files."""
    root = tmp_path_factory.mktemp("motion")
    return make_action_dataset(str(root), n_classes=4, videos_per_class=3, n_frames=12, size=(40, 48), fmt="both", seed=3)
