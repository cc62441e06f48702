"""What one of our checkpoints carries, used by every command that tests it.

One real training run (``resnet3d train``, MP4 files of a "folder" data set in a flat
``{key}`` layout, every 2nd frame, 4-frame clips of 32 pixels, ``--mean/--std`` as
``resnet3d prepare stats`` prints them, multi-view recognition from the config file, the exact
decode mode) makes a checkpoint; ``resnet3d test``, ``classify`` and ``main`` then take from it what their flags
leave open.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from resnet3d.cli import main
from resnet3d.prepare.stats import StatsResult
from resnet3d.synthetic import make_action_dataset

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
# the exact line `resnet3d prepare stats` prints, as a user pastes it
STATS_FLAGS = StatsResult(mean=MEAN, std=STD, frames=1, videos=1, pixels=1).flags().split(":", 1)[1].split()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 classes x 2 MP4s of 20 frames; a ResNet-10 trained one step on them; its checkpoint."""
    root = tmp_path_factory.mktemp("ckpt-settings")
    info = make_action_dataset(str(root / "data"), n_classes=4, videos_per_class=2, n_frames=20, size=(32, 48),
                               fmt="mp4", layout="folder", seed=11)
    flat = root / "flat"
    flat.mkdir()
    for video in info.videos:
        os.link(Path(info.video_path) / f"{video['rel_path']}.mp4", flat / f"{video['key']}.mp4")
    config = root / "run.json"
    config.write_text(json.dumps({
        "data": {"dataset": "folder", "folder_layout": "{key}", "file_type": "video", "video_path": str(flat),
                 "annotation_path": info.annotation_path, "sample_size": 32, "sample_duration": 4,
                 "sample_t_stride": 2},
        "inference": {"subset": "val", "n_clips": 2, "n_crops": 3, "average": False},
    }))
    run = root / "run"
    status = main(["train", "--config", str(config), *STATS_FLAGS, "--model", "resnet", "--model-depth", "10",
                   "--n-classes", "4", "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "2", "--lr", "1e-4",
                   "--no-val", "--workers", "0", "--device", "cpu", "--no-curves", "--result-path", str(run),
                   "--decode-tolerance", "1.0", "--no-fast-decode"])
    assert status == 0
    return {"info": info, "flat": flat, "run": run, "checkpoint": run / "model_1.pth", "root": root}


def test_train_mean_std_flags_become_the_checkpoints_input_norm(trained):
    stored = torch.load(trained["checkpoint"], map_location="cpu", weights_only=True)
    assert stored["input_norm"] == {"mean": list(MEAN), "std": list(STD), "value_scale": 1.0}
    assert stored["config"]["finetune"]["input_norm_from_checkpoint"] is False
    assert stored["class_names"] == trained["info"].class_names


def test_train_config_multi_view_settings_reach_the_recognition_step(trained):
    output = trained["run"] / "val.json"
    results = json.loads(output.read_text())["results"]
    assert len(results) == 4
    assert all(len(windows) == 2 for windows in results.values())  # n_clips 2, not sliding windows
    state = json.loads((trained["run"] / ".val.json.state.json").read_text())
    assert (state["scheme"], state["n_clips"], state["crop"]) == ("even", 2, "three")


