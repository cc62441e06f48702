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
