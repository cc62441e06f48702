import json
import os

import pytest

from resnet3d.fileio import atomic_open, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert os.listdir(target.parent) == ["out.json"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_new_files_get_the_umask_mode_not_the_temporary_files_0600(tmp_path):
    """Results and checkpoints must be readable as a plain open() would make them (a shared
    cluster's group reads them), not mkstemp's owner-only 0600."""
    from resnet3d import fileio
    from resnet3d.fileio import atomic_torch_save

    target = tmp_path / "opts.json"
    atomic_write_json(target, {"a": 1})
    assert _mode(target) == 0o666 & ~fileio._UMASK
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    assert _mode(target) == _mode(tmp_path / "plain.txt")
    atomic_torch_save({"x": 1}, tmp_path / "model_1.pth")
    assert _mode(tmp_path / "model_1.pth") == _mode(tmp_path / "plain.txt")


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "train.log"
    atomic_write_text(target, "old")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_unwritable_targets_are_user_errors_naming_the_target(tmp_path):
    from resnet3d.errors import UserError

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match=r"cannot write .*a_file/out.json: File exists \(a file of that name is in the way of a folder"):
        atomic_write_json(tmp_path / "a_file" / "out.json", {})
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(UserError, match=r"cannot write .*a_folder: Is a directory"):
        atomic_write_text(tmp_path / "a_folder", "x")
    assert sorted(os.listdir(tmp_path)) == ["a_file", "a_folder"] and not os.listdir(tmp_path / "a_folder")


def test_user_json_with_a_byte_order_mark_is_read(tmp_path):
    from resnet3d.fileio import read_user_json

    path = tmp_path / "notepad.json"
    path.write_bytes(b"\xef\xbb\xbf" + '{"labels": ["caf\u00e9"]}'.encode("utf-8"))
    assert read_user_json(path, "annotation") == {"labels": ["caf\u00e9"]}


def test_user_json_with_a_key_twice_names_it(tmp_path, caplog):
    import logging

    from resnet3d.errors import UserError
    from resnet3d.fileio import read_user_json

    path = tmp_path / "twice.json"
    path.write_text('{"a": {"x": 1, "y": 2, "x": 3, "y": 2}, "b": [{"z": 1, "z": 2}]}')
    with pytest.raises(UserError, match=r"results .*twice.json: keys 'x', 'z' appear more than once in one object, "
                                        r"with different values"):
        read_user_json(path, "results")
    path.write_text('{"a": {"x": 1, "x": 1}}')
    with caplog.at_level(logging.WARNING, logger="resnet3d"):
        assert read_user_json(path, "results") == {"a": {"x": 1}}
    assert "key 'x' appears twice or more" in caplog.text


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_FSIZE"), reason="needs a file size limit")
def test_a_checkpoint_that_does_not_fit_names_the_file_and_keeps_the_old_one(tmp_path):
    """torch.save reports a full disk as "[enforce fail at inline_container.cc] unexpected pos";
    a file size limit fails the same write the same way (EFBIG instead of ENOSPC), on real bytes."""
    import resource

    import torch

    from resnet3d.errors import UserError
    from resnet3d.fileio import atomic_torch_save

    target = tmp_path / "model_3.pth"
    atomic_torch_save({"epoch": 2}, target)
    old = target.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(UserError) as raised:
            atomic_torch_save({"weights": torch.zeros(1 << 20)}, target)  # 4 MB
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(target) in str(raised.value) and "File too large" in str(raised.value)
    assert "ulimit -f" in str(raised.value)
    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == ["model_3.pth"]


def test_a_file_where_a_folder_is_wanted_is_said_as_such(tmp_path, capsys):
    """A file given where a command wants its folder was said to "not exist" (prepare
    kinetics-json, n-frames, fps, stats, the split-file converters)."""
    from resnet3d.cli import main
    from resnet3d.errors import UserError
    from resnet3d.fileio import require_folder

    a_file = tmp_path / "train.csv"
    a_file.write_text("label,youtube_id,time_start,time_end,split\n")
    require_folder(tmp_path, "CSV directory")
    with pytest.raises(UserError, match=r"^CSV directory .*train.csv is a file, not a folder; give the folder$"):
        require_folder(a_file, "CSV directory", "give the folder")
    with pytest.raises(UserError, match=r"^frame directory .*nowhere does not exist$"):
        require_folder(tmp_path / "nowhere", "frame directory")
    assert main(["prepare", "kinetics-json", str(a_file), "400", str(tmp_path), "jpg", str(tmp_path / "k.json")]) == 2
    assert f"CSV directory {a_file} is a file, not a folder" in capsys.readouterr().err
    assert main(["prepare", "n-frames", str(a_file)]) == 2
    assert f"frame directory {a_file} is a file, not a folder" in capsys.readouterr().err


def test_an_output_file_named_like_a_folder_is_refused_before_the_work(tmp_path, capsys):
    """evaluate --confusion FOLDER --overwrite printed its report, then failed to write the PNG
    ("Is a directory"); without --overwrite it said to pass --overwrite, which could not help."""
    from resnet3d.errors import UserError
    from resnet3d.fileio import refuse_existing

    for overwrite in (False, True):
        with pytest.raises(UserError, match=r"^--confusion .* is a folder: give a file's name"):
            refuse_existing(tmp_path, "--confusion", overwrite)
    refuse_existing(tmp_path / "confusion.png", "--confusion", False)  # (a new file: fine)
