"""The engine tests' generated data set (helpers live in engine_helpers.py)."""
import pytest

from resnet3d.synthetic import make_action_dataset


@pytest.fixture(scope="module")
def motion_data(tmp_path_factory):
    """Moving right vs moving left, 40 videos each (60 training, 20 validation) of 8 frames at
    32x32, as JPEG folders in the Kinetics layout; ``root`` is the --root_path. (Four classes
    need several times more videos and epochs before validation beats chance on a CPU.)"""
    root = tmp_path_factory.mktemp("motion")
    info = make_action_dataset(str(root / "data"), n_classes=2, videos_per_class=40, n_frames=8, size=(32, 32))
    assert info.subsets == {"training": 60, "validation": 20}
    return root
