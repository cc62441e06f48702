"""``--video-copies``: long benchmark runs from few generated videos, each listed N times.

With 144 videos and batches of 64 an epoch holds two batches and a 15-worker loader never fills
(the first GPU session measured its start-up as 189 clips/s); the copies make the epochs long.
"""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from bench_helpers import bench_test_lines

from resnet3d.bench.video_copies import with_video_copies
from resnet3d.errors import UserError
from resnet3d.synthetic import make_action_dataset


def test_each_video_of_the_subset_is_listed_n_times_as_a_link_to_its_own_frames(tmp_path):
    info = make_action_dataset(str(tmp_path / "data"), n_classes=2, videos_per_class=2, n_frames=4, size=(16, 20),
                               val_share=0.5)
    with open(info.annotation_path) as handle:
        original = json.load(handle)["database"]
    validation = {key for key, entry in original.items() if entry["subset"] == "validation"}

    jpg, annotation = with_video_copies(info.jpg_path, info.annotation_path, 3, str(tmp_path / "work"),
                                        subset="validation")
    with open(annotation) as handle:
        database = json.load(handle)["database"]
    assert len(database) == 3 * len(validation)
    for name, entry in database.items():
        label = entry["annotations"]["label"]
        original_key = name.split("-", 1)[1] if name.startswith("copy") else name
        assert original_key in validation
        folder = os.path.join(jpg, label, name)
        assert os.path.islink(folder)
        assert sorted(os.listdir(folder)) == sorted(os.listdir(os.path.join(info.jpg_path, label, original_key)))
    # the user's data set is only read
    with open(info.annotation_path) as handle:
        assert json.load(handle)["database"] == original

    with pytest.raises(UserError, match="no labelled 'testing' videos"):
        with_video_copies(info.jpg_path, info.annotation_path, 2, str(tmp_path / "other"), subset="testing")


def test_entries_that_are_not_labelled_objects_are_skipped_not_a_traceback(tmp_path):
    annotation = tmp_path / "odd.json"
    annotation.write_text(json.dumps({"labels": ["a"], "database": {
        "v1": {"subset": "training", "annotations": {"label": "a"}}, "v2": "not an entry", "v3": None}}))
    _, copied = with_video_copies(str(tmp_path / "jpg"), str(annotation), 2, str(tmp_path / "work"))
    with open(copied) as handle:
        assert sorted(json.load(handle)["database"]) == ["copy1-v1", "v1"]


@pytest.mark.slow
def test_bench_test_recognises_every_copy(tmp_path, capsys, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def videos(*extra):
        lines = bench_test_lines(tmp_path / "data", capsys, "--no-warm-up", *extra)
        assert {line["videos"] for line in lines} == {lines[0]["videos"]}
        return lines[0]["videos"]

    assert videos("--video-copies", "3") == 3 * videos()
    assert list(scratch.iterdir()) == []  # the copies' links went with the run


def test_copies_need_the_kinetics_layout(tmp_path):
    """Both benches refuse other layouts through the one check in with_video_copies."""
    with pytest.raises(UserError, match="needs a data set in the kinetics layout .* not --dataset ucf101"):
        with_video_copies(str(tmp_path / "jpg"), str(tmp_path / "none.json"), 2, str(tmp_path / "work"),
                          dataset="ucf101")
    assert not (tmp_path / "work").exists()
