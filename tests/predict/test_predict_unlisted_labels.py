"""Recognition of a set of unlabelled videos whose annotation has no 'labels' list: the class
names come from the weights (our checkpoints record them)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from predict_helpers import DURATION, SIZE

from resnet3d.cli import main
from resnet3d.data.annotations import load_annotation
from resnet3d.errors import UserError


def _unlabelled_test_set(motion, root: Path) -> Path:
    """The motion set's validation videos as a Kinetics test subset (test/<key>), in a JSON with
    no 'labels' list, as a user writes one for their own footage."""
    database = {}
    for video in motion.videos:
        if video["subset"] == "validation":
            shutil.copytree(Path(motion.jpg_path) / str(video["rel_path"]), root / "jpg" / "test" / str(video["key"]))
            database[str(video["key"])] = {"subset": "testing", "annotations": {}}
    path = root / "unlabelled.json"
    path.write_text(json.dumps({"database": database}))
    return path


def test_unlabelled_videos_are_recognised_with_the_weights_class_names(motion, our_checkpoint, tmp_path):
    annotation = _unlabelled_test_set(motion, tmp_path)
    out = tmp_path / "results.json"
    status = main(["test", "--weights", str(our_checkpoint), "--video-path", str(tmp_path / "jpg"),
                   "--annotation-path", str(annotation), "--subset", "testing", "--workers", "0", "--device", "cpu",
                   "--sample-size", str(SIZE), "--sample-duration", str(DURATION), "--output", str(out)])
    assert status == 0
    results = json.loads(out.read_text())["results"]
    assert len(results) == sum(v["subset"] == "validation" for v in motion.videos)
    assert all({entry["label"] for entry in ranked} == set(motion.class_names) for ranked in results.values())


def test_labelled_entries_still_need_the_labels_list(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"database": {"k1": {"subset": "validation", "annotations": {"label": "run"}}}}))
    with pytest.raises(UserError, match=r"has no 'labels' list, and its validation entries have labels \(e\.g\. 'k1': "
                                        r"'run'\): add \"labels\""):
        load_annotation(str(path), "kinetics", "validation")
    assert load_annotation(str(path), "kinetics", "testing").class_names == []
