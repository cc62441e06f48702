"""``bench test --decode-only``: both sides' recognition decoding per CPU second, no model."""
from __future__ import annotations

import json

from resnet3d.cli import main


def test_both_sides_read_the_same_windows_and_report_frames_per_core(tmp_path, capsys):
    status = main(["bench", "test", "--synthetic-dir", str(tmp_path / "data"), "--videos", "8", "--frames", "20",
                   "--height", "48", "--width", "64", "--sample_size", "32", "--sample_duration", "4", "--decode-only"])
    assert status == 0
    baseline, ours = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert baseline["what"] == ours["what"] == "test_decode"
    assert baseline["baseline"] is True and ours["baseline"] is False
    # 20 frames, the seed's windows of 4 (starts 1, 5, 9, 13: a start stays <= n - 4), two passes
    assert baseline["views"] == ours["views"] == 2 * 4 * ours["videos"] and ours["videos"] >= 8
    assert ours["frames"] == 4 * ours["views"]
    for record in (baseline, ours):
        assert record["cpu_seconds"] > 0 and record["frames_per_s_per_core"] > 0
    assert ours["speedup_per_core"] == round(ours["frames_per_s_per_core"] / baseline["frames_per_s_per_core"], 2)


def test_a_subset_without_videos_is_one_line_not_a_traceback(tmp_path, capsys):
    status = main(["bench", "test", "--synthetic-dir", str(tmp_path / "data"), "--videos", "8", "--frames", "8",
                   "--height", "32", "--width", "40", "--sample_size", "32", "--sample_duration", "4",
                   "--subset", "testing", "--decode-only"])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert "no testing videos" in captured.err and "--subset" in captured.err


def _synthetic(tmp_path):
    from resnet3d.synthetic import make_action_dataset

    make_action_dataset(str(tmp_path / "data"), n_classes=2, videos_per_class=4, n_frames=20, size=(32, 40))
    return tmp_path / "data"


def test_both_sides_read_an_annotations_segment_not_frame_1_on(tmp_path, capsys):
    """The baseline took every video to start at frame 1: with segments [9, 17) it made 4
    windows per video against our 2, and still printed a speedup."""
    root = _synthetic(tmp_path)
    annotation = json.loads((root / "annotation.json").read_text())
    for entry in annotation["database"].values():
        entry["annotations"]["segment"] = [9, 17]
    (root / "segmented.json").write_text(json.dumps(annotation))
    assert main(["bench", "test", "--video_path", str(root / "jpg"), "--annotation_path", str(root / "segmented.json"),
                 "--subset", "training", "--sample_size", "32", "--sample_duration", "4", "--decode-only"]) == 0
    baseline, ours = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    # frames 9-16: the seed's rule (a start <= n - d) gives one window, 9-12; two passes
    assert baseline["views"] == ours["views"] == 2 * 1 * ours["videos"]


def test_the_baselines_warm_up_meets_every_batch_shape(tmp_path):
    """The baseline's batch is one video's windows: it warmed up on one video, so on real data
    of many lengths its timed pass paid cuDNN's autotuning for every other window count."""
    from resnet3d.bench.test import _one_per_batch_shape
    from resnet3d.data import DataConfig
    from resnet3d.data.dataset import resolve_videos

    root = _synthetic(tmp_path)
    annotation = json.loads((root / "annotation.json").read_text())
    training = [key for key, entry in annotation["database"].items() if entry["subset"] == "training"]
    annotation["database"][training[2]]["annotations"]["segment"] = [1, 11]  # 10 frames: 2 windows, not 4
    (root / "lengths.json").write_text(json.dumps(annotation))
    data = DataConfig(dataset="kinetics", video_path=str(root / "jpg"), annotation_path=str(root / "lengths.json"),
                      sample_size=32, sample_duration=4)
    videos, _, _ = resolve_videos(data, "training")
    warm = _one_per_batch_shape(videos, data)
    assert [v.key for v in warm] == [videos[0].key, training[2]]


def test_a_generated_data_set_is_removed_after_the_run_and_a_kept_one_is_named_when_reused(
        tmp_path, capsys, monkeypatch):
    """Without --synthetic-dir each run left its generated set (about 100 MB) in /tmp; with it,
    a later run silently reused a set made with other --videos/--frames."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    small = ["--videos", "8", "--frames", "8", "--height", "32", "--width", "40", "--sample_size", "32",
             "--sample_duration", "4", "--decode-only"]
    assert main(["bench", "test", *small]) == 0
    assert list(scratch.iterdir()) == []
    kept = tmp_path / "kept"
    assert main(["bench", "test", "--synthetic-dir", str(kept), *small]) == 0
    assert "reusing" not in capsys.readouterr().err
    assert main(["bench", "test", "--synthetic-dir", str(kept), *small]) == 0
    assert f"reusing the data set in {kept}" in capsys.readouterr().err
    assert main(["bench", "test", "--synthetic-dir", str(kept), *small, "--batch_size", "0"]) == 2
    assert "--batch_size must be 1 or more" in capsys.readouterr().err
