"""Annotation parsing for every flavour, on hand-made files; video path rules; error messages."""
from __future__ import annotations

import json
import logging

import pytest

from resnet3d.data import DataConfig, build_dataset
from resnet3d.data.annotations import activitynet_classes, load_annotation, seconds_to_frames
from resnet3d.errors import UserError

from data_helpers import ramp_frames, write_frames, write_json

KINETICS_SEED = {
    "labels": ["abseiling", "air drumming"],
    "database": {
        "aaaaaaaaaaa_000001_000011": {"subset": "training", "annotations": {"label": "abseiling"}},
        "bbbbbbbbbbb_000002_000012": {"subset": "validation", "annotations": {"label": "air drumming"}},
        "ccccccccccc_000003_000013": {"subset": "testing", "annotations": {}},
    },
}

TAXONOMY = [
    {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
    {"nodeId": 1, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
    {"nodeId": 2, "nodeName": "Long jump", "parentId": 1, "parentName": "Sports"},
    {"nodeId": 3, "nodeName": "Cooking", "parentId": 0, "parentName": "Root"},
    {"nodeId": 4, "nodeName": "Making tea", "parentId": 3, "parentName": "Cooking"},
    {"nodeId": 5, "nodeName": "Shot put", "parentId": 1, "parentName": "Sports"},
]


def test_kinetics_seed_flavour_paths_and_subsets(tmp_path):
    path = write_json(tmp_path / "kinetics.json", KINETICS_SEED)
    train = load_annotation(path, "kinetics", "training")
    assert train.class_names == ["abseiling", "air drumming"]
    assert [(e.key, e.label, e.rel_path, e.frames) for e in train.entries] == [
        ("aaaaaaaaaaa_000001_000011", "abseiling", "abseiling/aaaaaaaaaaa_000001_000011", None)
    ]
    test = load_annotation(path, "kinetics", "testing")
    assert test.entries[0].rel_path == "test/ccccccccccc_000003_000013"
    assert test.entries[0].label is None


def test_kinetics_successor_segments_and_hdf5_shift(tmp_path):
    data = {
        "labels": ["a"],
        "database": {
            "jpg": {"subset": "training", "annotations": {"label": "a", "segment": [1, 41]}},
            "hdf5": {"subset": "training", "annotations": {"label": "a", "segment": [0, 40]}},
            "empty": {"subset": "training", "annotations": {"label": "a", "segment": [1, 1]}},
        },
    }
    ann = load_annotation(write_json(tmp_path / "k.json", data), "kinetics", "training")
    assert {e.key: e.frames for e in ann.entries} == {"jpg": (1, 41), "hdf5": (1, 41)}
    assert ann.n_empty == 1


def test_errors_name_file_and_key(tmp_path):
    no_subset = write_json(tmp_path / "kinetics.json", {"labels": ["a"], "database": {"abc_000001_000011": {"annotations": {"label": "a"}}}})
    with pytest.raises(UserError, match=r"kinetics\.json: database entry 'abc_000001_000011' has no 'subset'"):
        load_annotation(no_subset, "kinetics", "training")
    bad_label = write_json(tmp_path / "b.json", {"labels": ["a"], "database": {"k": {"subset": "training", "annotations": {"label": "zz"}}}})
    with pytest.raises(UserError, match=r"b\.json: database entry 'k' has label 'zz'"):
        load_annotation(bad_label, "kinetics", "training")
    with pytest.raises(UserError, match=r"--annotation_path.*missing.json: no such file"):
        load_annotation(str(tmp_path / "missing.json"), "kinetics", "training")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_annotation(str(tmp_path / "broken.json"), "kinetics", "training")
    # 'labels' as a string was read as one class per character, then every label was "not in 'labels'"
    a_string = write_json(tmp_path / "s.json", {"labels": "ab", "database": {"k": {"subset": "training",
                                                                                 "annotations": {"label": "ab"}}}})
    with pytest.raises(UserError, match=r"s\.json: 'labels' is str 'ab'; expected a list of the class names"):
        load_annotation(a_string, "kinetics", "training")


def test_activitynet_leaves_segments_and_fps(tmp_path):
    assert activitynet_classes(TAXONOMY, "x") == ["Long jump", "Making tea", "Shot put"]
    data = {
        "taxonomy": TAXONOMY,
        "database": {
            "vid1": {"subset": "training", "duration": 10.0, "fps": 30.0, "annotations": [
                {"segment": [0.0, 2.0], "label": "Long jump"},
                {"segment": [5.01, 7.5], "label": "Shot put"},
            ]},
            "vid2": {"subset": "testing", "duration": 5.0, "annotations": []},
        },
    }
    path = write_json(tmp_path / "activity_net.v1-3.min.json", data)
    ann = load_annotation(path, "activitynet", "training")
    assert [(e.rel_path, e.label, e.seconds, e.fps) for e in ann.entries] == [
        ("v_vid1", "Long jump", (0.0, 2.0), 30.0),
        ("v_vid1", "Shot put", (5.01, 7.5), 30.0),
    ]
    test = load_annotation(path, "activitynet", "testing")
    assert test.entries[0].rel_path == "v_vid2" and test.entries[0].seconds is None
    # the seed's default --dataset was activitynet: its users leave the flag out, and main's
    # default is the successor's kinetics
    with pytest.raises(UserError, match=r"activity_net\.v1-3\.min\.json is an ActivityNet file .* read as "
                                        r"--dataset kinetics: pass --dataset activitynet"):
        load_annotation(path, "kinetics", "training")


def test_seconds_to_frames_rule():
    assert seconds_to_frames(0.0, 2.0, 30.0) == (1, 60)  # begin at least 1
    assert seconds_to_frames(5.01, 7.5, 30.0) == (151, 225)  # ceil(150.3), ceil(225)
    assert seconds_to_frames(1.0, 1.0, 30.0) == (30, 30)  # empty


def test_activitynet_fps_file_and_clamping(tmp_path):
    """The seed reads fps from the folder's 'fps' file; segments are clipped to the frames present."""
    data = {"taxonomy": TAXONOMY, "database": {"vid1": {"subset": "training", "annotations": [{"segment": [0.5, 9.0], "label": "Making tea"}]}}}
    path = write_json(tmp_path / "anet.json", data)
    folder = tmp_path / "jpg" / "v_vid1"
    write_frames(folder, ramp_frames(20))
    (folder / "fps").write_text("4.00\n")
    cfg = DataConfig(dataset="activitynet", video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=16, sample_duration=4)
    dataset = build_dataset(cfg, "training")
    assert dataset.class_names == ["Long jump", "Making tea", "Shot put"]
    assert dataset.videos[0].target == 1
    assert dataset.frame_range(0) == (2, 21)  # ceil(0.5*4)=2 .. ceil(9*4)=36 clipped to 20 frames
    item = dataset[0]
    first, end = item["segment"].tolist()
    assert 2 <= first and end <= 21


@pytest.mark.parametrize("dataset_name", ["ucf101", "hmdb51", "mit"])
def test_label_key_layouts(tmp_path, dataset_name):
    data = {"labels": ["ApplyEyeMakeup", "Archery"], "database": {
        "v_ApplyEyeMakeup_g08_c01": {"subset": "training", "annotations": {"label": "ApplyEyeMakeup"}},
        "v_Archery_g01_c01": {"subset": "validation", "annotations": {"label": "Archery"}},
    }}
    path = write_json(tmp_path / "ucf101_01.json", data)
    for key, label in (("v_ApplyEyeMakeup_g08_c01", "ApplyEyeMakeup"), ("v_Archery_g01_c01", "Archery")):
        write_frames(tmp_path / "jpg" / label / key, ramp_frames(6))
    cfg = DataConfig(dataset=dataset_name, video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=16, sample_duration=4)
    train, val = build_dataset(cfg, "training"), build_dataset(cfg, "val")
    assert [v.key for v in train.videos] == ["v_ApplyEyeMakeup_g08_c01"]
    assert [v.target for v in val.videos] == [1]
    assert train[0]["clip"].shape == (4, 16, 16, 3)


def test_folder_layout_and_missing_videos_are_summarised(tmp_path, caplog):
    data = {"labels": ["x", "y"], "database": {
        f"clip{i}": {"subset": "training", "annotations": {"label": "xy"[i % 2]}} for i in range(5)
    }}
    path = write_json(tmp_path / "mine.json", data)
    for i in (0, 1, 3):
        write_frames(tmp_path / "frames" / f"clip{i}", ramp_frames(5))
    cfg = DataConfig(dataset="folder", folder_layout="{key}", video_path=str(tmp_path / "frames"), annotation_path=path, sample_size=8, sample_duration=2)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        dataset = build_dataset(cfg, "training")
    assert [v.key for v in dataset.videos] == ["clip0", "clip1", "clip3"]
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summary) == 1 and "2 of 5 training entries" in summary[0] and "clip2" in summary[0]


def test_nothing_found_is_a_user_error(tmp_path):
    path = write_json(tmp_path / "k.json", KINETICS_SEED)
    (tmp_path / "empty").mkdir()
    cfg = DataConfig(video_path=str(tmp_path / "empty"), annotation_path=path)
    with pytest.raises(UserError, match=r"abseiling/aaaaaaaaaaa_000001_000011.*--video_path"):
        build_dataset(cfg, "training")


def test_seed_flavour_counts_frames_from_n_frames_file(tmp_path):
    path = write_json(tmp_path / "k.json", KINETICS_SEED)
    folder = tmp_path / "jpg" / "abseiling" / "aaaaaaaaaaa_000001_000011"
    write_frames(folder, ramp_frames(9), n_frames_file=False)
    (folder / "n_frames").write_text("7")  # the seed trusts the file: frames 8, 9 are not used
    cfg = DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=8, sample_duration=4)
    dataset = build_dataset(cfg, "training")
    assert dataset.frame_range(0) == (1, 8)
    (folder / "n_frames").unlink()
    assert build_dataset(cfg, "training").frame_range(0) == (1, 10)  # no file: the frames present


