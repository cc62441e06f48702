"""The epoch line counts the stand-in frames of training and of validation."""
import json

import pytest

from resnet3d.synthetic import make_action_dataset

from engine_helpers import TINY, data_args, resnet3d


@pytest.mark.slow
def test_validation_bad_frames_are_counted_in_the_epoch_line(tmp_path):
    make_action_dataset(str(tmp_path / "data"), n_classes=2, videos_per_class=4, n_frames=8, size=(32, 32))
    database = json.loads((tmp_path / "data" / "annotation.json").read_text())["database"]
    key, entry = next((k, v) for k, v in database.items() if v["subset"] == "validation")
    frame = tmp_path / "data" / "jpg" / entry["annotations"]["label"] / key / "image_00004.jpg"
    frame.write_bytes(b"\xff\xd8 not a JPEG")
    done = resnet3d("main", *data_args(tmp_path), "--result_path", "results", *TINY, "--batch_size", "4",
                    "--n_epochs", "1", "--no_cuda", "--n_val_samples", "3")
    epoch_line = next(line for line in done.stdout.splitlines() if line.startswith("epoch 1/1"))
    # three validation windows of the 8-frame video each hold the corrupt frame; training has none
    assert epoch_line.endswith("bad frames 3, replaced videos 0 (see the log above)"), epoch_line
    assert done.stderr.count("image_00004.jpg") == 1, done.stderr
    again = resnet3d("main", *data_args(tmp_path), "--result_path", "results", *TINY, "--no_train",
                     "--resume_path", "results/model_1.pth", "--no_cuda")
    assert "bad frames 3" in next(line for line in again.stdout.splitlines() if line.startswith("validation"))


@pytest.mark.slow
def test_an_unreadable_validation_video_counts_once_not_once_per_clip(tmp_path):
    """Each of its --n_val_samples clips is a stand-in: the epoch line said 'replaced videos 3'
    for one video. Two loader workers read its clips."""
    make_action_dataset(str(tmp_path / "data"), n_classes=2, videos_per_class=4, n_frames=8, size=(32, 32))
    database = json.loads((tmp_path / "data" / "annotation.json").read_text())["database"]
    validation = [(k, v) for k, v in database.items() if v["subset"] == "validation"]
    key, entry = validation[0]
    for frame in (tmp_path / "data" / "jpg" / entry["annotations"]["label"] / key).glob("image_*.jpg"):
        frame.write_bytes(b"\xff\xd8 not a JPEG")
    flags = [*data_args(tmp_path), "--result_path", "results", *TINY, "--n_threads", "2", "--batch_size", "4",
             "--no_cuda", "--n_val_samples", "3"]
    done = resnet3d("main", *flags, "--n_epochs", "1")
    epoch_line = next(line for line in done.stdout.splitlines() if line.startswith("epoch 1/1"))
    assert epoch_line.endswith("bad frames 0, replaced videos 1 (see the log above)"), epoch_line
    assert done.stderr.count(f"{key}: no readable frame") == 1, done.stderr
    again = resnet3d("main", *flags, "--no_train", "--resume_path", "results/model_1.pth")
    line = next(line for line in again.stdout.splitlines() if line.startswith("validation"))
    readable_clips = 3 * (len(validation) - 1)  # the unreadable video is left out of the accuracies
    assert f"({readable_clips} clips)  bad frames 0, replaced videos 1" in line, line
    metrics = json.loads((tmp_path / "results" / "val_metrics.json").read_text())
    assert (metrics["count"], metrics["bad_videos"], metrics["stand_in_clips"]) == (readable_clips, 1, 3)
