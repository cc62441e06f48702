"""An annotation whose subset names select no video stops with one line, before any epoch.

Before, "train"/"val" subsets trained epochs of zero clips (loss 0.0000, exit status 0) and a
missing validation subset saved model_best.pth at accuracy 0.
"""
import json

from engine_helpers import TINY
from resnet3d.cli import main


def _renamed(motion_data, tmp_path, names):
    data = json.loads((motion_data / "data" / "annotation.json").read_text())
    for entry in data["database"].values():
        entry["subset"] = names.get(entry["subset"], entry["subset"])
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(data))
    return path


def _train(motion_data, annotation, result_path, *extra):
    return main(["main", "--video_path", str(motion_data / "data" / "jpg"), "--annotation_path", str(annotation),
                 "--dataset", "kinetics", "--result_path", str(result_path), "--n_epochs", "1", "--batch_size", "4",
                 "--no_cuda", *TINY, *extra])


def test_short_subset_names_in_the_file_are_the_shared_formats(motion_data, tmp_path, capsys):
    """docs/data.md promised that "train"/"val" in the file were accepted; they selected no
    video. Other names ("valid") still fail, naming what the file holds (the next test)."""
    annotation = _renamed(motion_data, tmp_path, {"training": "train", "validation": "val"})
    assert _train(motion_data, annotation, tmp_path / "run", "--max_steps_per_epoch", "1") == 0
    assert list((tmp_path / "run").glob("model_*.pth"))


def test_no_validation_subset_names_no_val(motion_data, tmp_path, capsys):
    annotation = _renamed(motion_data, tmp_path, {"validation": "valid"})
    assert _train(motion_data, annotation, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "no validation videos" in err and "valid 20" in err and "--no_val" in err
    assert not (tmp_path / "run" / "model_best.pth").exists()


def test_recognition_of_an_absent_subset_is_an_error(motion_data, tmp_path, capsys):
    """The motion set has no testing entries: `main --test_video --test_subset test` says so
    instead of writing an empty results file."""
    run = tmp_path / "run"
    assert _train(motion_data, motion_data / "data" / "annotation.json", run, "--no_val",
                  "--max_steps_per_epoch", "1") == 0
    capsys.readouterr()
    status = main(["main", "--video_path", str(motion_data / "data" / "jpg"),
                   "--annotation_path", str(motion_data / "data" / "annotation.json"), "--dataset", "kinetics",
                   "--result_path", str(run), "--resume_path", str(run / "model_1.pth"), "--no_train", "--no_val",
                   "--test_video", "--test_subset", "test", "--n_threads", "0", "--no_cuda"])
    assert status == 2
    err = capsys.readouterr().err
    assert "no testing videos" in err and "training 60" in err and "--test_subset" in err
    assert not (run / "test_video.json").exists()