def test_test_takes_data_settings_from_our_checkpoint(trained, tmp_path, capsys):
    """No --dataset/--file-type/--sample-*: the flat folder layout, MP4s and every 2nd frame
    come from the checkpoint (defaults would look for JPEG folders under <label>/<key>)."""
    status = main(["test", "--weights", str(trained["checkpoint"]), "--video-path", str(trained["flat"]),
                   "--annotation-path", trained["info"].annotation_path, "--result-path", str(tmp_path),
                   "--no-average", "--n-threads", "0", "--quiet", "--subset", "val"])
    assert status == 0
    assert "from the checkpoint: dataset folder, folder_layout {key}, file_type video" in capsys.readouterr().err
    state = json.loads((tmp_path / ".val.json.state.json").read_text())
    assert (state["file_type"], state["sample_size"], state["sample_duration"], state["sample_t_stride"]) == (
        "video", 32, 4, 2)
    assert state["input_norm"] == {"mean": list(MEAN), "std": list(STD), "value_scale": 1.0}
    assert (state["decode_tolerance"], state["fast_decode"]) == (1.0, False)  # the training run's decode mode
    for windows in json.loads((tmp_path / "val.json").read_text())["results"].values():
        # 10 kept frames (1, 3, ..., 19), windows of 4 every 4 kept frames, the last loop-padded
        assert [w["segment"] for w in windows] == [[1, 8], [9, 16], [17, 20]]

    # explicit flags win over the checkpoint
    status = main(["test", "--weights", str(trained["checkpoint"]), "--video-path", str(trained["flat"]),
                   "--annotation-path", trained["info"].annotation_path, "--output", str(tmp_path / "t1.json"),
                   "--sample-t-stride", "1", "--sample-duration", "8", "--no-average", "--n-threads", "0",
                   "--quiet", "--subset", "val", "--decode-tolerance", "0.8", "--fast-decode"])
    assert status == 0
    state = json.loads((tmp_path / ".t1.json.state.json").read_text())
    assert (state["decode_tolerance"], state["fast_decode"]) == (0.8, True)
    for windows in json.loads((tmp_path / "t1.json").read_text())["results"].values():
        assert [w["segment"] for w in windows] == [[1, 9], [9, 17], [17, 21]]
    status = main(["test", "--weights", str(trained["checkpoint"]), "--video-path", str(trained["flat"]),
                   "--annotation-path", trained["info"].annotation_path, "--output", str(tmp_path / "t2.json"),
                   "--file-type", "jpg", "--n-threads", "0", "--quiet", "--subset", "val"])
    assert status == 2  # JPEG frame folders were asked for, and there are none
    assert "none of the 4 validation videos" in capsys.readouterr().err


def test_classify_takes_the_frame_stride_from_our_checkpoint(trained, tmp_path):
    video = next(trained["flat"].glob("*.mp4"))
    out = tmp_path / "labels.json"
    assert main(["classify", str(video), "--model", str(trained["checkpoint"]), "--output", str(out)]) == 0
    clips = json.loads(out.read_text())[0]["clips"]
    # kept frames 1, 3, ..., 19: clips of 4 of them; segments name the video's own frames
    assert [c["segment"] for c in clips] == [[1, 7], [9, 15], [17, 19]]
    assert main(["classify", str(video), "--model", str(trained["checkpoint"]), "--output", str(out), "--overwrite",
                 "--sample-t-stride", "1"]) == 0
    assert [c["segment"] for c in json.loads(out.read_text())[0]["clips"]] == [[1, 4], [5, 8], [9, 12], [13, 16],
                                                                               [17, 20]]


def _reversed_annotation(info, path: Path) -> str:
    document = json.loads(Path(info.annotation_path).read_text())
    document["labels"] = list(reversed(document["labels"]))
    path.write_text(json.dumps(document))
    return str(path)


def _main_test(trained, annotation: str, result_path: Path, *extra: str) -> int:
    info = trained["info"]
    return main(["main", "--video_path", info.video_path, "--annotation_path", annotation, "--dataset", "folder",
                 "--file_type", "video", "--sample_t_stride", "2", "--result_path", str(result_path),
                 "--resume_path", str(trained["checkpoint"]), "--no_train", "--n_threads", "0", "--batch_size", "4",
                 "--no_cuda", *extra])


