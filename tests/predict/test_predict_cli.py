"""The originals' command lines through ``resnet3d main``, and ``resnet3d bench test``."""
from __future__ import annotations

import json

import pytest

from predict_helpers import DURATION, SIZE

from resnet3d.cli import main
from resnet3d.engine.results import youtube_id


def _common(motion, result_path):
    return ["--video_path", motion.jpg_path, "--annotation_path", motion.annotation_path,
            "--result_path", str(result_path), "--no_train", "--no_val", "--sample_size", str(SIZE),
            "--sample_duration", str(DURATION), "--n_threads", "0", "--batch_size", "4", "--no_cuda"]


@pytest.mark.slow
def test_seed_test_video_command_line(motion, our_checkpoint, tmp_path):
    status = main(["main", *_common(motion, tmp_path), "--test_video", "--test_subset", "val",
                   "--resume_path", str(our_checkpoint)])
    assert status == 0
    doc = json.loads((tmp_path / "val_video.json").read_text())
    assert list(doc) == ["version", "results", "external_data"]
    val = [v for v in motion.videos if v["subset"] == "validation"]
    assert set(doc["results"]) == {youtube_id(v["key"]) for v in val}
    assert all(len(entries) == 4 for entries in doc["results"].values())  # top 10 of 4 classes


@pytest.mark.slow
def test_successor_inference_command_line(motion, successor_checkpoint, tmp_path):
    status = main(["main", *_common(motion, tmp_path), "--inference", "--inference_subset", "val",
                   "--inference_stride", "8", "--inference_no_average", "--output_topk", "2", "--n_classes", "4",
                   "--pretrain_path", str(successor_checkpoint)])
    assert status == 0
    doc = json.loads((tmp_path / "val.json").read_text())
    assert list(doc) == ["results"]
    for windows in doc["results"].values():
        assert [w["segment"] for w in windows] == [[1, 9], [9, 17], [17, 21]]
        assert all(len(w["result"]) == 2 for w in windows)


@pytest.mark.slow
def test_bench_test_prints_both_sides(tmp_path, capsys):
    status = main(["bench", "test", "--synthetic-dir", str(tmp_path / "data"), "--videos", "4", "--frames", "12",
                   "--height", "32", "--width", "40", "--model_depth", "10", "--resnet_widen_factor", "0.5",
                   "--n_classes", "12", "--sample_size", "32",
                   "--sample_duration", "8", "--n_threads", "0", "--batch_size", "8", "--device", "cpu"])
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["baseline"] for line in lines] == [True, False]
    ours = lines[1]
    assert ours["what"] == "test" and ours["videos"] == lines[0]["videos"] >= 4
    assert ours["speedup"] > 0 and 0.0 <= ours["top1_agreement"] <= 1.0
    assert ours["widen_factor"] == 0.5  # more outputs (12) than the data set's 8 classes: fine for a speed test


@pytest.mark.parametrize("flags, fix", [
    (["--n-classes", "3"], "fix: --n-classes 4, or leave it out: the class count is read from the weights"),
    (["--model-name", "preresnet", "--resnet-shortcut", "A"], "fix: --model-name resnet --resnet-shortcut B"),
])
def test_a_mismatch_in_test_names_tests_own_flags(motion, successor_checkpoint, tmp_path, capsys, flags, fix):
    """`test` has no --n_pretrain_classes and spells the family --model-name: the fix says what it takes."""
    status = main(["test", "--weights", str(successor_checkpoint), "--video-path", motion.jpg_path,
                   "--annotation-path", motion.annotation_path, "--output", str(tmp_path / "out.json"),
                   "--n-threads", "0", "--quiet", *flags])
    err = capsys.readouterr().err
    assert status == 2 and fix in err, err
    assert "n_pretrain_classes" not in err


def test_ctrl_c_in_test_says_how_to_continue(motion, our_checkpoint, tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first video: status 130, the video kept, and one line naming --resume,
    which then scores the rest."""
    from resnet3d.engine import share_scoring

    real = share_scoring.result_entry
    calls = []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(share_scoring, "result_entry", interrupted_at_the_second)
    out = tmp_path / "val.json"
    argv = ["test", "--weights", str(our_checkpoint), "--video-path", motion.jpg_path, "--annotation-path",
            motion.annotation_path, "--output", str(out), "--n-threads", "0", "--quiet", "--subset", "val",
            "--batch-size", "64"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"resnet3d test: interrupted: 1 of 4 videos are saved in {out}; continue with --resume" in err, err
    assert len(json.loads(out.read_text())["results"]) == 1
    monkeypatch.setattr(share_scoring, "result_entry", real)
    assert main([*argv, "--resume"]) == 0
    assert len(json.loads(out.read_text())["results"]) == 4


@pytest.mark.parametrize("flags, words", [
    (["--clips", "3", "--stride", "4"], "--stride 4 would not be used: --clips 3 spreads its windows evenly"),
    (["--format", "seed", "--stride", "4"], "--stride 4 would not be used: --format seed takes the seed's windows"),
    (["--crops", "3", "--crop", "nocrop"], "--crops 3 and nocrop (--crop / --inference_crop nocrop) exclude"),
    (["--batch-size", "0"], "--batch-size must be >= 1 (got 0)"),  # (ran in batches of one view)
    (["--clips", "-2"], "--clips must be >= 0 (got -2); 0, the default, takes sliding windows"),
])
def test_test_refuses_view_flags_it_would_ignore(motion, our_checkpoint, tmp_path, capsys, flags, words):
    """A --stride that the chosen windows never use was dropped without a word."""
    status = main(["test", "--weights", str(our_checkpoint), "--video-path", motion.jpg_path,
                   "--annotation-path", motion.annotation_path, "--result-path", str(tmp_path),
                   "--n-threads", "0", "--quiet", "--device", "cpu", *flags])
    err = capsys.readouterr().err
    assert status == 2 and words in err, err
    assert not list(tmp_path.glob("*.json"))
