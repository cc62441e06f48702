"""The CUDA tests' generated data set and markers (helpers live in gpu_helpers.py)."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "compile: torch.compile runs (tens of seconds each; "
                                       "deselect with -m 'not compile')")


@pytest.fixture(scope="session")
def gpu_motion(tmp_path_factory):
    """4 motion classes x 4 videos of 16 frames at 32x40 as JPEG folders: 8 training videos (two
    steps of 4 clips per epoch) and 8 validation videos (recognised with 3 windows each)."""
    from resnet3d.synthetic import make_action_dataset

    root = tmp_path_factory.mktemp("gpu-motion")
    info = make_action_dataset(str(root), n_classes=4, videos_per_class=4, n_frames=16, size=(32, 40),
                               val_share=0.5, seed=11)
    assert info.subsets == {"training": 8, "validation": 8}
    return info