def test_main_names_results_by_the_checkpoints_classes_whatever_the_annotation_order(trained, tmp_path):
    """The annotation lists the labels in reverse: results still carry the checkpoint's names, the
    clip size is the checkpoint's (no --sample_size/--sample_duration given), and validation
    scores each video against the right output."""
    info = trained["info"]
    reversed_path = _reversed_annotation(info, tmp_path / "reversed.json")
    inference = ["--inference", "--inference_subset", "val", "--inference_stride", "4"]
    assert _main_test(trained, info.annotation_path, tmp_path / "as-trained", *inference) == 0
    assert _main_test(trained, reversed_path, tmp_path / "reversed", *inference) == 0

    def scores(path: Path) -> dict:
        results = json.loads(path.read_text())["results"]
        return {video: {e["label"]: e["score"] for e in entries} for video, entries in results.items()}

    as_trained = scores(tmp_path / "as-trained" / "val.json")
    assert len(as_trained) == 4
    for video, by_label in scores(tmp_path / "reversed" / "val.json").items():
        assert by_label == pytest.approx(as_trained[video], abs=1e-6)
    # the same views as `resnet3d test` (which reads size, duration and names off the checkpoint)
    state = json.loads((tmp_path / "reversed" / ".val.json.state.json").read_text())
    assert (state["sample_size"], state["sample_duration"]) == (32, 4)

    first = json.loads((tmp_path / "as-trained" / "val_metrics.json").read_text())
    second = json.loads((tmp_path / "reversed" / "val_metrics.json").read_text())
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-6)
    assert second["video_acc"] == first["video_acc"]


def test_validation_metrics_and_validation_results_are_two_files(trained, tmp_path):
    """--no_train validation keeps its numbers in val_metrics.json; recognition of the
    validation subset writes validation.json (what `resnet3d test` writes by default): neither
    replaces the other."""
    info = trained["info"]
    assert _main_test(trained, info.annotation_path, tmp_path, "--inference", "--inference_subset", "validation",
                      "--inference_stride", "4") == 0
    assert set(json.loads((tmp_path / "validation.json").read_text())) == {"results"}
    assert {"loss", "acc", "video_acc"} <= set(json.loads((tmp_path / "val_metrics.json").read_text()))
    assert not (tmp_path / "validation.1.json").exists()
    # a second evaluation into the folder keeps the first one's numbers and record (they were replaced)
    first = (tmp_path / "val_metrics.json").read_text()
    assert _main_test(trained, info.annotation_path, tmp_path) == 0
    assert (tmp_path / "val_metrics.1.json").read_text() == first and (tmp_path / "opts_eval.1.json").is_file()


def test_explicit_clip_size_flags_are_kept_by_main(trained, tmp_path):
    info = trained["info"]
    assert _main_test(trained, info.annotation_path, tmp_path, "--no_val", "--test_video", "--test_subset", "val",
                      "--sample_size", "16", "--sample_duration", "2") == 0
    state = json.loads((tmp_path / ".val_video.json.state.json").read_text())
    assert (state["sample_size"], state["sample_duration"]) == (16, 2)
    opts = json.loads((tmp_path / "opts_eval.json").read_text())
    assert (opts["data"]["sample_size"], opts["data"]["sample_duration"]) == (16, 2)


def test_mean_std_on_test_and_classify(trained, tmp_path, capsys):
    info = trained["info"]
    custom = ["--mean", "0.45", "0.45", "0.45", "--std", "0.225", "0.225", "0.225"]
    status = main(["test", "--weights", str(trained["checkpoint"]), "--video-path", str(trained["flat"]),
                   "--annotation-path", info.annotation_path, "--result-path", str(tmp_path), "--n-threads", "0",
                   "--quiet", "--subset", "val", *custom])
    assert status == 0
    state = json.loads((tmp_path / ".val.json.state.json").read_text())
    assert state["input_norm"] == {"mean": [0.45] * 3, "std": [0.225] * 3, "value_scale": 1.0}

    video = str(next(trained["flat"].glob("*.mp4")))
    outputs = []
    for number, norm in enumerate(([], custom)):
        out = tmp_path / f"c{number}.json"
        assert main(["classify", video, "--model", str(trained["checkpoint"]), "--output", str(out), *norm]) == 0
        outputs.append(json.loads(out.read_text())[0]["clips"][0]["scores"])
    assert outputs[0] != pytest.approx(outputs[1], abs=1e-6)  # the checkpoint's statistics, then the given ones

    capsys.readouterr()
    assert main(["classify", video, "--model", str(trained["checkpoint"]), "--output", str(tmp_path / "x.json"),
                 *custom, "--input-norm", "kinetics"]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["classify", video, "--model", str(trained["checkpoint"]), "--output", str(tmp_path / "x.json"),
                 "--mean", "120", "110", "100", "--std", "58", "57", "57"]) == 2
    assert "0-1 units" in capsys.readouterr().err
