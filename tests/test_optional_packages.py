"""A flag whose optional package is missing is one line naming the extra that installs it.

The package is made missing as Python sees a missing one: ``sys.modules[name] = None`` makes
``import name`` raise ImportError and ``importlib.util.find_spec(name)`` return None.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from resnet3d import cli

CASES = [
    (["main", "--root_path", "r", "--video_path", "h5", "--annotation_path", "a.json", "--file_type", "hdf5"],
     "h5py", "--file_type hdf5", "hdf5"),
    (["train", "--video-path", "h5", "--annotation-path", "a.json", "--file-type", "hdf5"],
     "h5py", "--file_type hdf5", "hdf5"),
    (["test", "--weights", "m.pth", "--video-path", "h5", "--annotation-path", "a.json", "--file-type", "hdf5"],
     "h5py", "--file_type hdf5", "hdf5"),
    (["prepare", "frames", "videos", "frames", "--hdf5"], "h5py", "prepare frames --hdf5", "hdf5"),
    (["main", "--root_path", "r", "--video_path", "jpg", "--annotation_path", "a.json", "--tensorboard"],
     "tensorboard", "--tensorboard", "tensorboard"),
    (["train", "--video-path", "jpg", "--annotation-path", "a.json", "--tensorboard"],
     "tensorboard", "--tensorboard", "tensorboard"),
]


@pytest.mark.parametrize("argv, package, flag, extra", CASES, ids=lambda value: value[0] if isinstance(value, list) else None)
def test_a_missing_optional_package_is_one_line_naming_the_extra(argv, package, flag, extra, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing is read or written: the check comes before the command runs
    monkeypatch.setitem(sys.modules, package, None)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"resnet3d {argv[0]}: error: {flag} needs {package}, which is not installed: "
                            f'pip install "resnet3d[{extra}]"\n')
    assert list(tmp_path.iterdir()) == []


def test_the_same_flags_without_the_package_present_are_not_refused(monkeypatch):
    """The check looks at the flag's value: jpg frames need no h5py, and a test's --format (of the
    results file) is not prepare's --format."""
    monkeypatch.setitem(sys.modules, "h5py", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for argv in (["main", "--file_type", "jpg"], ["train", "--no-tensorboard"], ["prepare", "frames", "v", "f"],
                 ["test", "--weights", "m.pth", "--video-path", "v", "--annotation-path", "a", "--format", "seed"]):
        args = cli.build_parser(argv[0]).parse_known_args(argv[1:])[0]
        assert cli.missing_optional_package(argv[0], args) is None, argv


def test_the_check_comes_before_torch_is_imported():
    probe = (
        "import sys\n"
        "sys.modules['h5py'] = None\n"
        "from resnet3d.cli import main\n"
        "status = main(['main', '--root_path', 'r', '--video_path', 'v', '--annotation_path', 'a', '--file_type', 'hdf5'])\n"
        "print(status, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and 'pip install "resnet3d[hdf5]"' in done.stderr, done.stderr


def test_hdf5_set_by_a_config_file_is_the_same_one_line(monkeypatch, capsys, tmp_path):
    """The flags' check cannot see a config file's file_type: the data set's reading says it, once,
    before any video (recognition listed every video as unreadable and exited 0)."""
    from resnet3d.data import DataConfig
    from resnet3d.data.dataset import resolve_videos
    from resnet3d.errors import UserError

    monkeypatch.setitem(sys.modules, "h5py", None)
    (tmp_path / "h5").mkdir()
    config = DataConfig(video_path=str(tmp_path / "h5"), annotation_path=str(tmp_path / "a.json"), file_type="hdf5")
    with pytest.raises(UserError, match=r'^file_type hdf5 needs h5py, which is not installed: pip install "resnet3d\[hdf5\]"$'):
        resolve_videos(config, "validation")