def _activitynet_set(tmp_path, entries, n_frames=20):
    """An ActivityNet JSON of ``entries`` (key -> database entry) with a frame folder of
    ``n_frames`` frames (no fps file) for each key."""
    path = write_json(tmp_path / "anet.json", {"taxonomy": TAXONOMY, "database": entries})
    for key in entries:
        write_frames(tmp_path / "jpg" / f"v_{key}", ramp_frames(n_frames, 8, 8))
    return DataConfig(dataset="activitynet", video_path=str(tmp_path / "jpg"), annotation_path=path,
                      sample_size=8, sample_duration=4)


def _segments(*spans):
    return [{"segment": list(span), "label": "Making tea"} for span in spans]


def test_activitynet_segment_after_the_last_frame_is_dropped_when_the_set_is_built(tmp_path, caplog):
    """[100 s, 101 s) at 25 fps starts at frame 2500 of a 20-frame video: one counted line naming
    the key, not an 'unreadable video' replaced in every worker of every epoch."""
    cfg = _activitynet_set(tmp_path, {
        "late": {"subset": "training", "fps": 25.0, "annotations": _segments((100.0, 101.0), (0.0, 0.4), (90.0, 95.0))},
    })
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        dataset = build_dataset(cfg, "training")
    assert [v.frames for v in dataset.videos] == [(1, 10)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "2 training segments start after their video's last frame" in lines[0]
    assert "'late' (100-101 s at 25 fps starts at frame 2500; the video has 20)" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert dataset[0]["bad_video"] == 0
    assert not caplog.records


def test_activitynet_videos_without_segments_make_no_training_sample(tmp_path, caplog):
    """Both originals make one sample per labelled segment, so a training or validation video
    whose 'annotations' list is empty makes none (it became a sample of label None, a miss in every
    accuracy); testing videos are unlabelled by nature and stay."""
    cfg = _activitynet_set(tmp_path, {
        "tea": {"subset": "training", "fps": 5.0, "annotations": _segments((0.0, 2.0))},
        "bare": {"subset": "training", "fps": 5.0, "annotations": []},
        "bare2": {"subset": "validation", "fps": 5.0, "annotations": []},
        "unknown": {"subset": "testing", "fps": 5.0, "annotations": []},
    })
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        training = build_dataset(cfg, "training")
    assert [(v.key, v.target) for v in training.videos] == [("tea", 1)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "1 training entries have no labelled segment" in lines[0], lines
    assert "(first: 'bare')" in lines[0] and "add their segments" in lines[0]
    assert [v.key for v in build_dataset(cfg, "testing").videos] == ["unknown"]


def test_activitynet_without_fps_takes_frames_over_the_json_duration(tmp_path, caplog):
    """No 'fps' in the JSON and no fps file: 20 frames / 4 s = 5 fps, as 'prepare activitynet-json'
    computes it, said once (not '21 videos in a row had no readable frame')."""
    cfg = _activitynet_set(tmp_path, {
        "slow": {"subset": "training", "duration": 4.0, "annotations": _segments((1.0, 2.0), (2.2, 3.9))},
    })
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        dataset = build_dataset(cfg, "training")
    assert [v.frames for v in dataset.videos] == [(5, 10), (11, 20)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "1 training videos have no fps" in lines[0] and "frames / the JSON's duration" in lines[0]
    assert "(first: 'slow')" in lines[0] and "resnet3d prepare activitynet-json" in lines[0]
    assert dataset[1]["clip"].shape == (4, 8, 8, 3) and dataset[1]["bad_video"] == 0


def test_activitynet_without_fps_or_duration_is_dropped_with_the_fix(tmp_path, caplog):
    cfg = _activitynet_set(tmp_path, {
        "nofps": {"subset": "training", "annotations": _segments((1.0, 2.0), (2.0, 3.0))},
        "good": {"subset": "training", "fps": 10.0, "annotations": _segments((0.5, 1.5))},
    })
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        dataset = build_dataset(cfg, "training")
    assert [(v.key, v.frames) for v in dataset.videos] == [("good", (5, 15))]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "2 training segments of 1 videos have no fps" in lines[0] and "(first: 'nofps')" in lines[0]
    assert f"resnet3d prepare activitynet-json VIDEO_DIR {cfg.annotation_path} --fps-files --frame-dir {cfg.video_path}" in lines[0]


def test_activitynet_fps_and_duration_must_be_numbers(tmp_path):
    cfg = _activitynet_set(tmp_path, {"odd": {"subset": "training", "fps": "fast", "annotations": _segments((0.0, 1.0))}})
    with pytest.raises(UserError, match=r"anet.json: database entry 'odd' has fps 'fast'; expected a positive number"):
        build_dataset(cfg, "training")


def _entry(subset, label="a"):
    return {"subset": subset, "annotations": {"label": label}}


def test_subsets_spelled_train_val_test_or_with_spaces_are_read(tmp_path, caplog):
    """The file's subsets are read as --subset reads them: train/val/test, any case, spaces
    around; another spelling of the same subset is named, an unknown subset counted."""
    database = {"t1": _entry("train"), "t2": _entry("Training"), "v1": _entry("val"), "v2": _entry("validation "),
                "s1": {"subset": "test", "annotations": {}}, "d1": _entry("dev"), "d2": _entry("dev")}
    path = write_json(tmp_path / "short.json", {"labels": ["a"], "database": database})
    assert [e.key for e in load_annotation(path, "folder", "training").entries] == ["t1", "t2"]
    validation = load_annotation(path, "folder", "val")
    assert [e.key for e in validation.entries] == ["v1", "v2"]
    assert validation.spellings == {"val": 1, "validation ": 1} and validation.other_subsets == {"dev": 2}
    assert [e.key for e in load_annotation(path, "folder", "testing").entries] == ["s1"]
    for key in ("t1", "t2", "v1", "v2"):
        write_frames(tmp_path / "jpg" / "a" / key, ramp_frames(4))
    cfg = DataConfig(dataset="folder", video_path=str(tmp_path / "jpg"), annotation_path=path, sample_size=8, sample_duration=2)
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        assert len(build_dataset(cfg, "validation").videos) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("validation entries spell their subset in 2 ways ('val' 1, 'validation ' 1)" in m for m in messages)
    assert any("2 entries have a subset that is none of training, validation, testing" in m and "'dev' 2" in m
               for m in messages)


def test_a_database_key_given_twice_is_an_error_naming_it(tmp_path, caplog):
    entry = '{"subset": "training", "annotations": {"label": "%s"}}'
    conflicting = tmp_path / "twice.json"
    conflicting.write_text('{"labels": ["a", "b"], "database": {"k1": %s, "k2": %s, "k1": %s}}'
                           % (entry % "a", entry % "a", entry % "b"))
    with pytest.raises(UserError, match=r"twice.json: key 'k1' appears more than once in one object, with "
                                        r"different values .*keep one entry per key"):
        load_annotation(str(conflicting), "kinetics", "training")
    same = tmp_path / "same.json"
    same.write_text('{"labels": ["a"], "database": {"k1": %s, "k1": %s}}' % (entry % "a", entry % "a"))
    with caplog.at_level(logging.WARNING, logger="resnet3d"):
        assert [e.key for e in load_annotation(str(same), "kinetics", "training").entries] == ["k1"]
    assert any("same.json: key 'k1' appears twice or more in one object with the same value" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resnet3d"):  # the validation subset's read: said once a run
        load_annotation(str(same), "kinetics", "validation")
    assert not any("appears twice" in r.getMessage() for r in caplog.records)


def test_a_label_listed_twice_is_named(tmp_path):
    path = write_json(tmp_path / "labels.json", {"labels": ["walk", "walk", "run"],
                                                  "database": {"k": _entry("training", "run")}})
    with pytest.raises(UserError, match=r"labels.json: duplicate label 'walk' in 'labels' \(at positions 0, 1"):
        load_annotation(path, "kinetics", "training")
    taxonomy = TAXONOMY + [{"nodeId": 6, "nodeName": "Shot put", "parentId": 3, "parentName": "Cooking"}]
    path = write_json(tmp_path / "anet.json", {"taxonomy": taxonomy, "database": {}})
    with pytest.raises(UserError, match=r"duplicate label 'Shot put' in the taxonomy's leaves"):
        load_annotation(path, "activitynet", "training")


def test_an_annotation_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Windows Notepad saves UTF-8 with a BOM; the n_frames file too may carry one."""
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(KINETICS_SEED).encode("utf-8"))
    folder = tmp_path / "jpg" / "abseiling" / "aaaaaaaaaaa_000001_000011"
    write_frames(folder, ramp_frames(9), n_frames_file=False)
    (folder / "n_frames").write_bytes(b"\xef\xbb\xbf7")
    cfg = DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=str(path), sample_size=8, sample_duration=4)
    assert build_dataset(cfg, "training").frame_range(0) == (1, 8)


def test_entries_with_labels_that_are_no_class_are_counted_in_one_error(tmp_path):
    """One error per run for each such entry took a run per entry to find them all."""
    database = {f"k{i}": {"subset": "training", "annotations": {"label": label}}
                for i, label in enumerate(["a", "swim", "dance", "swim", "a"])}
    path = write_json(tmp_path / "k.json", {"labels": ["a"], "database": database})
    with pytest.raises(UserError) as caught:
        load_annotation(path, "kinetics", "training")
    message = str(caught.value)
    assert message.startswith(f"annotation {path}: database entry 'k1' has label 'swim', which is not in 'labels'")
    assert "(3 training entries have a label that is not in 'labels': 'swim' (2), 'dance' (1))" in message
    assert "add the class to the file's labels" in message and "correct the entries' labels" in message
    data = {"taxonomy": TAXONOMY, "database": {"v": {"subset": "training", "fps": 30.0, "annotations": [
        {"segment": [0.0, 2.0], "label": "Long jump"}, {"segment": [3.0, 4.0], "label": "Surfing"}]}}}
    with pytest.raises(UserError, match=r"entry 'v' has label 'Surfing', which is not a taxonomy leaf: add the class"):
        load_annotation(write_json(tmp_path / "a.json", data), "activitynet", "training")


def test_entries_whose_segment_holds_no_frame_are_summarised_with_the_first_key(tmp_path, caplog):
    write_frames(tmp_path / "jpg" / "a" / "k0", ramp_frames(4, 16, 16))
    database = {"k0": {"subset": "training", "annotations": {"label": "a", "segment": [1, 5]}},
                "k1": {"subset": "training", "annotations": {"label": "a", "segment": [1, 1]}},
                "k2": {"subset": "training", "annotations": {"label": "a", "segment": [1, 1]}}}
    path = write_json(tmp_path / "k.json", {"labels": ["a"], "database": database})
    with caplog.at_level(logging.WARNING, logger="resnet3d.data"):
        dataset = build_dataset(DataConfig(video_path=str(tmp_path / "jpg"), annotation_path=path), "training")
    assert [v.key for v in dataset.videos] == ["k0"]
    line = next(r.getMessage() for r in caplog.records if "holds no frame" in r.getMessage())
    assert line.startswith(f"{path}: 2 training entries have a segment that holds no frame (first: 'k1' (segment [1, 1])")
    assert "extract their frames and make the annotation again" in line
