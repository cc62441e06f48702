"""--tensorboard mirrors the logs: every curve carries its own numbers (the successor's
TensorBoard 'lr' curve was really the accuracy)."""
import pytest

from resnet3d.engine.logs import read_log
from engine_helpers import TINY, data_args, resnet3d

pytest.importorskip("tensorboard")


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_curves_equal_the_log_files(motion_data):
    resnet3d("main", *data_args(motion_data), "--result_path", "tb", *TINY, "--batch_size", "8",
             "--n_epochs", "2", "--max-steps-per-epoch", "2", "--learning_rate", "0.02", "--tensorboard", "--no_cuda")
    results = motion_data / "tb"
    scalars = _scalars(results / "tensorboard")
    train, val = read_log(results / "train.log"), read_log(results / "val.log")
    for tag, rows, column in [("train/loss", train, "loss"), ("train/acc", train, "acc"), ("train/lr", train, "lr"),
                              ("val/loss", val, "loss"), ("val/acc", val, "acc")]:
        assert [step for step, _ in scalars[tag]] == [int(r["epoch"]) for r in rows], tag
        assert [value for _, value in scalars[tag]] == pytest.approx([float(r[column]) for r in rows], rel=1e-5), tag
    assert [value for _, value in scalars["train/lr"]] == pytest.approx([0.02, 0.02])
    # --overwrite starts over: the earlier run's curves went on showing beside the new run's
    resnet3d("main", *data_args(motion_data), "--result_path", "tb", *TINY, "--batch_size", "8",
             "--n_epochs", "1", "--max-steps-per-epoch", "2", "--learning_rate", "0.05", "--tensorboard", "--no_cuda",
             "--overwrite")
    again = _scalars(results / "tensorboard")
    assert [value for _, value in again["train/lr"]] == pytest.approx([0.05])
